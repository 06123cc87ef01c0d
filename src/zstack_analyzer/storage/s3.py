"""Stored originals in an S3-compatible bucket (obstore), read through a bounded local cache.

Why obstore: one well-kept Rust client (object_store) for multipart uploads,
ranged GETs, listing and deletes, with its own thread pool and retries.

- Uploads stream into a multipart upload while they arrive (:meth:`open_mirror`);
  memory is bounded by ``part_bytes`` x ``max_concurrency``.
- Downloads stream byte ranges straight from the bucket (:meth:`iter_range`).
- Readers that take a file object (the TIFF family, zipped OME-Zarr) read an
  object in place: :meth:`remote_object` describes it and
  :class:`~zstack_analyzer.storage.remote.RangedFile` serves their reads with
  ranged GETs, so only headers and the planes shown are fetched.
- Readers that need a local file get one from :meth:`path`: the object is
  fetched once into ``cache_dir`` and kept there, least recently used first
  out, within ``cache_max_bytes``. A fresh upload's local copy goes straight
  into that cache, so the first thumbnail needs no download; while the copy
  is there (:meth:`cached_copy`) every reader uses it.
- Crash safety: an object is completed before its row is committed and deleted
  after its row is; :meth:`sweep` deletes objects without a row. Incomplete
  multipart uploads from a killed process are invisible and hold no object;
  a bucket lifecycle rule ("abort incomplete multipart uploads after 1 day")
  reclaims their parts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from zstack_analyzer.storage.base import ObjectStorage, StorageUnavailableError, SweepReport
from zstack_analyzer.storage.local import fsync_dir, remove_old
from zstack_analyzer.storage.remote import (
    RemoteObject,
    S3Location,
    S3Options,
    store_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from obstore import WritableFile

__all__ = ["RemoteObject", "S3Location", "S3Options", "S3Storage"]

logger = logging.getLogger(__name__)

#: Chunk size of streamed GETs (downloads, cache fills).
GET_CHUNK_BYTES = 8 * 1024 * 1024


class _Mirror:
    """An obstore multipart writer with ``abort()``."""

    def __init__(self, writer: WritableFile) -> None:
        self.writer = writer

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        try:
            return self.writer.write(data)
        except Exception as exc:
            raise _unavailable(UPLOAD, exc) from exc

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception as exc:
            raise _unavailable(UPLOAD, exc) from exc

    def abort(self) -> None:
        # Leaving the context with an exception aborts the multipart upload.
        with contextlib.suppress(Exception):
            self.writer.__exit__(RuntimeError, RuntimeError("upload aborted"), None)


UPLOAD, DELETE = "upload", "delete"


def _unavailable(what: str, exc: Exception) -> StorageUnavailableError:
    return StorageUnavailableError(f"{what} to object storage failed: {exc}")


class S3Storage(ObjectStorage):
    """Originals as objects ``PREFIX/images/<stored_name>``; local temp files and cache.

    Parameters
    ----------
    location
        Bucket and key prefix.
    options
        Endpoint, credentials, multipart sizes.
    tmp_dir
        Uploads in flight (local).
    cache_dir
        Local copies for readers; same file system as ``tmp_dir``.
    cache_max_bytes
        Bound of the local copies (the file being read is never evicted by its own fill).
    """

    is_local = False

    def __init__(
        self,
        location: S3Location,
        options: S3Options,
        *,
        tmp_dir: Path,
        cache_dir: Path,
        cache_max_bytes: int,
    ) -> None:
        self.location = location
        self.options = options
        self.tmp_dir = tmp_dir
        self.cache_dir = cache_dir
        self.cache_max_bytes = cache_max_bytes
        self.store = store_for(location, options)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @staticmethod
    def key(stored_name: str) -> str:
        """The object key (below the prefix) of a stored original."""
        return f"images/{stored_name}"

    def ensure_dirs(self) -> None:
        """Create the local temp and cache directories."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def temp_path(self, stored_name: str) -> Path:
        """Local temp file of an upload in flight."""
        return self.tmp_dir / stored_name

    def open_mirror(self, stored_name: str) -> _Mirror:
        """A multipart upload to the final key, written while the request streams in."""
        import obstore

        writer = obstore.open_writer(
            self.store,
            self.key(stored_name),
            buffer_size=self.options.part_bytes,
            max_concurrency=self.options.max_concurrency,
        )
        return _Mirror(writer)

    def commit(self, temp: Path, stored_name: str, *, mirrored: bool = False) -> Path:
        """Upload ``temp`` unless it was mirrored, then keep it as the local cached copy."""
        if not mirrored:
            import obstore

            obstore.put(
                self.store,
                self.key(stored_name),
                temp,
                chunk_size=self.options.part_bytes,
                max_concurrency=self.options.max_concurrency,
            )
        final = self._cached(stored_name)
        os.replace(temp, final)
        self._evict(keep=final)
        return final

    def path(self, stored_name: str) -> Path:
        """A local copy of the object, fetched once and kept in the bounded cache."""
        final = self._cached(stored_name)
        with self._lock(stored_name):
            if final.is_file():
                with contextlib.suppress(OSError):
                    os.utime(final)  # most recently used
                return final
            self._fetch(stored_name, final)
        self._evict(keep=final)
        return final

    def cached_copy(self, stored_name: str) -> Path | None:
        """The local copy if the cache holds it (marked most recently used), else ``None``."""
        final = self._cached(stored_name)
        try:
            os.utime(final)
        except OSError:
            return None
        return final

    def remote_object(self, stored_name: str) -> RemoteObject:
        """The object as readers that read ranges take it (nothing is fetched here)."""
        return RemoteObject(self.location, self.options, self.key(stored_name), stored_name)

    def size(self, stored_name: str) -> int | None:
        """The object's size (HEAD), or ``None`` when it does not exist."""
        import obstore

        try:
            meta = obstore.head(self.store, self.key(stored_name))
        except FileNotFoundError:
            return None
        return int(meta["size"])

    def iter_range(self, stored_name: str, start: int, end: int) -> Iterator[bytes]:
        """Stream bytes ``start`` to ``end`` (exclusive) with one ranged GET."""
        import obstore

        if end <= start:
            return
        result = obstore.get(self.store, self.key(stored_name), options={"range": (start, end)})
        for chunk in result.stream(min_chunk_size=GET_CHUNK_BYTES):
            yield bytes(chunk)

    def remove(self, stored_name: str) -> bool:
        """Delete the object and its local copy; ``False`` when the object was already gone."""
        import obstore

        self._cached(stored_name).unlink(missing_ok=True)
        try:
            existed = self.size(stored_name) is not None
            obstore.delete(self.store, self.key(stored_name))
        # S3 deletes a missing key with success: a 404 (obstore's FileNotFoundError,
        # not one of its BaseErrors) is a missing bucket, an outage like any other.
        except (obstore.exceptions.BaseError, FileNotFoundError) as exc:
            raise _unavailable(DELETE, exc) from exc
        return existed

    def stored_objects(self) -> list[tuple[str, datetime]]:
        """Every stored name in the bucket with its last-modified time."""
        import obstore

        found = []
        for batch in obstore.list(self.store, prefix="images/"):
            for meta in batch:
                name = str(meta["path"]).rsplit("/", 1)[-1]
                found.append((name, meta["last_modified"]))
        return found

    def sweep(self, keep: set[str], *, grace_seconds: float = 0.0) -> SweepReport:
        """Delete local temp files, and objects and cached copies without a row."""
        import obstore

        cutoff = time.time() - grace_seconds
        temps = remove_old(self.tmp_dir.iterdir(), cutoff) if self.tmp_dir.is_dir() else []
        orphans = []
        threshold = datetime.fromtimestamp(cutoff, UTC)
        for name, modified in self.stored_objects():
            if name not in keep and modified <= threshold:
                obstore.delete(self.store, self.key(name))
                orphans.append(name)
        if self.cache_dir.is_dir():
            remove_old((p for p in self.cache_dir.iterdir() if p.name not in keep), cutoff)
        if temps or orphans:
            logger.warning(
                "start-up sweep removed %d temp file(s) and %d orphan object(s) in s3://%s/%s",
                len(temps),
                len(orphans),
                self.location.bucket,
                self.location.prefix,
            )
        return SweepReport(temps, orphans)

    def _cached(self, stored_name: str) -> Path:
        return self.cache_dir / stored_name

    def _lock(self, stored_name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(stored_name, threading.Lock())

    def _fetch(self, stored_name: str, final: Path) -> None:
        """Download the object to a temp file, then rename: a reader never sees half a copy."""
        import obstore

        partial = self.tmp_dir / f"{stored_name}.fetch"
        try:
            result = obstore.get(self.store, self.key(stored_name))
            with partial.open("wb") as fh:
                for chunk in result.stream(min_chunk_size=GET_CHUNK_BYTES):
                    fh.write(chunk)
            os.replace(partial, final)
            fsync_dir(self.cache_dir)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        logger.info("fetched %s from the bucket into the local cache", stored_name)

    def _evict(self, *, keep: Path) -> None:
        """Drop least recently used copies until the cache fits its bound."""
        entries = []
        for entry in os.scandir(self.cache_dir):
            with contextlib.suppress(OSError):
                stat = entry.stat()
                entries.append((stat.st_mtime, stat.st_size, entry.path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.cache_max_bytes:
                break
            if path == str(keep):
                continue
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
