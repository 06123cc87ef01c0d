"""Stored originals: atomic writes and the start-up sweep.

Why this order (temp file -> fsync -> rename -> DB commit): a crash at any
point leaves either nothing, a temp file, or a file without a row, and the
start-up sweep removes both. A row never points at a missing or half-written
file. Files are named ``<uuid><suffix>``: a user's filename is display text and
never touches the file system.
"""

from __future__ import annotations

import logging
import os
import re
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Storage", "SweepReport", "display_filename", "stored_suffix"]

logger = logging.getLogger(__name__)

#: Longest display filename kept (characters).
MAX_FILENAME_CHARS = 255
# C0/C1 controls, and the bidirectional embedding/override/isolate controls
# (U+202A-U+202E, U+2066-U+2069) with the invisible marks U+200E, U+200F, U+061C:
# they let "photo\u202egpj.exe" display as "photoexe.jpg".
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_SUFFIX = re.compile(r"^(\.[a-z0-9]{1,8}){1,2}$")


def display_filename(name: str | None) -> str:
    r"""A user's filename made safe to show and to store as text.

    Path parts (either separator), control characters and bidirectional
    controls (U+202A-U+202E, U+2066-U+2069) are stripped, the text is NFC-normalised and capped at 255 characters (keeping the
    extension). An empty result becomes ``"upload"``.

    Examples
    --------
    >>> display_filename("../../etc/pass\x00wd.tif")
    'passwd.tif'
    >>> display_filename("C:\\data\\cells.czi")
    'cells.czi'
    """
    text = unicodedata.normalize("NFC", name or "")
    text = _CONTROL.sub("", text)
    text = PureWindowsPath(PurePosixPath(text).name).name.strip()
    if text in {"", ".", ".."}:
        return "upload"
    if len(text) > MAX_FILENAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            text = stem[: MAX_FILENAME_CHARS - len(ext) - 1] + "." + ext
        else:
            text = text[:MAX_FILENAME_CHARS]
    return text


def stored_suffix(filename: str, known: frozenset[str] = frozenset()) -> str:
    """The extension kept on disk: the longest known one (".ome.tif"), else a short plain one.

    Readers may use the extension to break ties, so it is kept; anything odd is
    dropped rather than trusted.

    Examples
    --------
    >>> stored_suffix("cells.OME.TIF", frozenset({".ome.tif", ".tif"}))
    '.ome.tif'
    >>> stored_suffix("weird.name/..")
    ''
    """
    lower = filename.lower()
    matches = [s for s in known if lower.endswith(s)]
    if matches:
        return max(matches, key=len)
    suffix = Path(lower).suffix
    return suffix if _SUFFIX.match(suffix) else ""


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What the start-up sweep removed."""

    temp_files: list[str]
    orphan_files: list[str]


class Storage:
    """Files under a data directory: ``images/`` (originals) and ``tmp/`` (uploads in flight).

    Parameters
    ----------
    images_dir
        Final location of stored originals.
    tmp_dir
        Temp files; must be on the same file system so ``os.replace`` is atomic.
    """

    def __init__(self, images_dir: Path, tmp_dir: Path) -> None:
        self.images_dir = images_dir
        self.tmp_dir = tmp_dir

    def ensure_dirs(self) -> None:
        """Create the directories (idempotent)."""
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def new_stored_name(self, suffix: str) -> str:
        """A fresh ``<uuid><suffix>`` name."""
        return f"{uuid.uuid4().hex}{suffix}"

    def temp_path(self, stored_name: str) -> Path:
        """Where the upload for ``stored_name`` is written before it is committed."""
        return self.tmp_dir / stored_name

    def path(self, stored_name: str) -> Path:
        """The stored original (``stored_name`` comes from our own database, never a user)."""
        return self.images_dir / stored_name

    def commit(self, temp: Path, stored_name: str) -> Path:
        """Make ``temp`` durable and move it into place atomically; return the final path."""
        with temp.open("rb") as fh:
            os.fsync(fh.fileno())
        final = self.path(stored_name)
        os.replace(temp, final)
        _fsync_dir(self.images_dir)
        return final

    def remove(self, stored_name: str) -> bool:
        """Delete a stored original; ``False`` when it was already gone."""
        try:
            self.path(stored_name).unlink()
        except FileNotFoundError:
            return False
        return True

    def discard_temp(self, temp: Path) -> None:
        """Delete an abandoned temp file, if any."""
        temp.unlink(missing_ok=True)

    def sweep(self, keep: set[str], *, grace_seconds: float = 0.0) -> SweepReport:
        """Remove temp files and stored files without a row (older than ``grace_seconds``)."""
        cutoff = time.time() - grace_seconds
        temps = _remove_old(self.tmp_dir.iterdir(), cutoff) if self.tmp_dir.is_dir() else []
        orphans = (
            _remove_old((p for p in self.images_dir.iterdir() if p.name not in keep), cutoff)
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


def _remove_old(paths: Iterable[Path], cutoff: float) -> list[str]:
    removed = []
    for path in paths:
        try:
            if not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path.name)
    return removed


def _fsync_dir(directory: Path) -> None:
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
