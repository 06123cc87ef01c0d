"""Multi-file images: which files make one image, and which of them is the main file.

Why in the library, once: a Micro-Manager dataset, an NDTiff folder, a
multi-file OME-TIFF set, an OIF with its ``.oif.files`` folder, an ICS/IDS
pair or a MetaMorph ``.nd`` with its TIFFs is *one* image spread over several
files. Everything that handles files one by one (the ingest walk, the watch
folder, the copy into storage, the change check of an in-place record) must
treat the set as a unit, and must not know any format to do so. The readers
say it (:meth:`ImageReader.file_set`, :meth:`ImageReader.main_for_member`);
formats whose reader is not on this side (ICS/IDS and MetaMorph ND, read
through Bio-Formats) are a small table of name rules here.

Rules every set obeys (checked in :func:`file_set`, whatever the reader said):
members lie in the main file's folder or below it (relative names without
``..``, never absolute), they are at most :data:`MAX_SET_FILES`, and the main
file is one of them. A set whose members leave the folder is refused
(:class:`~zstack_analyzer.errors.CorruptFileError`): an in-place record reads
only inside the import roots, a copy keeps the names relative to the main file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from zstack_analyzer.errors import CorruptFileError, LimitExceededError, ZstackError

if TYPE_CHECKING:
    from collections.abc import Callable

    from zstack_analyzer.limits import ReadLimits

__all__ = [
    "MAX_SET_FILES",
    "FileSet",
    "SetMemo",
    "SetState",
    "file_set",
    "find_file_set",
    "hash_set",
    "set_state",
]

#: Most files one image may span (a Micro-Manager run: positions x continuation files).
MAX_SET_FILES = 4096
#: Name endings (lower case) that are TIFF planes of a MetaMorph ``.nd`` run.
ND_MEMBER_SUFFIXES = (".tif", ".tiff", ".stk")


@dataclass(frozen=True, slots=True)
class FileSet:
    """One image's files: ``main`` (what the reader opens) and every member, main included.

    ``names`` are the members' paths relative to ``main``'s folder (POSIX, sorted,
    the main file's own name among them), which is how a copy keeps the layout
    the reader needs.
    """

    main: Path
    names: tuple[str, ...]

    @property
    def is_multi(self) -> bool:
        """More than the main file."""
        return len(self.names) > 1

    @property
    def folder(self) -> Path:
        """The folder every member is relative to."""
        return self.main.parent

    def paths(self) -> list[Path]:
        """Every member (main included) as a path."""
        return [self.folder / name for name in self.names]

    def others(self) -> tuple[str, ...]:
        """The members other than the main file (relative names)."""
        return tuple(n for n in self.names if n != self.main.name)

    @classmethod
    def single(cls, path: Path) -> FileSet:
        """A one-file image."""
        return cls(path, (path.name,))

    @classmethod
    def of(cls, main: Path, members: list[Path] | tuple[Path, ...]) -> FileSet:
        """A set from absolute (or main-relative) member paths; checked (see the module doc)."""
        folder = main.parent
        names = {main.name}
        for member in members:
            try:
                rel = member.relative_to(folder) if member.is_absolute() else member
            except ValueError:
                msg = f"{main.name}: set member {member} lies outside the folder of its main file"
                raise CorruptFileError(msg, path=main) from None
            posix = PurePosixPath(*rel.parts)
            if posix.is_absolute() or ".." in posix.parts or not posix.parts:
                msg = f"{main.name}: set member name {str(member)[:200]!r} leaves the folder"
                raise CorruptFileError(msg, path=main)
            names.add(str(posix))
        if len(names) > MAX_SET_FILES:
            msg = f"{main.name}: {len(names):,} files in one image, over {MAX_SET_FILES:,}"
            raise LimitExceededError(msg, path=main)
        return cls(main, tuple(sorted(names)))


@dataclass(frozen=True, slots=True)
class SetState:
    """What a set looks like on disk: total size, newest mtime, and members missing."""

    size: int
    mtime_ns: int
    missing: tuple[str, ...] = ()


def set_state(files: FileSet) -> SetState:
    """Total size and newest mtime of the set's regular files (``lstat`` never opens a FIFO).

    Why total and newest: a record remembers one size and one mtime for its
    original; for a set those two change whenever any member is rewritten, so
    the existing "same path, size and mtime" check covers every member.
    """
    size = 0
    newest = 0
    missing = []
    for name in files.names:
        try:
            st = os.stat(files.folder / name)
        except (FileNotFoundError, NotADirectoryError):
            missing.append(name)
            continue
        if not stat.S_ISREG(st.st_mode):
            missing.append(name)
            continue
        size += st.st_size
        newest = max(newest, st.st_mtime_ns)
    return SetState(size, newest, tuple(missing))


def hash_set(files: FileSet, file_hash: Callable[[Path], str]) -> str:
    """SHA-256 naming a set: every member's relative name and its bytes' SHA-256.

    ``file_hash(path) -> hex`` hashes one member (so the caller may copy on the way).
    """
    hasher = hashlib.sha256()
    for name in files.names:
        hasher.update(name.encode() + b"\0")
        hasher.update(bytes.fromhex(file_hash(files.folder / name)))
    return hasher.hexdigest()


# ------------------------------------------------------------------ name rules
def _ics_set(path: Path) -> FileSet | None:
    """ICS 1.0 keeps the header (``.ics``) and the pixels (``.ids``) in two files, same stem."""
    suffix = path.suffix
    if suffix.lower() == ".ics":
        ids = _sibling_with_suffix(path, ".ids")
        return FileSet.of(path, [ids]) if ids is not None else FileSet.single(path)
    if suffix.lower() == ".ids":
        ics = _sibling_with_suffix(path, ".ics")
        if ics is not None:
            return FileSet.of(ics, [path])
    return None


def _sibling_with_suffix(path: Path, suffix: str) -> Path | None:
    for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=64)
def _nd_stems(folder: str, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    """``(stem, file name)`` of the ``.nd`` files in ``folder`` (cached on the folder's mtime).

    Why cached: every TIFF of a folder asks whether an ``.nd`` claims it; one
    listing per folder state, not one per file.
    """
    del mtime_ns  # part of the cache key only
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.lower().endswith(".nd") and entry.is_file():
                found.append((entry.name[:-3], entry.name))
    return tuple(sorted(found, key=lambda pair: -len(pair[0])))


def _nd_member_of(stem: str, name: str) -> bool:
    """A MetaMorph run's file: ``<stem>_w1GFP_s2_t3.TIF`` (or ``.stk``), or ``<stem>.stk``."""
    lower = name.lower()
    if not lower.endswith(ND_MEMBER_SUFFIXES):
        return False
    if not name.startswith(stem):
        return False
    rest = name[len(stem) :]
    return rest[:1] in ("_", ".")


def _nd_set(path: Path) -> FileSet | None:
    """MetaMorph ``.nd``: the main file; members are the TIFF/STK files named from its stem."""
    if path.suffix.lower() == ".nd":
        stem = path.name[:-3]
        members = []
        with os.scandir(path.parent) as entries:
            for entry in entries:
                if _nd_member_of(stem, entry.name) and entry.is_file():
                    members.append(path.parent / entry.name)
                    if len(members) > MAX_SET_FILES:
                        msg = f"{path.name}: over {MAX_SET_FILES:,} files in one MetaMorph run"
                        raise LimitExceededError(msg, path=path)
        return FileSet.of(path, members)
    if path.name.lower().endswith(ND_MEMBER_SUFFIXES):
        folder = str(path.parent)
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return None
        for stem, nd_name in _nd_stems(folder, mtime):
            if _nd_member_of(stem, path.name):
                return _nd_set(path.parent / nd_name)
    return None


_NAME_RULES = (_ics_set, _nd_set)


class SetMemo:
    """Sets already found in one walk, by every member's path (bounded).

    Why: a walk asks about every file of a set in turn; without a memo each
    member repeats the listing (a Micro-Manager run of N files would cost N
    listings of N names). Valid for one walk (or one poll of a watch folder).
    """

    def __init__(self, max_paths: int = 4 * MAX_SET_FILES) -> None:
        self.max_paths = max_paths
        self._by_path: dict[Path, FileSet] = {}

    def get(self, path: Path) -> FileSet | None:
        """The set ``path`` was found in, if any."""
        return self._by_path.get(path)

    def add(self, files: FileSet) -> None:
        """Remember a multi-file set under each of its members."""
        if not files.is_multi:
            return
        if len(self._by_path) + len(files.names) > self.max_paths:
            self._by_path.clear()
        for member in files.paths():
            self._by_path[member] = files


def file_set(
    path: str | Path, limits: ReadLimits | None = None, *, memo: SetMemo | None = None
) -> FileSet:
    """:func:`find_file_set`, remembered in ``memo`` for the other members of the set."""
    absolute = Path(os.path.abspath(path))
    if memo is not None:
        known = memo.get(absolute)
        if known is not None:
            return known
    found = find_file_set(absolute, limits)
    if memo is not None:
        memo.add(found)
    return found


def find_file_set(path: str | Path, limits: ReadLimits | None = None) -> FileSet:
    """The image ``path`` belongs to: its main file and every member (a single file: itself).

    Cheap: names, the first bytes and, for some formats, a bounded header
    (OME-XML, an index). Never reads pixels. Errors of the header are not
    raised here: the file is then treated as a single file and its reader
    reports the error when it is opened.

    Examples
    --------
    >>> file_set("/data/run_MMStack_Pos1.ome.tif").main  # doctest: +SKIP
    PosixPath('/data/run_MMStack_Pos0.ome.tif')
    """
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.registry import HEAD_BYTES, reader_classes

    path = Path(os.path.abspath(path))
    limits = limits or ReadLimits()
    try:
        classes = reader_classes()
        for cls in classes:
            main = cls.main_for_member(path)
            if main is not None and main != path:
                return _checked(cls.file_set(main, limits), path)
        for rule in _NAME_RULES:
            found = rule(path)
            if found is not None:
                return _checked(found, path)
        if not path.is_file():
            return FileSet.single(path)
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
        for cls in classes:
            if cls.sniff(head, path):
                return _checked(cls.file_set(path, limits), path)
    except (OSError, ZstackError, ValueError):
        return FileSet.single(path)
    return FileSet.single(path)


def _checked(found: FileSet | None, asked: Path) -> FileSet:
    """The reader's answer, re-checked (main among the members, names inside the folder)."""
    if found is None:
        return FileSet.single(asked)
    checked = FileSet.of(found.main, [Path(n) for n in found.names])
    rel = os.path.relpath(asked, checked.folder)
    if asked != checked.main and rel not in checked.names:
        return FileSet.single(asked)  # the reader's set does not hold the file asked about
    return checked
