"""Stored originals in a local folder: atomic writes and the start-up sweep.

Why this order (temp file -> fsync -> rename -> DB commit): a crash at any
point leaves either nothing, a temp file, or a file without a row, and the
start-up sweep removes both. A row never points at a missing or half-written
file.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import TYPE_CHECKING

from zstack_analyzer.storage.base import ObjectStorage, SweepReport

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

__all__ = ["LocalStorage"]

logger = logging.getLogger(__name__)

#: Bytes per chunk when streaming a range of a file.
RANGE_CHUNK_BYTES = 1024 * 1024


class LocalStorage(ObjectStorage):
    """Files under a data directory: ``images/`` (originals) and ``tmp/`` (uploads in flight).

    Parameters
    ----------
    images_dir
        Final location of stored originals.
    tmp_dir
        Temp files; must be on the same file system so ``os.replace`` is atomic.
    """

    is_local = True

    def __init__(self, images_dir: Path, tmp_dir: Path) -> None:
        self.images_dir = images_dir
        self.tmp_dir = tmp_dir

    def ensure_dirs(self) -> None:
        """Create the directories (idempotent)."""
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def temp_path(self, stored_name: str) -> Path:
        """Where the upload for ``stored_name`` is written before it is committed."""
        return self.tmp_dir / stored_name

    def path(self, stored_name: str) -> Path:
        """The stored original (``stored_name`` comes from our own database, never a user)."""
        return self.images_dir / stored_name

    def commit(self, temp: Path, stored_name: str, *, mirrored: bool = False) -> Path:
        """Make ``temp`` durable and move it into place atomically; return the final path."""
        with temp.open("rb") as fh:
            os.fsync(fh.fileno())
        final = self.path(stored_name)
        os.replace(temp, final)
        fsync_dir(self.images_dir)
        return final

    def commit_folder(self, temp: Path, key: str) -> Path:
        """Make the folder ``temp`` (a multi-file image's copy) durable and rename it to ``key``.

        Why a folder: the files of one image keep their names side by side, so
        the reader finds the companions of the main file (stored as
        ``<key>/<main name>``). One rename of the folder: all of it or nothing.
        """
        for path in sorted(temp.rglob("*")):
            if path.is_file():
                with path.open("rb") as fh:
                    os.fsync(fh.fileno())
        final = self.images_dir / key
        os.replace(temp, final)
        fsync_dir(self.images_dir)
        return final

    def set_folder(self, stored_name: str) -> Path | None:
        """The folder of a multi-file image's stored copy (``<key>/<main>``), else ``None``."""
        key, sep, _ = stored_name.partition("/")
        return self.images_dir / key if sep and key not in ("", ".", "..") else None

    def size(self, stored_name: str) -> int | None:
        """The file's size, or ``None`` when it is missing."""
        try:
            return self.path(stored_name).stat().st_size
        except FileNotFoundError:
            return None

    def iter_range(self, stored_name: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of the file, 1 MiB at a time."""
        with self.path(stored_name).open("rb") as fh:
            fh.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = fh.read(min(RANGE_CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def remove(self, stored_name: str) -> bool:
        """Delete a stored original (a multi-file image: its folder); ``False`` when already gone."""
        folder = self.set_folder(stored_name)
        if folder is not None:
            if not folder.is_dir():
                return False
            shutil.rmtree(folder)
            return True
        try:
            self.path(stored_name).unlink()
        except FileNotFoundError:
            return False
        return True

    def sweep(self, keep: set[str], *, grace_seconds: float = 0.0) -> SweepReport:
        """Remove temp files and stored files without a row (older than ``grace_seconds``)."""
        cutoff = time.time() - grace_seconds
        temps = remove_old(self.tmp_dir.iterdir(), cutoff) if self.tmp_dir.is_dir() else []
        keep = keep | {name.partition("/")[0] for name in keep if "/" in name}
        orphans = (
            remove_old(
                (p for p in self.images_dir.iterdir() if p.name not in keep), cutoff, folders=True
            )
            if self.images_dir.is_dir()
            else []
        )
        if temps or orphans:
            logger.warning(
                "start-up sweep removed %d temp file(s) and %d orphan file(s)",
                len(temps),
                len(orphans),
            )
        return SweepReport(temps, orphans)


def remove_old(paths: Iterable[Path], cutoff: float, *, folders: bool = False) -> list[str]:
    """Unlink the regular files among ``paths`` last modified before ``cutoff``; their names.

    ``folders``: remove old folders too (the stored copies of multi-file images).
    """
    removed = []
    for path in paths:
        try:
            if folders and path.is_dir() and not path.is_symlink():  # a multi-file image
                if path.stat().st_mtime > cutoff:
                    continue
                shutil.rmtree(path)
                removed.append(path.name)
                continue
            if not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path.name)
    return removed


def fsync_dir(directory: Path) -> None:
    """Persist a rename (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
