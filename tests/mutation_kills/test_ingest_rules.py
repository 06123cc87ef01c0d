"""Archive ingest rules that a second person's bugs walked through.

What "already present" means (same path, size and mtime), what counts as changed
(size or mtime, at listing time and while a file is read), in-place ingest never
leaving a copy in ``tmp/``, OME-Zarr folders ingested whole, the hash naming a folder
tree, and import roots matched by path components (``/data/lab2`` is not in
``/data/lab``). Each runs the library's ``ingest`` into a real data folder and checks
the result through the service's HTTP API.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.batch.conftest import make_archive
from tests.service.conftest import _testclient_class, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.batch import ingest
from zstack_analyzer.batch.tasks import hash_tree
from zstack_analyzer.service.local_ingest import LocalSink

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

    from zstack_analyzer.batch.ingest import IngestProgress, IngestSummary
    from zstack_analyzer.service.config import Settings


def _settings(tmp_path: Path, roots: list[Path] | None = None) -> Settings:
    return make_settings(tmp_path / "data", import_roots=roots or [])


def _run(
    settings: Settings, paths: list[Path], *, in_place: bool, **kwargs: object
) -> IngestSummary:
    with LocalSink(settings, in_place=in_place) as sink:
        return ingest(paths, sink, **kwargs)  # type: ignore[arg-type]


def _images(settings: Settings) -> Iterator[TestClient]:
    from zstack_analyzer.service.app import create_app

    return _testclient_class()(create_app(settings))


def _listed(settings: Settings) -> dict[str, dict[str, object]]:
    with _images(settings) as client:
        data = client.get("/api/images/", params={"limit": 100}).json()["data"]
    return {str(item["filename"]): item for item in data}


def _stored_files(settings: Settings) -> tuple[list[str], list[str]]:
    data = settings.data_dir
    return (
        sorted(p.name for p in (data / "images").rglob("*") if p.is_file()),
        sorted(p.name for p in (data / "tmp").rglob("*") if p.is_file()),
    )


def test_rerun_is_present_only_for_the_same_size_and_mtime(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    files = make_archive(archive, n=3)
    settings = _settings(tmp_path)
    first = _run(settings, [archive], in_place=False)
    assert (first.ingested, first.present, first.failed) == (3, 0, [])
    assert _stored_files(settings)[1] == []  # nothing left in tmp/
    assert len(_stored_files(settings)[0]) == 3

    again = _run(settings, [archive], in_place=False)
    assert (again.ingested, again.present) == (0, 3)

    # Same bytes, new mtime: read again, found by its hash, still one record.
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns - 5_000_000_000))
    touched = _run(settings, [archive], in_place=False)
    assert (touched.ingested, touched.present) == (0, 3)
    assert _stored_files(settings)[1] == []  # the duplicate's temporary copy is gone
    assert len(_listed(settings)) == 3

    # New bytes of another size, mtime put back: the size alone says it changed.
    stat = files[1].stat()
    write_ome_tiff(files[1], (1, 4, 16, 20), seed=7)
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert files[1].stat().st_size != stat.st_size
    resized = _run(settings, [archive], in_place=False)
    assert (resized.ingested, resized.present) == (1, 2)
    with _images(settings) as client:
        names = [i["filename"] for i in client.get("/api/images/").json()["data"]]
    assert sorted(names) == sorted(
        ["stack0.ome.tif", "stack1.ome.tif", "stack1.ome.tif", "stack2.ome.tif"]
    )  # a copy keeps the old version
    assert _stored_files(settings)[1] == []


def test_in_place_records_follow_size_and_mtime_and_copy_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    files = make_archive(archive, n=3)
    settings = _settings(tmp_path, [archive])
    first = _run(settings, [archive], in_place=True)
    assert (first.ingested, first.present, first.failed) == (3, 0, [])
    assert _stored_files(settings) == ([], [])  # in place: no original, no temporary copy
    ids = {name: item["id"] for name, item in _listed(settings).items()}

    # mtime only: refreshed (same id), then present again.
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns - 5_000_000_000))
    touched = _run(settings, [archive], in_place=True)
    assert (touched.ingested, touched.present) == (1, 2)
    assert _run(settings, [archive], in_place=True).present == 3

    # Size only (mtime put back): refreshed with the new bytes' hash and size.
    before = _listed(settings)["stack1.ome.tif"]
    stat = files[1].stat()
    write_ome_tiff(files[1], (1, 5, 16, 20), seed=9)
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    resized = _run(settings, [archive], in_place=True)
    assert (resized.ingested, resized.present) == (1, 2)
    after = _listed(settings)["stack1.ome.tif"]
    assert after["id"] == before["id"] == ids["stack1.ome.tif"]
    assert after["sha256"] != before["sha256"]
    assert after["size_bytes"] == files[1].stat().st_size
    assert after["depth"] == 5
    assert _stored_files(settings) == ([], [])
    assert len(_listed(settings)) == 3


def test_a_file_changed_after_listing_is_skipped_not_recorded(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("a.ome.tif", "b.ome.tif", "c.ome.tif"):
        write_ome_tiff(archive / name, (1, 2, 16, 20), seed=len(name) + ord(name[0]))
    order = sorted(
        os.listdir(archive), key=lambda n: [e.name for e in os.scandir(archive)].index(n)
    )
    grow, touch = archive / order[1], archive / order[2]
    settings = _settings(tmp_path)

    def change_the_others(progress: IngestProgress) -> None:
        if progress.files_done == 1:  # after the first, before the others are read
            with grow.open("ab") as fh:
                fh.write(b"\0" * 10)
            stat = touch.stat()
            os.utime(touch, ns=(stat.st_atime_ns, stat.st_mtime_ns - 3_000_000_000))

    summary = _run(settings, [archive], in_place=False, progress=change_the_others)
    assert summary.ingested == 1
    reasons = {Path(s["path"]).name: s["reason"] for s in summary.as_json()["skipped"]}
    assert set(reasons) == {grow.name, touch.name}
    assert all("still being written" in r for r in reasons.values())
    assert _stored_files(settings)[1] == []
    assert len(_stored_files(settings)[0]) == 1
    # Settled now: the next run takes them.
    assert _run(settings, [archive], in_place=False).ingested == 2


def _write_zarr(path: Path, tmp_path: Path, seed: int) -> Path:
    from zstack_analyzer.zarr.writer import convert

    source = write_ome_tiff(tmp_path / f"src{seed}.ome.tif", (1, 2, 16, 20), seed=seed)
    convert(source, path)
    source.unlink()
    return path


def test_ome_zarr_folders_are_ingested_whole_in_place(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    zarr = _write_zarr(archive / "plate.ome.zarr", tmp_path, 3)
    write_ome_tiff(archive / "plain.ome.tif", (1, 2, 16, 20), seed=4)
    settings = _settings(tmp_path, [archive])
    summary = _run(settings, [archive], in_place=True)
    assert (summary.ingested, summary.failed, summary.unsupported) == (2, [], 0)
    assert summary.as_json()["skipped"] == []
    listed = _listed(settings)
    assert set(listed) == {"plate.ome.zarr", "plain.ome.tif"}
    assert listed["plate.ome.zarr"]["sha256"] == hash_tree(zarr)
    assert listed["plate.ome.zarr"]["depth"] == 2
    assert _stored_files(settings) == ([], [])
    assert _run(settings, [archive], in_place=True).present == 2

    # A file inside the folder changes: the folder's mtime does not, but a re-listing
    # that touched the folder refreshes it with the tree's new hash.
    chunk = next(p for p in zarr.rglob("*") if p.is_file() and p.name.isdigit())
    chunk.write_bytes(chunk.read_bytes())  # same bytes
    stat = zarr.stat()
    os.utime(zarr, ns=(stat.st_atime_ns, stat.st_mtime_ns - 2_000_000_000))
    refreshed = _run(settings, [archive], in_place=True)
    assert (refreshed.ingested, refreshed.present) == (1, 1)
    assert _listed(settings)["plate.ome.zarr"]["sha256"] == hash_tree(zarr)


def test_hash_tree_names_the_tree_by_names_and_bytes(tmp_path: Path) -> None:
    one = _write_zarr(tmp_path / "one.ome.zarr", tmp_path, 5)
    same = tmp_path / "elsewhere" / "copy.ome.zarr"
    shutil.copytree(one, same)
    assert hash_tree(one) == hash_tree(same)  # the folder's own name and place do not count
    assert len(hash_tree(one)) == 64
    assert int(hash_tree(one), 16) >= 0

    chunk = next(p for p in same.rglob("*") if p.is_file() and p.name.isdigit())
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    assert hash_tree(one) != hash_tree(same)  # one changed byte
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    assert hash_tree(one) == hash_tree(same)

    renamed = chunk.with_name(chunk.name + "9")
    chunk.rename(renamed)
    assert hash_tree(one) != hash_tree(same)  # same bytes under another name
    renamed.rename(chunk)

    # Two files swapping their bytes give another tree.
    a, b = tmp_path / "ab" / "a", tmp_path / "ab" / "b"
    a.parent.mkdir()
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    swapped = tmp_path / "ba"
    swapped.mkdir()
    (swapped / "a").write_bytes(b"second")
    (swapped / "b").write_bytes(b"first")
    assert hash_tree(a.parent) != hash_tree(swapped)
    # An empty folder adds nothing; a file's place in the tree counts.
    (swapped / "empty").mkdir()
    assert hash_tree(swapped) == hash_tree(tmp_path / "ba")
    nested = tmp_path / "nested"
    (nested / "x").mkdir(parents=True)
    (nested / "x" / "a").write_bytes(b"second")
    (nested / "b").write_bytes(b"first")
    assert hash_tree(nested) != hash_tree(swapped)
    # Not the hash of the concatenated bytes.
    import hashlib

    assert hash_tree(a.parent) != hashlib.sha256(b"firstsecond").hexdigest()


@pytest.mark.parametrize("sibling", ["archive2", "archive-old", "archive.bak"])
def test_a_sibling_whose_name_starts_with_the_root_is_outside(tmp_path: Path, sibling: str) -> None:
    archive = tmp_path / "archive"
    make_archive(archive, n=1)
    other = tmp_path / sibling
    make_archive(other, n=1)
    settings = _settings(tmp_path, [archive])
    summary = _run(settings, [other], in_place=True)
    assert summary.ingested == 0
    assert len(summary.failed) == 1
    assert "outside the import roots" in summary.failed[0][1]
    with _images(settings) as client:
        target = next(p for p in other.rglob("*.ome.tif"))
        answer = client.post("/api/images/register", json={"path": str(target)})
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "outside_import_roots"
        inside = next(p for p in archive.rglob("*.ome.tif"))
        assert client.post("/api/images/register", json={"path": str(inside)}).status_code == 201
    assert len(_listed(settings)) == 1


def test_any_of_several_roots_and_the_root_itself(tmp_path: Path) -> None:
    first, second = tmp_path / "r1", tmp_path / "r2"
    make_archive(first, n=1)
    make_archive(second, n=1)
    settings = _settings(tmp_path, [first, second])
    summary = _run(settings, [first, second], in_place=True)
    assert (summary.ingested, summary.failed) == (2, [])
    # A root given with a trailing "/." or through a symlink is the same root.
    link = tmp_path / "link-to-r1"
    os.symlink(first, link)
    linked = _settings(tmp_path / "other", [link])
    assert _run(linked, [first], in_place=True).ingested == 1
