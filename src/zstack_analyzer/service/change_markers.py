"""Marker files in the shared data dir: "what you memoised before this instant is stale".

Why files: several server processes (uvicorn workers, servers on several hosts)
share one database and one data dir, but no memory. A process that keeps a
short-lived memo (image rows, resolved credentials) must still see a change
made by another one at once when the change takes rights away. The process
that commits such a change touches a marker; every memo hit stats it (one
``stat``, no database round trip) and refetches an entry fetched before it.

The clock, in one place for every marker:

- the writer sets the marker's mtime explicitly to its wall clock
  (:func:`time.time_ns`) *after* the commit, not to whatever the file system
  would stamp;
- a reader records the wall clock (ns) *before* its fetch begins, so a change
  committed while the fetch ran counts as "after" it;
- an entry is stale when ``marker + margin >= fetched``: ``>=``, so a marker
  written in the same instant as a fetch invalidates it, and ``margin``
  (:data:`CHANGE_MARGIN_NS`, 2 s) covers file systems that store coarse
  mtimes (1 s on ext3/HFS+, 2 s on FAT: the stored time is rounded down) and
  small clock differences between hosts sharing the data dir.

The cost of the margin: for ``margin`` after a change, entries are refetched on
every hit. Changes that need a marker are rare (a move, a revoke), so that is
a few extra queries, never a steady cost.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CHANGE_MARGIN_NS", "marked_since", "touch_marker"]

#: How much earlier than a memo's fetch a marker may be and still count
#: (coarse file-system mtimes, clock skew between hosts).
CHANGE_MARGIN_NS = 2_000_000_000


def touch_marker(path: Path) -> None:
    """Create or touch ``path``, its mtime set to the wall clock now (call after the commit).

    Blocking file work (a few syscalls): call it off the event loop.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    now_ns = time.time_ns()
    os.utime(path, ns=(now_ns, now_ns))


def marked_since(path: Path, fetched_ns: int, *, margin_ns: int = CHANGE_MARGIN_NS) -> bool:
    """Whether ``path`` was touched after (or about when) a fetch that began at ``fetched_ns``.

    One ``stat``; a missing marker means "never changed".
    """
    try:
        marked_ns = os.stat(path).st_mtime_ns
    except OSError:
        return False
    return marked_ns + margin_ns >= fetched_ns
