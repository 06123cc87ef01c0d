"""Every file Bio-Formats read for an image must be one we would have let it read.

Why a check of our own: :mod:`zstack_analyzer.confine` watches Python's
``open`` (an audit hook), but the JVM opens files itself, unseen. A
multi-file format (ICS/IDS, MetaMorph ND, a DeltaVision log) names its
companions, and a hostile main file could name ``/etc/passwd`` or a symlink
out of an import root. So after Bio-Formats opens a file, every path it
reports in ``getUsedFiles`` is checked before anything is served:

* it lies in the main file's own folder (or below it), after resolving
  symlinks: companions sit beside their main file;
* when the main file is under a confined import root, it is a regular file
  whose real path is inside a root (:func:`~zstack_analyzer.confine.inspect_confined`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from zstack_analyzer.confine import UnsafeFileError, inspect_confined, is_confined

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["check_used_files"]


def check_used_files(main: Path, used: Sequence[str]) -> None:
    """Raise :class:`UnsafeFileError` unless every file in ``used`` is a safe companion of ``main``."""
    main_real = os.path.realpath(main)
    folder = os.path.dirname(main_real).rstrip(os.sep) + os.sep
    confined = is_confined(main)
    for name in used:
        real = os.path.realpath(name)
        if real == main_real:
            continue
        if not real.startswith(folder):
            msg = (
                f"{main.name}: Bio-Formats reads {os.path.basename(name)!r} outside the file's "
                "folder for it; refused"
            )
            raise UnsafeFileError(msg, path=main)
        if confined:
            inspect_confined(name, allow_dir=False)
