"""On-disk cache of rendered pictures, shared by the library and the service.

Why keyed by content identity: a file rewritten in place (same name, new
pixels) must never serve its old thumbnail, yet a render must not wait for a
hash of a 2 GB file. The identity is therefore the file's device, inode, size
and mtime plus a hash of its first and last MiB (DESIGN 6); the service passes
the upload's SHA-256 instead. The key (= HTTP ETag) adds every render
parameter (:meth:`RenderSpec.cache_key`).

Layout: ``<directory>/<identity[:2]>/<identity>/<key>``. Writes go through a
temp file and ``os.replace``, so concurrent writers (threads or processes) are
safe and a reader never sees half a picture. The total size is bounded: when a
put takes it over ``max_bytes``, the least recently used entries (by mtime,
refreshed on every hit) are deleted down to 90 % of the bound.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
import time
import zlib
from pathlib import Path

from zstack_analyzer.render.encode import write_atomic

__all__ = ["RenderCache", "file_identity"]

logger = logging.getLogger(__name__)

GiB = 1024**3
MiB = 1024**2
#: A temp file older than this belongs to a writer that died; eviction scans remove it.
STALE_TEMP_S = 3600
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def file_identity(path: Path | str, /) -> str:
    """Content-based identity of a file: cheap, and different after any rewrite.

    Combines device, inode, size and ``mtime_ns`` with a checksum of the first
    and last MiB, so a changed file gets a new identity even when a copy
    preserved its mtime, and no full-file hash is needed.

    Examples
    --------
    >>> file_identity("cells.czi")  # doctest: +SKIP
    '5f0c…'
    """
    target = Path(path)
    with target.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        head = zlib.crc32(handle.read(MiB))
        tail = 0
        if stat.st_size > MiB:
            handle.seek(max(MiB, stat.st_size - MiB))
            tail = zlib.crc32(handle.read(MiB))
    # CRC-32 of the sampled bytes (8x cheaper than SHA-256 here; this guards against
    # accidental rewrites, not adversaries), hashed together with the stat fields.
    digest = hashlib.sha256(
        f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{head:08x}:{tail:08x}".encode()
    )
    return digest.hexdigest()[:40]


def _safe(name: str) -> str:
    """A path component for ``name``: itself when harmless, else its hash."""
    if _SAFE_NAME.match(name) and ".." not in name:
        return name
    return hashlib.sha256(name.encode()).hexdigest()[:40]


class RenderCache:
    """Rendered pictures on disk under ``directory``, bounded to ``max_bytes``.

    Safe to share between threads and processes (the service and a CLI, say):
    all writes are atomic renames and eviction tolerates files vanishing.

    Parameters
    ----------
    directory
        Cache root; created when missing.
    max_bytes
        Size bound; least recently used entries are evicted past it.

    Examples
    --------
    >>> cache = RenderCache("/tmp/zstack-cache")  # doctest: +SKIP
    >>> cache.put("ident", "key", b"png bytes")  # doctest: +SKIP
    >>> cache.get("ident", "key")  # doctest: +SKIP
    b'png bytes'
    """

    def __init__(self, directory: Path | str, /, *, max_bytes: int = GiB) -> None:
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._approx_bytes: int | None = None

    # ------------------------------------------------------------------ paths
    def _identity_dir(self, identity: str) -> Path:
        safe = _safe(identity)
        return self.directory / safe[:2] / safe

    def path_for(self, identity: str, key: str) -> Path:
        """Where the entry ``key`` of file ``identity`` lives (whether or not it exists)."""
        return self._identity_dir(identity) / _safe(key)

    # ------------------------------------------------------------------ API
    @staticmethod
    def file_identity(path: Path | str, /) -> str:
        """Content-based identity of ``path`` (see :func:`file_identity`)."""
        return file_identity(path)

    def get(self, identity: str, key: str) -> bytes | None:
        """The cached bytes, or ``None``; a hit refreshes the entry's LRU time."""
        entry = self.path_for(identity, key)
        try:
            data = entry.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        with contextlib.suppress(OSError):
            os.utime(entry)
        return data

    def put(self, identity: str, key: str, data: bytes) -> None:
        """Store ``data`` atomically; evict old entries if the cache grew past its bound."""
        entry = self.path_for(identity, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_atomic(entry, data)
        except FileNotFoundError:
            # The identity's folder was evicted or deleted between mkdir and write.
            entry.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(entry, data)
        with self._lock:
            if self._approx_bytes is None:
                self._approx_bytes = self.total_bytes()
            else:
                self._approx_bytes += len(data)
            over = self._approx_bytes > self.max_bytes
        if over:
            self.evict(target_bytes=int(self.max_bytes * 0.9))

    def evict_identity(self, identity: str) -> None:
        """Drop every render of one file (used when the file is deleted)."""
        folder = self._identity_dir(identity)
        shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._approx_bytes = None

    def clear(self) -> None:
        """Drop every entry."""
        for child in self.directory.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
        with self._lock:
            self._approx_bytes = None

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every stored entry; temp files are skipped."""
        found: list[tuple[float, int, Path]] = []
        for root, _dirs, files in os.walk(self.directory):
            for name in files:
                full = Path(root) / name
                if name.startswith(".") and name.endswith(".tmp"):
                    self._sweep_temp(full)
                    continue
                try:
                    stat = full.stat()
                except FileNotFoundError:
                    continue
                found.append((stat.st_mtime, stat.st_size, full))
        return found

    @staticmethod
    def _sweep_temp(path: Path) -> None:
        """Delete a temp file a crashed writer left behind (an hour old or more)."""
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > STALE_TEMP_S:
                path.unlink()

    def total_bytes(self) -> int:
        """Current size of every entry, in bytes."""
        return sum(size for _, size, _ in self._entries())

    def evict(self, *, target_bytes: int | None = None) -> int:
        """Delete least recently used entries until the total is at most ``target_bytes``.

        Returns the number of bytes freed.
        """
        target = self.max_bytes if target_bytes is None else target_bytes
        entries = sorted(self._entries(), key=lambda item: item[0])
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in entries:
            if total <= target:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            total -= size
            freed += size
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only succeeds when that file's folder is now empty
        with self._lock:
            self._approx_bytes = total
        if freed:
            logger.debug("render cache %s: evicted %d bytes", self.directory, freed)
        return freed

    def __repr__(self) -> str:
        return f"RenderCache({str(self.directory)!r}, max_bytes={self.max_bytes})"
