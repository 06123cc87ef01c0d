"""Group the files of a walk into images: a multi-file image is one entry, its main file.

Why here and not in each sink: the local sink, the HTTP sink and the watch
folder all walk files one by one; each must see one entry per image. The
formats' knowledge stays in the readers (:func:`zstack_analyzer.filesets.file_set`);
this module only applies it to walk entries:

- a member whose main file is inside the walk is not an image of its own (it
  is reported as a ``member`` and never registered);
- the main file's entry carries the other members and the set's total size
  and newest mtime, so "already present, unchanged" (same path, size, mtime)
  notices a change to any member, and a set is settled only when every member is;
- a member whose main file lies outside the walk (a single file given on the
  command line) is offered as it is, as before: its reader decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from zstack_analyzer.filesets import SetMemo, file_set, set_state

if TYPE_CHECKING:
    from collections.abc import Iterable

    from zstack_analyzer.batch.walk import FileEntry
    from zstack_analyzer.limits import ReadLimits

__all__ = ["Member", "SetMemo", "group_entry", "walk_roots"]


@dataclass(frozen=True, slots=True)
class Member:
    """A walked file that belongs to the image whose main file is ``main``."""

    path: str
    main: str
    size: int


def walk_roots(paths: Iterable[object]) -> tuple[str, ...]:
    """The walk's roots as absolute, unresolved paths (how the walk names entries)."""
    return tuple(os.path.abspath(os.fspath(p)) for p in paths)  # type: ignore[call-overload]


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def group_entry(
    entry: FileEntry,
    roots: tuple[str, ...],
    limits: ReadLimits | None = None,
    *,
    memo: SetMemo | None = None,
) -> FileEntry | Member:
    """``entry`` as the walk should offer it: itself, a set's main entry, or a :class:`Member`.

    ``memo``: one per walk, so the members of a set are found once (see :class:`SetMemo`).
    """
    if entry.is_dir:
        return entry
    files = file_set(entry.path, limits, memo=memo)
    if not files.is_multi:
        return entry
    main = str(files.main)
    if main != entry.path:
        if _inside(main, roots) and files.main.is_file():
            return Member(entry.path, main, entry.size)
        return entry
    state = set_state(files)
    return replace(entry, size=state.size, mtime_ns=state.mtime_ns, members=files.others())
