"""Walk folders as a stream of candidate files and classified bad entries.

Why a generator over ``os.scandir``: an archive holds 10^4 to 10^6 files, so the
walk never builds a list; memory is one open directory iterator per level of
depth. Why classify instead of raising: a lab folder always holds something odd
(no read permission, a broken symlink, a symlink loop, a FIFO an acquisition
program left behind, an empty file). Each becomes a :class:`BadEntry` with the
reason, reported and skipped; nothing here ever *opens* a non-regular file
(opening a FIFO for reading blocks until a writer appears).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

__all__ = [
    "FOLDER_FORMAT_ENDINGS",
    "BadEntry",
    "FileEntry",
    "WalkItem",
    "count_files",
    "folder_format_suffixes",
    "walk",
]

logger = logging.getLogger(__name__)


#: Name endings of image formats that are folders (OME-Zarr), when a reader claims them.
FOLDER_FORMAT_ENDINGS = (".zarr",)


def folder_format_suffixes() -> frozenset[str]:
    """The known suffixes naming folder-format images: offered whole, not walked into."""
    from zstack_analyzer.registry import known_suffixes

    return frozenset(s for s in known_suffixes() if s.endswith(FOLDER_FORMAT_ENDINGS))


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A regular file (or a directory a reader may accept) worth offering to the readers.

    ``path`` is absolute but not resolved (symlinks kept, so the archive's own
    names are reported); ``size`` and ``mtime_ns`` come from the walk's stat.
    For the main file of a multi-file image (:mod:`zstack_analyzer.batch.grouping`),
    ``members`` names the other files (relative to its folder) and ``size`` and
    ``mtime_ns`` are the whole set's (total size, newest mtime).
    """

    path: str
    size: int
    mtime_ns: int
    is_dir: bool = False
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BadEntry:
    """Something in the folder that is not an ingestible file, and why."""

    path: str
    reason: str


WalkItem = FileEntry | BadEntry


def _classify_mode(path: str, mode: int) -> str | None:
    """The reason a non-regular file is skipped (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    return "not a regular file"


def _entry_item(entry: os.DirEntry[str], dir_suffixes: frozenset[str]) -> WalkItem | str:
    """A classified item, or the path of a directory to descend into."""
    path = entry.path
    try:
        is_link = entry.is_symlink()
        st = entry.stat(follow_symlinks=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return BadEntry(path, "symlink loop")
        if exc.errno == errno.ENOENT:
            return BadEntry(path, "broken symlink" if entry.is_symlink() else "vanished")
        if exc.errno == errno.EACCES:
            return BadEntry(path, "permission denied")
        return BadEntry(path, f"cannot stat: {exc.strerror or exc}")
    if stat.S_ISDIR(st.st_mode):
        if dir_suffixes and entry.name.lower().endswith(tuple(dir_suffixes)):
            # A folder-format image (OME-Zarr): one unit, offered to the readers whole.
            return FileEntry(path, 0, st.st_mtime_ns, is_dir=True)
        if is_link:
            # Never follow symlinked folders: that is how walks loop or leave the archive.
            return BadEntry(path, "symlink to a folder (not followed)")
        return path
    reason = _classify_mode(path, st.st_mode)
    if reason is not None:
        return BadEntry(path, reason)
    if st.st_size == 0:
        return BadEntry(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        return BadEntry(path, "permission denied (not readable)")
    return FileEntry(path, st.st_size, st.st_mtime_ns)


def walk(
    paths: Iterable[str | Path], /, *, dir_suffixes: frozenset[str] = frozenset()
) -> Iterator[WalkItem]:
    """Every file under ``paths`` (recursively), as a stream, in directory order.

    Parameters
    ----------
    paths
        Files and folders; a folder is walked recursively, a file is yielded itself.
    dir_suffixes
        Lower-case folder name endings (".zarr") that are images, not folders to
        descend into.

    Examples
    --------
    >>> for item in walk(["/data/lab"]):  # doctest: +SKIP
    ...     print(item)
    FileEntry(path='/data/lab/a.czi', size=104857600, mtime_ns=..., is_dir=False)
    BadEntry(path='/data/lab/pipe', reason='a FIFO (named pipe), not a file')
    """
    for root in paths:
        top = os.path.abspath(os.fspath(root))
        try:
            st = os.stat(top)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                yield BadEntry(top, "symlink loop")
            elif os.path.islink(top):
                yield BadEntry(top, "broken symlink")
            elif exc.errno == errno.EACCES:
                yield BadEntry(top, "permission denied")
            else:
                yield BadEntry(top, "no such file or folder")
            continue
        if not stat.S_ISDIR(st.st_mode):
            reason = _classify_mode(top, st.st_mode)
            if reason is not None:
                yield BadEntry(top, reason)
            elif st.st_size == 0:
                yield BadEntry(top, "empty file (0 bytes)")
            elif not os.access(top, os.R_OK):
                yield BadEntry(top, "permission denied (not readable)")
            else:
                yield FileEntry(top, st.st_size, st.st_mtime_ns)
            continue
        if dir_suffixes and top.lower().endswith(tuple(dir_suffixes)):
            yield FileEntry(top, 0, st.st_mtime_ns, is_dir=True)
            continue
        yield from _walk_dir(top, dir_suffixes)


def _walk_dir(top: str, dir_suffixes: frozenset[str]) -> Iterator[WalkItem]:
    """Depth-first over ``top`` with an explicit stack of folders still to open."""
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            iterator = os.scandir(folder)
        except PermissionError:
            yield BadEntry(folder, "permission denied (folder not readable)")
            continue
        except OSError as exc:
            yield BadEntry(folder, f"cannot list folder: {exc.strerror or exc}")
            continue
        subfolders: list[str] = []
        with iterator:
            for entry in iterator:
                item = _entry_item(entry, dir_suffixes)
                if isinstance(item, str):
                    subfolders.append(item)
                else:
                    yield item
        # Names, not DirEntry objects: bounded by one folder's subfolders, not the tree.
        pending.extend(reversed(subfolders))


def count_files(
    paths: Iterable[str | Path], /, *, dir_suffixes: frozenset[str] = frozenset()
) -> tuple[int, int]:
    """How many items (candidate files and bad entries) and bytes :func:`walk` will yield.

    Bad entries count too: the progress reports every item it handles.
    """
    files = 0
    size = 0
    for item in walk(paths, dir_suffixes=dir_suffixes):
        files += 1
        if isinstance(item, FileEntry):
            size += item.size
    return files, size
