"""Objects in an S3-compatible bucket, read in place with ranged GETs.

Why: a stored original of a format whose reader accepts a file object (the
TIFF family through tifffile, zipped OME-Zarr through zipfile) needs only the
bytes of the headers and of the planes it shows; fetching a 10 GB stack into
the local cache to draw one thumbnail is wasteful and fills the disk. Two
pieces make that possible:

- :class:`RemoteObject`, a small frozen (hashable, picklable) description of
  one object: enough to rebuild the client anywhere (a worker thread, a dask
  worker process) and the name readers show in their messages;
- :class:`RangedFile`, the seekable binary file readers get from it.

Why our own buffering and not obstore's ``open_reader``: its buffer is
dropped on every seek, and tifffile seeks before every read, so each IFD and
each segment would cost a full-buffer GET. Here a read is served from the
extents already fetched when it can be; a small read fetches a block (with
read-ahead while reads are sequential), a large read fetches exactly its
bytes, and a reader that knows which segments it will need asks for them in
one call (:meth:`RangedFile.prefetch`), which fetches them concurrently.
Every GET is counted (:func:`ranged_totals`), so tests and benches can check
that a thumbnail costs a few requests per plane, not the whole object.
"""

from __future__ import annotations

import datetime
import functools
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from zstack_analyzer.storage.base import StorageUnavailableError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from obstore.store import S3Store

__all__ = [
    "RangedFile",
    "RemoteObject",
    "RemoteReadError",
    "S3Location",
    "S3Options",
    "ranged_totals",
    "store_for",
]

#: Smallest GET for a small read (an IFD, a zip member header): one block. Small, because
#: between two IFDs lie a plane's pixels: a larger block would fetch pixels nobody reads.
BLOCK_BYTES = 16 * 1024
#: Reads of at least this many bytes are fetched exactly, without read-ahead.
DIRECT_BYTES = 256 * 1024
#: Largest read-ahead of a run of sequential small reads.
MAX_READAHEAD_BYTES = 1024 * 1024
#: Fetched bytes kept per open file (least recently used extent out first).
CACHE_BYTES = 16 * 1024 * 1024
#: Retries of one storage request, and the time they may take in all.
STORE_MAX_RETRIES = 3
STORE_RETRY_TIMEOUT_S = 15

#: Ranges closer than this are fetched as one (object_store's own coalescing threshold).
COALESCE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class S3Location:
    """``s3://BUCKET/PREFIX`` split into its parts.

    Examples
    --------
    >>> S3Location.parse("s3://lab-images/zstack/originals/")
    S3Location(bucket='lab-images', prefix='zstack/originals')
    """

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Parse ``s3://BUCKET[/PREFIX]``; anything else is a ``ValueError``."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            msg = f"storage URL {url!r}: expected s3://BUCKET/PREFIX"
            raise ValueError(msg)
        return cls(parsed.netloc, parsed.path.strip("/"))


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach the bucket (the service fills it from the standard ``AWS_*`` settings)."""

    endpoint_url: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    region: str | None = None
    allow_http: bool = False
    part_bytes: int = 16 * 1024 * 1024
    max_concurrency: int = 4


@functools.lru_cache(maxsize=16)
def store_for(location: S3Location, options: S3Options) -> S3Store:
    """The obstore client of a bucket, made once per process (it is thread-safe)."""
    from obstore.store import S3Store

    config: dict[str, Any] = {}
    if options.endpoint_url:
        config["endpoint"] = options.endpoint_url
    if options.access_key_id:
        config["access_key_id"] = options.access_key_id
    if options.secret_access_key:
        config["secret_access_key"] = options.secret_access_key
    if options.region:
        config["region"] = options.region
    if not options.access_key_id:
        config["skip_signature"] = True  # anonymous access (e.g. a public or test bucket)
    return S3Store(
        location.bucket,
        prefix=location.prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options={"allow_http": options.allow_http, "connect_timeout": "5s"},
        # Bounded retries: an unreachable bucket answers 503 within seconds, where the
        # client's defaults (10 retries within 3 minutes) held requests and threads.
        retry_config={
            "max_retries": STORE_MAX_RETRIES,
            "retry_timeout": datetime.timedelta(seconds=STORE_RETRY_TIMEOUT_S),
        },
    )


class RemoteReadError(StorageUnavailableError):
    """A ranged GET failed (network, permissions, server): not a fault of the file's content."""


class _Totals:
    """GETs and bytes fetched by every :class:`RangedFile` of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    def add(self, requests: int, nbytes: int) -> None:
        with self._lock:
            self.requests += requests
            self.bytes += nbytes


_TOTALS = _Totals()


def ranged_totals() -> tuple[int, int]:
    """``(GET requests, bytes fetched)`` by ranged reads in this process so far.

    Why a process-wide count: a service request opens its reader in a worker
    thread; a test or a bench compares the count before and after it.
    """
    return _TOTALS.requests, _TOTALS.bytes


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One object in a bucket, as readers take it instead of a local path.

    Frozen and hashable (a peek of its first IFD is cached by it; stored
    objects never change under one name) and picklable (dask ships readers by
    what they were opened from). ``name`` is what messages show: the stored
    name, which the service replaces with the user's filename.

    Examples
    --------
    >>> obj = RemoteObject(S3Location("lab"), S3Options(), "images/ab.tif", "ab.tif")
    >>> obj.path.name, obj.path.suffix
    ('ab.tif', '.tif')
    """

    location: S3Location
    options: S3Options = field(repr=False)
    key: str
    name: str

    @property
    def path(self) -> Path:
        """The display name as a path (no folder: nothing lies beside a remote object)."""
        return Path(self.name)

    def open(self) -> RangedFile:
        """A seekable binary file over the object (one GET for its first block)."""
        return RangedFile(store_for(self.location, self.options), self.key, name=self.name)

    def __str__(self) -> str:
        """``s3://bucket/prefix/key`` (never credentials)."""
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        return f"s3://{self.location.bucket}/{prefix}{self.key}"


class RangedFile(io.RawIOBase):
    """A read-only, seekable file over one object; every read is served by ranged GETs.

    Thread-safe: one lock guards the position and the fetched extents (the
    readers still hold their own lock around a seek and its read).

    Parameters
    ----------
    store
        The obstore client.
    key
        The object's key in ``store``.
    name
        What ``name`` reports (tifffile shows it in its messages).
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        *,
        name: str,
        block_bytes: int = BLOCK_BYTES,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self.name = name
        self.block_bytes = block_bytes
        self.cache_bytes = cache_bytes
        self._lock = threading.RLock()
        self._pos = 0
        self._extents: OrderedDict[int, bytes] = OrderedDict()
        self._held = 0
        self._last_end = -1
        self._readahead = block_bytes
        #: GET requests and bytes fetched by this file.
        self.requests = 0
        self.bytes_fetched = 0
        #: The object's size, learnt from the first GET's response (``None`` before it).
        self._known_size: int | None = None

    # ------------------------------------------------------------ io.RawIOBase
    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable."""
        return True

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move the position; nothing is fetched until the next read."""
        with self._lock:
            if whence == io.SEEK_SET:
                target = offset
            elif whence == io.SEEK_CUR:
                target = self._pos + offset
            elif whence == io.SEEK_END:
                if self._known_size is None:
                    # Reading from the end (a zip's directory): fetch the last block.
                    self._fetch_block(None)
                target = self._size + offset
            else:
                msg = f"invalid whence {whence}"
                raise ValueError(msg)
            if target < 0:
                msg = f"negative seek position {target}"
                raise ValueError(msg)
            self._pos = target
            return target

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes from the position (all that is left when negative)."""
        self._check_not_closed()
        with self._lock:
            count = self._available(size)
            if count == 0:
                return b""
            data = self._read_at(self._pos, count)
            self._pos += len(data)
            return data

    def readall(self) -> bytes:
        """Everything from the position to the end."""
        return self.read(-1)

    def readinto(self, buffer: Any, /) -> int:
        """Read into ``buffer``; the number of bytes read (0 at the end).

        A large read that nothing fetched already covers goes from the GET's
        response straight into ``buffer``: one copy of a plane instead of three
        (each fresh copy of megabytes costs page faults as much as the transfer).
        """
        view = memoryview(buffer).cast("B")
        self._check_not_closed()
        with self._lock:
            start = self._pos
            count = self._available(len(view))
            if count >= DIRECT_BYTES and not self._prefix(start):
                data: bytes | memoryview = self._get_view(start, start + count)
                self._last_end = start + len(data)
            else:
                data = self._read_at(start, count) if count else b""
            view[: len(data)] = data
            self._pos += len(data)
            return len(data)

    def _available(self, size: int | None) -> int:
        """Bytes a read of ``size`` from the position gets (all left when negative).

        The first read learns the object's size from its own GET (a block at the position).
        """
        if self._known_size is None:
            self._fetch_block(self._pos)
        remaining = max(self._size - self._pos, 0)
        return remaining if size is None or size < 0 else min(size, remaining)

    @property
    def size(self) -> int:
        """The object's size in bytes (from a GET's response: the first block if none yet)."""
        with self._lock:
            if self._known_size is None:
                self._fetch_block(0)
            return self._size

    @property
    def _size(self) -> int:
        assert self._known_size is not None  # noqa: S101  (set by _fetch_block first)
        return self._known_size

    def close(self) -> None:
        """Drop the fetched extents (idempotent)."""
        with self._lock:
            self._extents.clear()
            self._held = 0
        super().close()

    # ------------------------------------------------------------ prefetch
    def prefetch(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Fetch the ``(start, end)`` byte ranges a reader is about to read, concurrently.

        Why: a reader decoding a plane's tiles one by one would otherwise make
        one GET per tile. Ranges are merged when less than
        :data:`COALESCE_BYTES` apart and fetched together; at most
        ``cache_bytes`` are fetched (the rest is read on demand).
        """
        self._check_not_closed()
        with self._lock:
            if self._known_size is None:
                self._fetch_block(0)
            wanted = sorted(
                (max(0, s), min(e, self._size))
                for s, e in ranges
                if e > s and self._lookup(s, min(e, self._size)) is None
            )
            spans: list[list[int]] = []
            for start, end in wanted:
                if end <= start:
                    continue
                if spans and start - spans[-1][1] <= COALESCE_BYTES:
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([start, end])
            budget = self.cache_bytes
            chosen: list[list[int]] = []
            for span in spans:
                if span[1] - span[0] > budget:
                    break
                budget -= span[1] - span[0]
                chosen.append(span)
            if not chosen:
                return
            import obstore

            try:
                buffers = obstore.get_ranges(
                    self._store,
                    self._key,
                    starts=[s for s, _ in chosen],
                    ends=[e for _, e in chosen],
                )
            except FileNotFoundError:
                raise
            except Exception as exc:
                raise self._error(exc) from exc
            fetched = 0
            for (start, _), buffer in zip(chosen, buffers, strict=True):
                data = bytes(buffer)
                fetched += len(data)
                self._remember(start, data)
            self._count(len(chosen), fetched)

    # ------------------------------------------------------------ internals
    def _fetch_block(self, start: int | None) -> None:
        """Fetch one block at ``start`` (the last block for ``None``), learning the size.

        Why lazily and not at open: a TIFF is read from its start, a zip from
        its end; the first read decides which block is worth fetching.
        """
        import obstore

        span: Any = (start, start + self.block_bytes) if start is not None else None
        options: Any = {"range": span if span else {"suffix": self.block_bytes}}
        try:
            result = obstore.get(self._store, self._key, options=options)
            data = bytes(result.bytes())
        except FileNotFoundError:
            raise
        except Exception as exc:
            # S3 refuses a range that starts at or past the end (416): of an empty object,
            # or a first read past the end. Ask for the size instead: that read is at EOF.
            try:
                size = int(obstore.head(self._store, self._key)["size"])
            except FileNotFoundError:
                raise
            except Exception:  # (the GET's error is the one to report)
                size = None
            if size is not None and (size == 0 or (start is not None and start >= size)):
                self._known_size = size
                return
            raise self._error(exc) from exc
        self._count(1, len(data))
        self._known_size = int(result.meta["size"])
        self._remember(int(result.range[0]), data)

    def _error(self, exc: BaseException) -> RemoteReadError:
        return RemoteReadError(f"{self.name}: ranged read from object storage failed: {exc}")

    def _check_not_closed(self) -> None:
        if self.closed:
            msg = f"{self.name}: I/O operation on a closed file"
            raise ValueError(msg)

    def _count(self, requests: int, nbytes: int) -> None:
        self.requests += requests
        self.bytes_fetched += nbytes
        _TOTALS.add(requests, nbytes)

    def _get(self, start: int, end: int) -> bytes:
        return bytes(self._get_view(start, end))

    def _get_view(self, start: int, end: int) -> memoryview:
        """Bytes ``start:end`` as a view of the GET's own buffer (no copy, not remembered)."""
        import obstore

        try:
            view = memoryview(obstore.get_range(self._store, self._key, start=start, end=end))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        self._count(1, len(view))
        return view.cast("B")

    def _lookup(self, start: int, end: int) -> bytes | None:
        """Bytes ``start:end`` if one fetched extent holds them all."""
        for first, data in reversed(self._extents.items()):
            if first <= start and end <= first + len(data):
                self._extents.move_to_end(first)
                return data[start - first : end - first]
        return None

    def _prefix(self, start: int) -> bytes:
        """The fetched bytes from ``start`` to the end of the extent holding it (may be empty)."""
        for first, data in reversed(self._extents.items()):
            if first <= start < first + len(data):
                return data[start - first :]
        return b""

    def _remember(self, start: int, data: bytes) -> None:
        if not data or len(data) > self.cache_bytes:
            return
        old = self._extents.pop(start, None)
        if old is not None:
            self._held -= len(old)
        self._extents[start] = data
        self._held += len(data)
        while self._held > self.cache_bytes and len(self._extents) > 1:
            _, dropped = self._extents.popitem(last=False)
            self._held -= len(dropped)

    def _read_at(self, start: int, count: int) -> bytes:
        end = start + count
        hit = self._lookup(start, end)
        sequential = start == self._last_end
        self._last_end = end
        if hit is not None:
            return hit
        head = self._prefix(start)
        if head:
            # The start is fetched already (a zip member's header block holds the
            # first bytes of its data): fetch only the rest.
            return head + self._read_at(start + len(head), count - len(head))
        if count >= DIRECT_BYTES:
            return self._get(start, end)
        # A small read: a block from its start, more while reads follow one another;
        # near the end the block is moved back to end there (a zip's directory).
        self._readahead = (
            min(self._readahead * 2, MAX_READAHEAD_BYTES) if sequential else self.block_bytes
        )
        span = max(count, self._readahead)
        fetch_start = max(0, min(start, self._size - span))
        data = self._get(fetch_start, min(self._size, fetch_start + span))
        self._remember(fetch_start, data)
        return data[start - fetch_start : start - fetch_start + count]
