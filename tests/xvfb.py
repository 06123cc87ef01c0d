"""A private X display for Qt tests (napari), shared by the napari test folders.

Why Xvfb and not ``QT_QPA_PLATFORM=offscreen``: offscreen Qt gives napari's
canvas no OpenGL, and adding a layer crashes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from tests.needs import unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def xvfb_display() -> Iterator[str]:
    """A private X display (``Xvfb -displayfd`` picks a free number; no TCP); yields ``:N``."""
    binary = shutil.which("Xvfb")
    if binary is None:
        unavailable("Xvfb (Debian's xvfb; scripts/ensure-napari-deps.sh installs it)")
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [binary, "-displayfd", str(write_fd), "-nolisten", "tcp", "-screen", "0", "1280x1024x24"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        assert number.isdigit(), "Xvfb did not report its display"
        yield f":{number}"
    finally:
        process.terminate()
        process.wait(timeout=30)
