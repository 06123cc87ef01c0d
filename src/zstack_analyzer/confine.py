"""Reads confined to the import roots: every file opened beneath a root is checked where it lands.

Why here, as one process-wide guard, and not in each reader: an in-place
original is read by many hands (tifffile, zarr's store, pydicom, oiffile, our
own readers), each opening the main file and its companions, chunks and
sidecars by name. Checking only the registered path let a chunk that is a
symlink to ``/etc/passwd`` (or ``/proc/self/environ``) be served byte for byte.
So the check sits at the one point every Python-level open passes through, the
``open`` audit event (PEP 578): once :func:`confine_reads` has named the roots,
any read-only open of a path that lies (lexically, ``..`` not collapsed) under
a root must land on a regular file (or a folder) whose real path is inside a
root. The check opens the path with ``O_PATH`` first: no FIFO can block it and
no device is opened by it.

The audit event fires before the real open, so a swap between the two is
still possible for third-party opens; the reads that serve bytes directly (a
download, an OME-Zarr folder's chunks, a registered file's own identity check)
go through :func:`open_confined`, which checks the very file descriptor it
returns (its real path, type and device + inode), so no swap can get past it.

Library code: the roots are given by the caller (the service's settings, the
ingest sink); nothing here reads the environment.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from typing import TYPE_CHECKING, Any

from zstack_analyzer.errors import ZstackError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = [
    "UnsafeFileError",
    "confine_reads",
    "confined_roots",
    "inspect_confined",
    "is_confined",
    "open_confined",
]

_O_PATH: int = getattr(os, "O_PATH", 0)
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
_O_NOCTTY: int = getattr(os, "O_NOCTTY", 0)
_WRITE_FLAGS = (
    os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_EXCL", 0)
)
_PROC_FD = "/proc/self/fd"


class UnsafeFileError(ZstackError, PermissionError):
    """A file beneath an import root leads outside it, or is no regular file (HTTP 409).

    A ``PermissionError`` too, so third-party code that handles I/O errors
    treats it as one (zarr, for one, would read a missing chunk as fill value).
    """

    code = "unsafe_file"


class _State:
    """The confined roots (as given and resolved) and the per-thread re-entry flag."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.installed = False
        #: Real paths of the roots (what an opened file's real path must be under).
        self.real: tuple[str, ...] = ()
        #: Every spelling of the roots a path may start with (as given, and real).
        self.prefixes: tuple[str, ...] = ()
        self.local = threading.local()


_STATE = _State()


def confine_reads(roots: Iterable[str | Path]) -> None:
    """Confine every later read beneath ``roots`` to regular files inside them (idempotent).

    Roots add up over the life of the process (an audit hook cannot be
    removed); a file must lie inside any of them.
    """
    given = [os.path.abspath(os.fspath(root)) for root in roots]
    if not given:
        return
    with _STATE.lock:
        real = set(_STATE.real) | {os.path.realpath(root) for root in given}
        prefixes = set(_STATE.prefixes) | set(given) | real
        _STATE.real = tuple(sorted(real))
        _STATE.prefixes = tuple(sorted(prefixes))
        if not _STATE.installed:
            sys.addaudithook(_audit)
            _STATE.installed = True


def confined_roots() -> tuple[str, ...]:
    """The real paths of the confined roots (empty when nothing is confined)."""
    return _STATE.real


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p.rstrip(os.sep) + os.sep) for p in prefixes)


def is_confined(path: str | Path) -> bool:
    """Whether ``path`` (absolute or relative to the working folder) lies under a confined root.

    Lexical: ``..`` is not collapsed, so ``root/a/../../etc/passwd`` counts as
    under the root and is then refused where it really lands.
    """
    prefixes = _STATE.prefixes
    if not prefixes:
        return False
    text = os.fsdecode(os.fspath(path))
    if not os.path.isabs(text):
        text = os.path.join(os.getcwd(), text)
    return _under(text, prefixes)


def _real_path(fd: int, path: str) -> str:
    try:
        return os.readlink(f"{_PROC_FD}/{fd}")
    except OSError:  # no /proc (not Linux): resolve the name instead (racy, best effort)
        return os.path.realpath(path)


def _describe(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _check(fd: int, path: str, st: os.stat_result, *, allow_dir: bool) -> None:
    """Refuse ``fd`` (opened from ``path``) unless it is a regular file (or folder) inside a root."""
    name = os.path.basename(path) or path
    if stat.S_ISDIR(st.st_mode) and not allow_dir:
        raise IsADirectoryError(errno.EISDIR, "is a folder", path)
    if not (stat.S_ISREG(st.st_mode) or (allow_dir and stat.S_ISDIR(st.st_mode))):
        msg = f"{name}: {_describe(st.st_mode)}, refused (only regular files are read)"
        raise UnsafeFileError(msg, path=path)
    roots = _STATE.real
    if roots and not _under(_real_path(fd, path), roots):
        msg = f"{name}: leads outside the import roots (a symlink out), refused"
        raise UnsafeFileError(msg, path=path)


def inspect_confined(path: str | Path, *, allow_dir: bool = True) -> os.stat_result:
    """The ``stat`` of what ``path`` leads to, after checking it is safe to read.

    Opens with ``O_PATH`` (Linux): the file itself is never opened, so a FIFO
    cannot block and a device sees nothing.

    Raises
    ------
    UnsafeFileError
        ``path`` leads outside the roots, or to a FIFO, socket or device.
    FileNotFoundError
        Nothing is there.
    """
    text = os.fspath(path)
    local = _STATE.local
    local.busy = True
    try:
        if _O_PATH:
            fd = os.open(text, _O_PATH | _O_CLOEXEC)
        else:  # pragma: no cover - not Linux
            fd = os.open(text, os.O_RDONLY | _O_NONBLOCK | _O_NOCTTY | _O_CLOEXEC)
        try:
            st = os.fstat(fd)
            _check(fd, os.fsdecode(text), st, allow_dir=allow_dir)
        finally:
            os.close(fd)
    finally:
        local.busy = False
    return st


def open_confined(
    path: str | Path, *, identity: tuple[int, int] | None = None
) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file ``path`` leads to, checked on the descriptor.

    Race-free: the type, the real path and (given ``identity``, a recorded
    ``(st_dev, st_ino)``) the identity are those of the very file the returned
    descriptor reads, whatever is swapped in under the name meanwhile.

    Raises
    ------
    UnsafeFileError
        Outside the roots, not a regular file, or not the recorded file.
    FileNotFoundError
        Nothing is there.
    """
    text = os.fspath(path)
    local = _STATE.local
    local.busy = True
    try:
        if _O_PATH:
            probe = os.open(text, _O_PATH | _O_CLOEXEC)
            try:
                st = os.fstat(probe)
                _check(probe, os.fsdecode(text), st, allow_dir=False)
                fd = os.open(f"{_PROC_FD}/{probe}", os.O_RDONLY | _O_CLOEXEC | _O_NONBLOCK)
            finally:
                os.close(probe)
        else:  # pragma: no cover - not Linux
            fd = os.open(text, os.O_RDONLY | _O_NONBLOCK | _O_NOCTTY | _O_CLOEXEC)
        try:
            opened = os.fstat(fd)
            if _O_PATH and (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                msg = f"{os.path.basename(text)}: replaced while it was opened, refused"
                raise UnsafeFileError(msg, path=text)
            _check(fd, os.fsdecode(text), opened, allow_dir=False)
            if identity is not None and (opened.st_dev, opened.st_ino) != identity:
                msg = f"{os.path.basename(text)}: not the file that was registered (replaced)"
                raise UnsafeFileError(msg, path=text)
        except BaseException:
            os.close(fd)
            raise
    finally:
        local.busy = False
    return fd, opened


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """The ``open`` audit hook: check read-only opens of paths under a confined root."""
    if event != "open":
        return
    path, mode, flags = args
    if path is None or isinstance(path, int):
        return
    if isinstance(flags, int) and flags & _WRITE_FLAGS:
        return
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return
    if getattr(_STATE.local, "busy", False):
        return
    try:
        if not is_confined(path):
            return
    except (TypeError, ValueError, OSError):  # not a path we can judge (the open itself will say)
        return
    try:
        inspect_confined(path, allow_dir=True)
    except FileNotFoundError:
        return  # the real open reports it, as it would have
