"""Streaming multipart upload: straight to a temp file, hashed and size-capped on the way.

Why not ``UploadFile``: Starlette spools the whole body to its own temp file
before the route runs, so the size cap would apply only after the disk was
already filled, and every byte would be written twice. Here the raw request
stream goes through python-multipart's push parser; the ``file`` part's bytes
are gathered (as views of the received chunks, no copy) to 1 MiB, then hashed
in one worker thread while another writes them (:class:`_Pipeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from zstack_analyzer.service.errors import (
    BadUploadError,
    UploadBusyError,
    UploadTimeoutError,
    UploadTooLargeError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from starlette.requests import Request

    from zstack_analyzer.storage.base import UploadMirror

    #: Opens the mirror for the upload's (raw) filename, once its part headers are read.
    MirrorFactory = Callable[[str | None], UploadMirror | None]

    from zstack_analyzer.service.config import UploadSettings

__all__ = ["CHUNK_BYTES", "MAX_BOUNDARY_CHARS", "ReceivedUpload", "UploadSlots", "receive_upload"]

logger = logging.getLogger(__name__)

#: Bytes gathered before they are handed to the hashing and writing threads.
CHUNK_BYTES = 1024 * 1024
#: Batches queued for those threads at most (bounds the memory an upload holds).
BATCHES_IN_FLIGHT = 4
#: Bytes written between two ``fdatasync`` calls of the flushing thread.
FLUSH_BYTES = 64 * 1024 * 1024
#: Most buffers one ``writev`` takes (POSIX IOV_MAX; Linux: 1024).
_IOV_MAX = 1024
#: Data only (no metadata) where the system has it (macOS has no fdatasync).
_fdatasync = getattr(os, "fdatasync", os.fsync)
#: A slice of the file part: a received chunk itself, a view of it, or a copy.
Piece = bytes | memoryview
#: Allowance for multipart framing when checking Content-Length against the cap.
FRAMING_ALLOWANCE = 64 * 1024
#: Longest multipart boundary (RFC 2046 section 5.1.1: 1 to 70 characters).
MAX_BOUNDARY_CHARS = 70


class UploadSlots:
    """Counts uploads in flight, in all and per client address, and refuses past the caps.

    Why: every upload in flight holds a socket, a temp file and its handle; an
    idle client opening thousands of them exhausted the server's handles. Past
    the per-client cap the answer is 429, past the total cap 503, both with
    ``Retry-After``. All on the event loop, so plain counters need no lock.

    Parameters
    ----------
    settings
        The caps and the Retry-After value.
    """

    def __init__(self, settings: UploadSettings) -> None:
        self.settings = settings
        self.total = 0
        self.per_client: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """One slot for ``client`` for the duration of the block, or :class:`UploadBusyError`."""
        cfg = self.settings
        if self.per_client[client] >= cfg.max_concurrent_per_client:
            msg = (
                f"this client already has {self.per_client[client]} uploads in flight "
                f"(at most {cfg.max_concurrent_per_client}); retry later"
            )
            raise UploadBusyError(msg, status=429, retry_after=cfg.retry_after_seconds)
        if self.total >= cfg.max_concurrent:
            msg = f"the server has {self.total} uploads in flight (at most {cfg.max_concurrent})"
            raise UploadBusyError(msg, status=503, retry_after=cfg.retry_after_seconds)
        self.total += 1
        self.per_client[client] += 1
        try:
            yield
        finally:
            self.total -= 1
            self.per_client[client] -= 1
            if self.per_client[client] <= 0:
                del self.per_client[client]


@dataclass(frozen=True, slots=True)
class ReceivedUpload:
    """The ``file`` part of an upload, written to ``path``."""

    path: Path
    filename: str | None
    size_bytes: int
    sha256: str
    mirrored: bool = False


class _Sink:
    """python-multipart callbacks that keep the first ``file`` part and drop the rest.

    The file's bytes are kept as views of the received chunks, not copied: a
    chunk is immutable ``bytes``, and the view keeps it alive until it is
    hashed and written.
    """

    def __init__(self, field: str, max_bytes: int, max_parts: int = 16) -> None:
        self.field = field
        self.max_bytes = max_bytes
        self.max_parts = max_parts
        self.parts = 0
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.in_file = False
        self.found = False
        self.filename: str | None = None
        self.pending: list[Piece] = []
        self.pending_bytes = 0
        self.size = 0
        self.ended = False

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            msg = f"the multipart body has more than {self.max_parts} parts"
            raise BadUploadError(msg)
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self.headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == self.field and not self.found:
            self.in_file = True
            self.found = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file and end > start:
            piece: Piece
            if not isinstance(data, bytes):  # a mutable buffer could change: copy it
                piece = bytes(data[start:end])
            elif start == 0 and end == len(data):
                piece = data
            else:
                piece = memoryview(data)[start:end]
            self.pending.append(piece)
            self.pending_bytes += end - start
            self.size += end - start

    def on_part_end(self) -> None:
        self.in_file = False

    def on_end(self) -> None:
        self.ended = True

    def take(self) -> list[Piece]:
        """The file's bytes received since the last call."""
        pieces, self.pending, self.pending_bytes = self.pending, [], 0
        return pieces


def _write_all(fd: int, pieces: list[Piece]) -> None:
    """Write ``pieces`` to ``fd`` in order, with as few system calls as it takes."""
    if not hasattr(os, "writev"):  # pragma: no cover - Windows
        for piece in pieces:
            rest = memoryview(piece)
            while rest:
                rest = rest[os.write(fd, rest) :]
        return
    i = 0
    while i < len(pieces):
        batch = pieces[i : i + _IOV_MAX]
        written = os.writev(fd, batch)
        for piece in batch:
            if written >= len(piece):
                written -= len(piece)
                i += 1
                continue
            rest = memoryview(piece)[written:]  # a short write: finish this piece
            while rest:
                rest = rest[os.write(fd, rest) :]
            i += 1
            break


class _Pipeline:
    """Hash in one thread while another writes (and mirrors), batch after batch, in order.

    Why two threads: SHA-256 (about 1.5 GB/s here) and the copy into the page
    cache each take about as long as the whole write+fsync baseline; both
    release the GIL, so side by side they take the time of the slower one, and
    both overlap with receiving and parsing on the event loop. Each lane is a
    single thread, so batches are hashed and written in the order they came.
    At most ``BATCHES_IN_FLIGHT`` batches wait, which bounds the memory held.
    """

    def __init__(self, fd: int, open_mirror: MirrorFactory | None) -> None:
        self.fd = fd
        self.hasher = hashlib.sha256()
        self.open_mirror = open_mirror
        self.mirror: UploadMirror | None = None
        self.opened = False
        #: Set on any failure or abandon: batches still queued then do nothing.
        self.stopped = False
        self._hash_lane = ThreadPoolExecutor(1, thread_name_prefix="upload-hash")
        self._write_lane = ThreadPoolExecutor(1, thread_name_prefix="upload-write")
        self._in_flight: deque[tuple[Future[None], Future[None]]] = deque()
        self._flush_lane = ThreadPoolExecutor(1, thread_name_prefix="upload-flush")
        self._flushing: Future[None] | None = None
        self._unflushed = 0

    def _hash(self, pieces: list[Piece]) -> None:
        if not self.stopped:
            for piece in pieces:
                self.hasher.update(piece)

    def _write(self, pieces: list[Piece], filename: str | None) -> None:
        if self.stopped:
            return
        try:
            if not self.opened and self.open_mirror is not None:
                self.opened = True
                self.mirror = self.open_mirror(filename)
            if pieces:
                _write_all(self.fd, pieces)
                if self.mirror is not None:
                    self.mirror.write(b"".join(pieces))
        except BaseException:
            self.stopped = True
            raise

    async def submit(self, pieces: list[Piece], filename: str | None) -> None:
        """Queue one batch (waiting first while too many are queued); a lane's error is raised."""
        while len(self._in_flight) >= BATCHES_IN_FLIGHT:
            await self._settle_oldest()
        self._in_flight.append(
            (
                self._hash_lane.submit(self._hash, pieces),
                self._write_lane.submit(self._write, pieces, filename),
            )
        )
        self._unflushed += sum(len(piece) for piece in pieces)
        if self._unflushed >= FLUSH_BYTES and (self._flushing is None or self._flushing.done()):
            if self._flushing is not None:
                self._flushing.result()  # a failed flush is a failed write: raise it
            # What is written by now goes to the disk while the rest arrives, so the
            # commit's fsync only waits for the tail (not the whole file).
            self._unflushed = 0
            self._flushing = self._flush_lane.submit(self._flush)

    def _flush(self) -> None:
        if not self.stopped:
            _fdatasync(self.fd)

    async def _settle_oldest(self) -> None:
        hashed, written = self._in_flight[0]
        await asyncio.wrap_future(written)
        await asyncio.wrap_future(hashed)
        self._in_flight.popleft()

    async def drain(self) -> None:
        """Wait until every batch is hashed and written."""
        while self._in_flight:
            await self._settle_oldest()
        if self._flushing is not None:
            await asyncio.wrap_future(self._flushing)

    def stop(self) -> None:
        """Drop what is queued and wait for what runs (blocking: call it in a thread)."""
        self.stopped = True
        self._hash_lane.shutdown(wait=True, cancel_futures=True)
        self._write_lane.shutdown(wait=True, cancel_futures=True)
        self._flush_lane.shutdown(wait=True, cancel_futures=True)


async def _chunks(request: Request, idle_timeout: float | None) -> AsyncIterator[bytes]:
    """The body of ``request``; :class:`UploadTimeoutError` when no byte comes for ``idle_timeout``."""
    stream = request.stream().__aiter__()
    try:
        while True:
            try:
                with anyio.fail_after(idle_timeout):
                    chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                msg = f"the upload body stalled for {idle_timeout:g} s; the upload was abandoned"
                raise UploadTimeoutError(msg) from None
            yield chunk
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]


async def receive_upload(
    request: Request,
    destination: Path,
    *,
    max_bytes: int,
    field: str = "file",
    open_mirror: MirrorFactory | None = None,
    settings: UploadSettings | None = None,
) -> ReceivedUpload:
    """Stream the multipart body of ``request`` into ``destination`` (and a mirror).

    ``open_mirror(filename)`` is called once, in the writer thread, before the
    first bytes are written; the mirror it returns (an S3 multipart upload)
    gets every byte too, is completed on success and aborted on any failure.
    A mirror completed here is named in ``ReceivedUpload.mirrored``.

    Raises
    ------
    UploadTooLargeError
        When the body (or the file part) is over ``max_bytes``; checked from
        Content-Length first, then while streaming.
    BadUploadError
        When the body is not multipart/form-data or is malformed/truncated, its
        boundary is over 70 characters, a part has too many or too long
        headers, or there are too many parts (``settings``).
    UploadTimeoutError
        When the body stalls for ``settings.idle_timeout_seconds``.
    fastapi.exceptions.RequestValidationError
        When there is no ``file`` part.

    The destination is removed on any failure, cancellation included.
    """
    from fastapi.exceptions import RequestValidationError
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header
    from starlette.requests import ClientDisconnect

    from zstack_analyzer.service.config import UploadSettings

    cfg = settings or UploadSettings()
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        msg = "upload must be multipart/form-data with a boundary and a 'file' field"
        raise BadUploadError(msg)
    if len(boundary) > MAX_BOUNDARY_CHARS:
        msg = f"multipart boundary of {len(boundary)} characters; at most {MAX_BOUNDARY_CHARS}"
        raise BadUploadError(msg)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + FRAMING_ALLOWANCE:
        msg = f"upload of {int(declared):,} bytes is over the limit of {max_bytes:,} bytes"
        raise UploadTooLargeError(msg)

    sink = _Sink(field, max_bytes, cfg.max_parts)
    try:
        parser = MultipartParser(
            boundary,
            _callbacks(sink),  # type: ignore[arg-type]
            max_header_count=cfg.max_part_headers,
            max_header_size=cfg.max_part_header_bytes,
        )
    except FormParserError as exc:
        msg = f"malformed multipart request: {exc}"
        raise BadUploadError(msg) from exc
    fh = await anyio.to_thread.run_sync(functools.partial(destination.open, "wb", buffering=0))
    # Hashing and writing (in their threads) overlap with reading the socket (on the loop).
    pipe = _Pipeline(fh.fileno(), open_mirror)
    try:
        try:
            async for chunk in _chunks(request, cfg.idle_timeout_seconds):
                if chunk:
                    parser.write(chunk)
                if sink.size > max_bytes:
                    msg = f"upload is over the limit of {max_bytes:,} bytes"
                    raise UploadTooLargeError(msg)
                if sink.pending_bytes >= CHUNK_BYTES:
                    await pipe.submit(sink.take(), sink.filename)
            parser.finalize()
        except FormParserError as exc:
            msg = f"malformed multipart body: {exc}"
            raise BadUploadError(msg) from exc
        except ClientDisconnect as exc:
            msg = "the client disconnected before the upload finished"
            raise BadUploadError(msg) from exc
        if not sink.found:
            raise RequestValidationError(
                [
                    {
                        "type": "missing",
                        "loc": ("body", field),
                        "msg": "Field required",
                        "input": None,
                    }
                ]
            )
        if not sink.ended:
            msg = "the multipart body ended early (upload interrupted?)"
            raise BadUploadError(msg)
        # Always a last batch, even empty: an empty file still opens (and completes) its mirror.
        await pipe.submit(sink.take(), sink.filename)
        await pipe.drain()
        if pipe.mirror is not None:
            await anyio.to_thread.run_sync(pipe.mirror.close)
    except BaseException:
        # Shielded: a cancelled upload (client gone, server stopping) must still
        # close and remove its temp file now, not leave it for the next start-up,
        # and abort its mirror (an S3 multipart upload) so no part is left behind.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(pipe.stop)
            await anyio.to_thread.run_sync(fh.close)
            destination.unlink(missing_ok=True)
            if pipe.mirror is not None:
                with contextlib.suppress(Exception):
                    await anyio.to_thread.run_sync(pipe.mirror.abort)
        raise
    await anyio.to_thread.run_sync(pipe.stop)  # both lanes are idle: their threads end
    await anyio.to_thread.run_sync(fh.close)
    return ReceivedUpload(
        destination,
        sink.filename,
        sink.size,
        pipe.hasher.hexdigest(),
        mirrored=pipe.mirror is not None,
    )


def _callbacks(sink: _Sink) -> dict[str, object]:
    return {
        name: getattr(sink, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
    }
