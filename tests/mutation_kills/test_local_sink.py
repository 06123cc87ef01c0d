"""The local ingest sink through its protocol (job, task, commit), as ``ingest`` and ``watch`` use it.

What each commit says (outcome, reason, the record's id), renders of a replaced version
evicted only when no record still has those bytes, and a folder image recorded alike
by the ingest and by POST /api/images/register.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from tests.service.conftest import _testclient_class, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.batch import FileEntry, ingest, walk
from zstack_analyzer.service.local_ingest import LocalSink

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.batch import Commit
    from zstack_analyzer.service.config import Settings


def _entry(path: Path) -> FileEntry:
    (item,) = walk([path], dir_suffixes=frozenset({".ome.zarr"}))
    assert isinstance(item, FileEntry)
    return item


def _commit(sink: LocalSink, path: Path) -> Commit:
    entry = _entry(path)
    return sink.commit(entry, sink.task()(sink.job(entry)))


def _record(settings: Settings, image_id: str) -> dict[str, object]:
    from zstack_analyzer.service.app import create_app

    with _testclient_class()(create_app(settings)) as client:
        answer = client.get(f"/api/images/{image_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def test_in_place_commits_name_the_record_and_say_refreshed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    source = write_ome_tiff(root / "a.ome.tif")
    settings = make_settings(tmp_path / "data", import_roots=[root])
    with LocalSink(settings, in_place=True) as sink:
        first = _commit(sink, source)
        assert (first.outcome, first.reason) == ("ingested", "")
        assert first.image_id is not None
        record = _record(settings, first.image_id)
        assert record["source_path"] == str(source)
        assert record["thumbnail_ready"] is True  # rendered by the task, marked on this record

        write_ome_tiff(source, (1, 3, 24, 32), seed=4)
        again = _commit(sink, source)
        assert (again.outcome, again.reason, again.image_id) == (
            "ingested",
            "refreshed",
            first.image_id,
        )
        assert _record(settings, first.image_id)["depth"] == 3

        outside = write_ome_tiff(tmp_path / "outside.ome.tif")
        refused = _commit(sink, outside)
        assert refused.outcome == "failed"
        assert "outside the import roots" in refused.reason

        notes = root / "notes.txt"
        notes.write_text("not an image")
        unsupported = _commit(sink, notes)
        assert unsupported.outcome == "unsupported"
        assert unsupported.reason

        entry = _entry(source)
        job = sink.job(entry)
        with source.open("ab") as fh:
            fh.write(b"\0")
        skipped = sink.commit(entry, sink.task()(job))
        assert skipped.outcome == "skipped"
        assert "still being written" in skipped.reason


def test_copied_commits_and_duplicates(tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "a.ome.tif")
    twin = tmp_path / "twin.ome.tif"
    shutil.copyfile(source, twin)
    settings = make_settings(tmp_path / "data")
    with LocalSink(settings, in_place=False) as sink:
        first = _commit(sink, source)
        assert (first.outcome, first.reason) == ("ingested", "")
        assert first.image_id is not None
        record = _record(settings, first.image_id)
        assert record["filename"] == "a.ome.tif"
        assert record["stored_in_place"] is False
        duplicate = _commit(sink, twin)
        assert duplicate.outcome == "present"
        assert duplicate.reason == f"same bytes as image {first.image_id}"
        assert duplicate.image_id == first.image_id
        cut = tmp_path / "cut.ome.tif"
        cut.write_bytes(source.read_bytes()[:3000])
        failed = _commit(sink, cut)
        assert failed.outcome == "failed"
        assert "cut.ome.tif" in failed.reason
    assert not any((settings.data_dir / "tmp").iterdir())


def _cached(settings: Settings, sha256: str) -> bool:
    """Whether the render cache holds entries of ``sha256`` (layout: cache.py's docstring)."""
    folder = settings.cache_dir / sha256[:2] / sha256
    return folder.is_dir() and any(folder.iterdir())


def test_renders_of_replaced_bytes_go_only_when_no_record_has_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = write_ome_tiff(root / "first.ome.tif")
    second = root / "second.ome.tif"
    shutil.copyfile(first, second)
    settings = make_settings(tmp_path / "data", import_roots=[root])
    with LocalSink(settings, in_place=True) as sink:
        assert ingest([root], sink).ingested == 2
    from tests.batch.conftest import rows

    (old,) = {r[0] for r in rows(settings.data_dir)}
    assert _cached(settings, old)

    write_ome_tiff(first, (1, 3, 24, 32), seed=5)
    with LocalSink(settings, in_place=True) as sink:
        assert ingest([root], sink).ingested == 1
    assert _cached(settings, old)  # second.ome.tif still has those bytes

    write_ome_tiff(second, (1, 3, 24, 32), seed=6)
    with LocalSink(settings, in_place=True) as sink:
        assert ingest([root], sink).ingested == 1
    assert not _cached(settings, old)  # nobody has them now
    assert all(_cached(settings, r[0]) for r in rows(settings.data_dir))


def test_a_folder_image_is_recorded_alike_by_ingest_and_register(tmp_path: Path) -> None:
    from zstack_analyzer.service.app import create_app
    from zstack_analyzer.zarr.writer import convert

    root = tmp_path / "root"
    root.mkdir()
    image = root / "plate.ome.zarr"
    convert(write_ome_tiff(tmp_path / "src.ome.tif"), image)
    ingested = make_settings(tmp_path / "ingested", import_roots=[root])
    with LocalSink(ingested, in_place=True) as sink:
        commit = _commit(sink, image)
    assert commit.image_id is not None
    by_ingest = _record(ingested, commit.image_id)
    registered = make_settings(tmp_path / "registered", import_roots=[root])
    with _testclient_class()(create_app(registered)) as client:
        answer = client.post("/api/images/register", json={"path": str(image)})
        assert answer.status_code == 201, answer.text
        by_register = answer.json()["image_stack"]
    for key in ("size_bytes", "sha256", "width", "height", "depth", "channels", "format"):
        assert by_ingest[key] == by_register[key], key
    assert by_ingest["size_bytes"] == 0  # a folder has no size of its own
    os.utime(image)  # and a later in-place ingest of it is a refresh of the same record
    with LocalSink(ingested, in_place=True) as sink:
        again = _commit(sink, image)
    assert (again.outcome, again.reason, again.image_id) == (
        "ingested",
        "refreshed",
        commit.image_id,
    )
