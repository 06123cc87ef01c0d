"""Local storage of originals: names, commits, sizes, ranges, removal and the start-up sweep.

Each is what the service relies on for crash safety and downloads: a committed original is
where the row says and the temp file is gone, a range is exactly its bytes (across the 1 MiB
read steps), and the sweep removes only old leftovers that no row keeps.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import pytest

from zstack_analyzer.storage import local
from zstack_analyzer.storage.local import RANGE_CHUNK_BYTES, LocalStorage, fsync_dir, remove_old


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "data" / "images", tmp_path / "data" / "tmp")
    store.ensure_dirs()
    return store


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_ensure_dirs_makes_both_folders_and_is_idempotent(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "a" / "images", tmp_path / "b" / "tmp")
    store.ensure_dirs()
    store.ensure_dirs()
    assert store.images_dir.is_dir()
    assert store.tmp_dir.is_dir()


def test_stored_names_are_fresh_uuids_with_the_suffix(storage: LocalStorage) -> None:
    first, second = storage.new_stored_name(".ome.tif"), storage.new_stored_name(".ome.tif")
    assert re.fullmatch(r"[0-9a-f]{32}\.ome\.tif", first)
    assert first != second
    assert re.fullmatch(r"[0-9a-f]{32}", storage.new_stored_name(""))


def test_commit_moves_the_temp_file_into_place(storage: LocalStorage) -> None:
    assert storage.is_local is True
    temp = storage.temp_path("x.tif")
    assert temp == storage.tmp_dir / "x.tif"
    temp.write_bytes(b"pixels")
    final = storage.commit(temp, "x.tif")
    assert final == storage.images_dir / "x.tif" == storage.path("x.tif")
    assert final.read_bytes() == b"pixels"
    assert not temp.exists()
    assert storage.cached_copy("x.tif") == final
    assert storage.remote_object("x.tif") is None
    assert storage.open_mirror("x.tif") is None
    assert storage.size("x.tif") == 6
    assert storage.size("missing.tif") is None


def test_discard_temp_removes_it_and_tolerates_none(storage: LocalStorage) -> None:
    temp = storage.temp_path("t")
    temp.write_bytes(b"x")
    storage.discard_temp(temp)
    assert not temp.exists()
    storage.discard_temp(temp)


def test_remove_says_whether_there_was_a_file(storage: LocalStorage) -> None:
    storage.path("r").write_bytes(b"x")
    assert storage.remove("r") is True
    assert not storage.path("r").exists()
    assert storage.remove("r") is False


def test_ranges_are_exact_across_read_steps(storage: LocalStorage) -> None:
    size = 2 * RANGE_CHUNK_BYTES + 1000
    data = os.urandom(size)
    storage.path("big").write_bytes(data)
    for start, end in [(0, size), (100, RANGE_CHUNK_BYTES + 300), (5, 6), (size - 10, size)]:
        chunks = list(storage.iter_range("big", start, end))
        assert b"".join(chunks) == data[start:end], (start, end)
        assert all(0 < len(c) <= RANGE_CHUNK_BYTES for c in chunks)
    whole = list(storage.iter_range("big", 0, size))
    assert [len(c) for c in whole] == [RANGE_CHUNK_BYTES, RANGE_CHUNK_BYTES, 1000]
    assert list(storage.iter_range("big", 7, 7)) == []
    # A range past the end stops at the end (never loops on empty reads).
    assert b"".join(storage.iter_range("big", size - 4, size + 50)) == data[-4:]


def test_sweep_removes_only_old_leftovers_without_a_row(
    storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    old_temp = storage.tmp_dir / "old-upload"
    new_temp = storage.tmp_dir / "new-upload"
    kept = storage.images_dir / "kept.tif"
    orphan = storage.images_dir / "orphan.tif"
    fresh_orphan = storage.images_dir / "fresh.tif"
    folder = storage.images_dir / "a-folder"  # a multi-file image's copy without a row
    folder.mkdir()
    _age(folder, 3600)
    kept_set = storage.images_dir / "kept-set"  # one with a row (stored as "kept-set/main")
    kept_set.mkdir()
    _age(kept_set, 3600)
    for path in (old_temp, new_temp, kept, orphan, fresh_orphan):
        path.write_bytes(b"x")
    for path in (old_temp, kept, orphan):
        _age(path, 3600)
    for path in (new_temp, fresh_orphan):
        _age(path, 5)
    with caplog.at_level(logging.WARNING, logger=local.__name__):
        report = storage.sweep({"kept.tif", "kept-set/main.tif"}, grace_seconds=60)
    assert report.temp_files == ["old-upload"]
    assert sorted(report.orphan_files) == ["a-folder", "orphan.tif"]
    assert not old_temp.exists()
    assert not orphan.exists()
    assert new_temp.exists()
    assert kept.exists()
    assert fresh_orphan.exists()
    assert not folder.exists()
    assert kept_set.is_dir()
    assert caplog.messages == ["start-up sweep removed 1 temp file(s) and 2 orphan file(s)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=local.__name__):
        again = storage.sweep({"kept.tif", "kept-set/main.tif"}, grace_seconds=60)
    assert (again.temp_files, again.orphan_files) == ([], [])
    assert caplog.text == ""
    # Without a grace period everything without a row goes (modified "now" is not after now).
    later = storage.sweep({"kept.tif", "kept-set/main.tif"})
    assert sorted(later.temp_files) == ["new-upload"]
    assert later.orphan_files == ["fresh.tif"]


def test_sweep_reports_temp_files_alone_and_has_no_grace_by_default(
    storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    temp = storage.tmp_dir / "upload"
    temp.write_bytes(b"x")
    _age(temp, 0.5)  # half a second old: no grace period unless asked for
    with caplog.at_level(logging.WARNING, logger=local.__name__):
        report = storage.sweep(set())
    assert report.temp_files == ["upload"]
    assert report.orphan_files == []
    assert caplog.messages == ["start-up sweep removed 1 temp file(s) and 0 orphan file(s)"]


def test_a_file_modified_exactly_at_the_cutoff_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "edge"
    path.write_bytes(b"x")
    assert remove_old([path], path.stat().st_mtime) == ["edge"]


def test_sweep_of_missing_folders_is_empty(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "none" / "images", tmp_path / "none" / "tmp")
    report = store.sweep(set())
    assert (report.temp_files, report.orphan_files) == ([], [])


class _VanishingPath(type(Path())):  # type: ignore[misc]
    """A path whose file is removed by someone else between ``is_file`` and ``stat``."""

    def is_file(self) -> bool:
        return os.path.isfile(self)

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        os.unlink(self)
        raise FileNotFoundError(str(self))


def test_remove_old_skips_a_file_that_vanished_and_goes_on(tmp_path: Path) -> None:
    gone = _VanishingPath(tmp_path / "gone")
    gone.write_bytes(b"x")
    old = tmp_path / "old"
    old.write_bytes(b"x")
    _age(old, 100)
    young = tmp_path / "young"
    young.write_bytes(b"x")
    missing = tmp_path / "missing"
    removed = remove_old([missing, gone, young, old], time.time() - 10)
    assert removed == ["old"]
    assert young.exists()


def test_fsync_dir_syncs_a_folder_and_closes_it(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        fsync_dir(tmp_path)
    assert len(os.listdir("/proc/self/fd")) == before
    fsync_dir(tmp_path / "missing")  # cannot be opened: a no-op, no error
