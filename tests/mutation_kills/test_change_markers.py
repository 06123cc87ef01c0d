"""The change markers on a real file system: where they are written, when they count.

Why: every "this memo entry is stale" decision of the image memo (a move) and of the
principal cache (an account change) reads a marker file's mtime; a marker that could not
be written where the data dir lacks its folder, or one stamped with another clock, would
leave other server processes serving what was taken away. A move marker that cannot be
written is only logged (the move is committed), so that log line must say which image,
which marker and why.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import TYPE_CHECKING

from zstack_analyzer.service.change_markers import CHANGE_MARGIN_NS, marked_since, touch_marker
from zstack_analyzer.service.images_service import RecordMemo

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_a_marker_in_folders_not_made_yet_is_written_with_them(tmp_path: Path) -> None:
    """A fresh data dir has no ``deleted/`` yet (nothing deleted), nor its parents here."""
    marker = tmp_path / "data" / "deleted" / "1234.changed"
    before = time.time_ns()
    touch_marker(marker)
    after = time.time_ns()
    assert marker.is_file()
    assert before - CHANGE_MARGIN_NS <= marker.stat().st_mtime_ns <= after
    # A fetch that began before the marker is stale; one begun well after it is not.
    assert marked_since(marker, before)
    assert not marked_since(marker, after + 2 * CHANGE_MARGIN_NS)


def test_touching_again_moves_an_old_marker_to_now(tmp_path: Path) -> None:
    """A second move of the same image (its marker from an hour ago) counts again."""
    marker = tmp_path / "deleted" / "1234.changed"
    marker.parent.mkdir()
    marker.touch()
    an_hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(marker, ns=(an_hour_ago, an_hour_ago))
    fetched = time.time_ns()
    assert not marked_since(marker, fetched)
    touch_marker(marker)
    assert marked_since(marker, fetched)
    assert marker.stat().st_mtime_ns >= fetched - CHANGE_MARGIN_NS


def test_an_unwritable_move_marker_is_logged_naming_the_image_the_marker_and_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``RecordMemo.mark_changed``: the ERROR says which image, which marker, the OS's reason.

    The marker's path leads through a regular file (ENOTDIR), as on a data dir gone bad;
    the move is committed, so this is all an operator gets.
    """
    deleted = tmp_path / "deleted"
    deleted.mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    image_id = "6d0e9d6c-8a4f-4bde-9a5e-3f1c2b7a9e10"
    marker = deleted / f"{image_id}.changed"
    marker.symlink_to(blocker / "marker")
    memo = RecordMemo(deleted_dir=deleted, ttl_s=7.0)
    with caplog.at_level(logging.ERROR, logger="zstack_analyzer.service.images_service"):
        memo.mark_changed(image_id)
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert message == (
        f"image {image_id} moved, but its change marker {marker} cannot be written "
        f"([Errno {errno.ENOTDIR}] Not a directory: '{marker}'): other server processes may "
        "show it to its old group for up to 7 s; make the data dir writable"
    )
