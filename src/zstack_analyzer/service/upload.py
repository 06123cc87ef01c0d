"""Streaming multipart upload: straight to a temp file, hashed and size-capped on the way.

Why not ``UploadFile``: Starlette spools the whole body to its own temp file
before the route runs, so the size cap would apply only after the disk was
already filled, and every byte would be written twice. Here the raw request
stream goes through python-multipart's push parser; the ``file`` part's bytes
are buffered to 1 MiB, then hashed and written in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import anyio.to_thread

from zstack_analyzer.service.errors import BadUploadError, UploadTooLargeError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from starlette.requests import Request

    from zstack_analyzer.storage.base import UploadMirror

    #: Opens the mirror for the upload's (raw) filename, once its part headers are read.
    MirrorFactory = Callable[[str | None], UploadMirror | None]

__all__ = ["CHUNK_BYTES", "ReceivedUpload", "receive_upload"]

logger = logging.getLogger(__name__)

#: Bytes buffered before a write to disk.
CHUNK_BYTES = 1024 * 1024
#: Allowance for multipart framing when checking Content-Length against the cap.
FRAMING_ALLOWANCE = 64 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedUpload:
    """The ``file`` part of an upload, written to ``path``."""

    path: Path
    filename: str | None
    size_bytes: int
    sha256: str
    mirrored: bool = False


class _Sink:
    """python-multipart callbacks that keep the first ``file`` part and drop the rest."""

    def __init__(self, field: str, max_bytes: int) -> None:
        self.field = field
        self.max_bytes = max_bytes
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.in_file = False
        self.found = False
        self.filename: str | None = None
        self.pending = bytearray()
        self.size = 0
        self.ended = False

    def on_part_begin(self) -> None:
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
        if self.in_file:
            self.pending += data[start:end]
            self.size += end - start

    def on_part_end(self) -> None:
        self.in_file = False

    def on_end(self) -> None:
        self.ended = True


class _Writer:
    """Hash, write to the temp file and (when there is one) to the mirror, in a worker thread."""

    def __init__(self, fh: BinaryIO, open_mirror: MirrorFactory | None) -> None:
        self.fh = fh
        self.hasher = hashlib.sha256()
        self.open_mirror = open_mirror
        self.mirror: UploadMirror | None = None
        self.opened = False

    def __call__(self, data: bytes | bytearray, filename: str | None) -> None:
        if not self.opened and self.open_mirror is not None:
            self.opened = True
            self.mirror = self.open_mirror(filename)
        self.hasher.update(data)
        self.fh.write(data)
        if self.mirror is not None:
            self.mirror.write(data)


async def receive_upload(
    request: Request,
    destination: Path,
    *,
    max_bytes: int,
    field: str = "file",
    open_mirror: MirrorFactory | None = None,
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
        When the body is not multipart/form-data or is malformed/truncated.
    fastapi.exceptions.RequestValidationError
        When there is no ``file`` part.

    The destination is removed on any failure.
    """
    from fastapi.exceptions import RequestValidationError
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header
    from starlette.requests import ClientDisconnect

    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        msg = "upload must be multipart/form-data with a boundary and a 'file' field"
        raise BadUploadError(msg)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + FRAMING_ALLOWANCE:
        msg = f"upload of {int(declared):,} bytes is over the limit of {max_bytes:,} bytes"
        raise UploadTooLargeError(msg)

    sink = _Sink(field, max_bytes)
    parser = MultipartParser(boundary, _callbacks(sink))  # type: ignore[arg-type]
    fh = await anyio.to_thread.run_sync(destination.open, "wb")
    writer = _Writer(fh, open_mirror)
    # One write in flight while the next chunk is received and parsed: hashing and
    # writing (in a thread) overlap with reading the socket (on the loop).
    loop = asyncio.get_running_loop()
    in_flight: asyncio.Future[None] | None = None
    try:
        try:
            async for chunk in request.stream():
                if chunk:
                    parser.write(chunk)
                if sink.size > max_bytes:
                    msg = f"upload is over the limit of {max_bytes:,} bytes"
                    raise UploadTooLargeError(msg)
                if len(sink.pending) >= CHUNK_BYTES:
                    data, sink.pending = sink.pending, bytearray()
                    if in_flight is not None:
                        await in_flight
                    in_flight = loop.run_in_executor(None, writer, data, sink.filename)
            parser.finalize()
        except MultipartParseError as exc:
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
        if in_flight is not None:
            await in_flight
            in_flight = None
        if sink.pending or (open_mirror is not None and not writer.opened):
            await anyio.to_thread.run_sync(writer, sink.pending, sink.filename)
            sink.pending = bytearray()
        await anyio.to_thread.run_sync(fh.flush)
        if writer.mirror is not None:
            await anyio.to_thread.run_sync(writer.mirror.close)
    except BaseException:
        if in_flight is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(in_flight)
        await anyio.to_thread.run_sync(fh.close)
        destination.unlink(missing_ok=True)
        if writer.mirror is not None:
            await anyio.to_thread.run_sync(writer.mirror.abort)
        raise
    await anyio.to_thread.run_sync(fh.close)
    return ReceivedUpload(
        destination,
        sink.filename,
        sink.size,
        writer.hasher.hexdigest(),
        mirrored=writer.mirror is not None,
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
