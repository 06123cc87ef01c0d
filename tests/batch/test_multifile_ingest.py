"""``zstack ingest`` of multi-file images: one record per image, every plane, changes noticed.

The sets are written by the synthetic writers (Micro-Manager with continuation
files, a BinaryOnly multi-file OME-TIFF with its companion, an OIF with its
``.oif.files`` folder) and an ICS/IDS pair written here by hand: ICS pixels
come from the Bio-Formats reader (not on this branch), so only its grouping is
asserted (the ``.ids`` is a member of the ``.ics``, never a record of its own).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile
from typer.testing import CliRunner

from tests.batch.conftest import rows
from tests.service.conftest import write_ome_tiff
from tests.synthetic_mm import mm_pixels, write_mm_dataset, write_ndtiff_dataset
from tests.synthetic_oif import write_oif
from tests.synthetic_tiff import write_ome_multifile
from zstack_analyzer import open_image
from zstack_analyzer.cli import app

if TYPE_CHECKING:
    import pytest

runner = CliRunner()

MM = {"positions": 2, "frames": 2, "channels": 1, "slices": 3, "shape": (8, 12), "split": 3}
#: T, C, Z, Y, X of the OME-TIFF set and of the OIF.
OME_STACK = np.arange(4 * 10 * 14, dtype=np.uint16).reshape(1, 1, 4, 10, 14) * 3 + 5
OIF_STACK = np.arange(2 * 3 * 9 * 11, dtype=np.uint16).reshape(1, 2, 3, 9, 11) * 7 + 1


def write_ics_pair(folder: Path, name: str = "beads") -> tuple[Path, Path]:
    """An ICS 1.0 header and its ``.ids`` pixels (4 x 3, uint16), written from the spec."""
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        "\t\n"
        "ics_version\t1.0\n"
        f"filename\t{name}\n"
        "layout\tparameters\t3\n"
        "layout\torder\tbits\tx\ty\n"
        "layout\tsizes\t16\t4\t3\n"
        "representation\tformat\tinteger\n"
        "representation\tsign\tunsigned\n"
        "representation\tbyte_order\t1\t2\n"
        "end\n"
    )
    ics = folder / f"{name}.ics"
    ids = folder / f"{name}.ids"
    ics.write_text(header)
    ids.write_bytes(np.arange(12, dtype="<u2").tobytes())
    return ics, ids


def make_sets(root: Path) -> dict[str, Path]:
    """Every kind of set, plus one single-file image; the main file of each."""
    (root / "mm").mkdir(parents=True)
    write_mm_dataset(root / "mm", **MM)  # type: ignore[arg-type]
    (root / "ome").mkdir()
    write_ome_multifile(root / "ome", OME_STACK)
    (root / "oif").mkdir()
    write_oif(root / "oif", OIF_STACK)
    (root / "ndtiff").mkdir()
    write_ndtiff_dataset(root / "ndtiff", frames=1, channels=2, slices=2, shape=(6, 10), split=2)
    ics, _ = write_ics_pair(root / "ics")
    single = write_ome_tiff(root / "single.ome.tif", (1, 2, 8, 8))
    return {
        "mm": root / "mm" / "run_MMStack_Pos0.ome.tif",
        "ome": root / "ome" / "set-Z1.ome.tiff",
        "oif": root / "oif" / "cells.oif",
        "ndtiff": root / "ndtiff" / "acq_NDTiffStack.tif",
        "ics": ics,
        "single": single,
    }


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def ingest(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["ingest", *args, "--json", "--settle", "0"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout)


def assert_every_plane(path: Path) -> None:
    """The image at ``path`` (a main file, original or stored copy) reads all its planes right."""
    with open_image(path) as image:
        name = path.name
        if "MMStack" in name:
            assert len(image.scenes()) == MM["positions"]
            for p in range(MM["positions"]):  # type: ignore[arg-type]
                info = image.scenes()[p]
                assert (info.size_t, info.size_c, info.size_z) == (2, 1, 3)
                for t in range(2):
                    for z in range(3):
                        expected = mm_pixels(0, z, t, p, (8, 12), "uint16")
                        np.testing.assert_array_equal(image.read_plane(p, t, 0, z), expected)
        elif "NDTiffStack" in name:
            info = image.scenes()[0]
            assert (info.size_t, info.size_c, info.size_z) == (1, 2, 2)
            for c in range(2):
                for z in range(2):
                    expected = mm_pixels(c, z, 0, 0, (6, 10), "uint16")
                    np.testing.assert_array_equal(image.read_plane(0, 0, c, z), expected)
        elif name.endswith(".ome.tiff"):
            assert image.scenes()[0].size_z == 4
            for z in range(4):
                np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), OME_STACK[0, 0, z])
        elif name.endswith(".ics"):  # read by Bio-Formats from the .ids beside it
            expected = np.arange(12, dtype=np.uint16).reshape(3, 4)
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), expected)
        else:
            info = image.scenes()[0]
            assert (info.size_c, info.size_z) == (2, 3)
            for c in range(2):
                for z in range(3):
                    np.testing.assert_array_equal(image.read_plane(0, 0, c, z), OIF_STACK[0, c, z])


def flip_pixel(member: Path) -> None:
    """Change one pixel of the member's first plane (headers and index left as they are)."""
    with tifffile.TiffFile(member) as tif:
        offset = tif.pages[0].dataoffsets[0]
    with member.open("r+b") as fh:
        fh.seek(offset)
        value = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([value[0] ^ 0xFF]))


def test_copy_ingest_one_record_per_set_every_plane_and_changes(
    tmp_path: Path, zstack_env: Path
) -> None:
    archive = tmp_path / "archive"
    mains = make_sets(archive)
    files = all_files(archive)

    _, summary = ingest(str(archive))
    assert summary["failed"] == [], summary
    # MM, OME-TIFF set, OIF, NDTiff, the ICS/IDS pair (through Bio-Formats), the single file
    assert summary["ingested"] == 6
    assert summary["unsupported_files"] == []  # the .ids is a member, never listed
    assert summary["members"] == len(files) - 6
    stored = {Path(f).name: s for f, s in rows(zstack_env, "source_path, stored_name")}
    assert set(stored) == {mains[k].name for k in ("mm", "ome", "oif", "ndtiff", "ics", "single")}
    for key in ("mm", "ome", "oif", "ndtiff", "ics"):
        key_folder, main_name = stored[mains[key].name].split("/")
        assert main_name == mains[key].name  # the set's folder keeps the names
        copy = zstack_env / "images" / key_folder
        originals = [p for p in files if p.is_relative_to(mains[key].parent)]
        assert sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file()) == sorted(
            p.relative_to(mains[key].parent) for p in originals
        )
        assert_every_plane(copy / main_name)

    # Downloading a set's original gives a zip of the set, names kept.
    from tests.batch.test_ingest_local import served

    with served() as client:
        listed = client.get("/api/images/", params={"limit": 100}).json()["data"]
        mm_id = next(item["id"] for item in listed if item["filename"] == mains["mm"].name)
        got = client.get(f"/api/images/{mm_id}/download")
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/zip"
        zip_path = tmp_path / "mm.zip"
        zip_path.write_bytes(got.content)
        with zipfile.ZipFile(zip_path) as zf:
            assert sorted(zf.namelist()) == sorted(p.name for p in (archive / "mm").iterdir())
            assert zf.read(mains["mm"].name) == mains["mm"].read_bytes()

    _, again = ingest(str(archive))
    assert (again["ingested"], again["already_present"]) == (0, 6), again

    # One member of the Micro-Manager set changes: that image (only) is read again.
    flip_pixel(archive / "mm" / "run_MMStack_Pos1_1.ome.tif")
    _code, changed = ingest(str(archive))
    assert (changed["ingested"], changed["already_present"]) == (1, 5), changed
    assert len(rows(zstack_env)) == 7  # a copy is kept per version, as for single files


def test_in_place_ingest_refreshes_a_set_when_one_member_changes(
    tmp_path: Path, zstack_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    mains = make_sets(archive)
    monkeypatch.setenv("ZSTACK_IMPORT_ROOTS", str(archive))

    _, summary = ingest(str(archive), "--in-place")
    assert summary["failed"] == [], summary
    assert summary["ingested"] == 6
    assert summary["members"] == len(all_files(archive)) - 6
    before = {Path(p).name: (i, h) for i, p, h in rows(zstack_env, "id, source_path, sha256")}
    for key in ("mm", "ome", "oif", "ndtiff"):
        assert_every_plane(mains[key])

    from tests.batch.test_ingest_local import served

    member = archive / "oif" / "cells.oif.files" / "s_C002Z003T001.tif"
    with served() as client:
        listed = client.get("/api/images/", params={"limit": 100}).json()["data"]
        oif_id = next(item["id"] for item in listed if item["filename"] == "cells.oif")
        assert client.get(f"/api/images/{oif_id}/thumbnail").status_code == 200
        flip_pixel(member)
        # The main file is untouched, yet the record knows its set changed.
        assert client.get(f"/api/images/{oif_id}/thumbnail?z_slice=0").status_code == 409

    _code, refreshed = ingest(str(archive), "--in-place")
    assert (refreshed["ingested"], refreshed["already_present"]) == (1, 5), refreshed
    after = {Path(p).name: (i, h) for i, p, h in rows(zstack_env, "id, source_path, sha256")}
    assert after["cells.oif"][0] == before["cells.oif"][0]  # same record, refreshed
    assert after["cells.oif"][1] != before["cells.oif"][1]
    assert {k: v for k, v in after.items() if k != "cells.oif"} == {
        k: v for k, v in before.items() if k != "cells.oif"
    }


def test_a_set_is_as_new_as_its_newest_member(tmp_path: Path) -> None:
    """What a watch folder settles on: the main entry carries every member's state."""
    from zstack_analyzer.batch.grouping import Member, group_entry, walk_roots
    from zstack_analyzer.batch.walk import FileEntry, walk

    folder = tmp_path / "w"
    folder.mkdir()
    written = write_mm_dataset(folder, **MM)  # type: ignore[arg-type]
    roots = walk_roots([folder])
    future = written[-1].stat().st_mtime_ns + 60_000_000_000
    os.utime(written[-1], ns=(future, future))
    grouped = [group_entry(item, roots) for item in walk([folder]) if isinstance(item, FileEntry)]
    entries = [g for g in grouped if isinstance(g, FileEntry)]
    assert [Path(e.path).name for e in entries] == ["run_MMStack_Pos0.ome.tif"]
    assert entries[0].mtime_ns == future
    assert entries[0].size == sum(p.stat().st_size for p in written)
    assert len(entries[0].members) == len(written) - 1
    assert all(isinstance(g, Member) for g in grouped if g is not entries[0])


def test_watch_offers_a_set_once_through_its_main_file(tmp_path: Path) -> None:
    import threading
    import time

    from zstack_analyzer.batch.ingest import Commit
    from zstack_analyzer.batch.runner import SerialRunner
    from zstack_analyzer.batch.watch import watch_folder

    folder = tmp_path / "w"
    folder.mkdir()
    written = write_mm_dataset(folder, **MM)  # type: ignore[arg-type]
    seen: list[tuple[str, str]] = []

    class Recorder:
        uses_cluster = False

        def is_present(self, entry: object) -> bool:
            return False

        def task(self) -> object:
            return lambda entry: entry

        def job(self, entry: object) -> object:
            return entry

        def commit(self, entry: Any, result: object) -> Commit:
            seen.append((Path(entry.path).name, ",".join(getattr(entry, "members", ()))))
            return Commit("ingested")

        def local_runner(self) -> None:
            return None

    done = threading.Event()
    thread = threading.Thread(
        target=watch_folder,
        args=(folder, Recorder(), SerialRunner()),
        kwargs={"settle_s": 0.0, "interval_s": 0.05, "stop": done},
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # a few more polls: nothing else is offered
    done.set()
    thread.join(30)
    assert not thread.is_alive()
    assert len(seen) == 1
    assert seen[0][0] == "run_MMStack_Pos0.ome.tif"
    assert sorted(seen[0][1].split(",")) == sorted(p.name for p in written[1:])


def test_http_ingest_registers_each_set_once_and_refuses_uploading_one(tmp_path: Path) -> None:
    """``zstack ingest --server``: in place, one record per set; a copy of a set is refused."""
    from tests.service.live import live_server

    archive = tmp_path / "archive"
    mains = make_sets(archive)
    with live_server(tmp_path / "data", import_roots=[archive]) as base:
        _, placed = ingest(str(archive), "--server", base, "--in-place")
        assert placed["failed"] == [], placed
        assert placed["ingested"] == 6
        assert placed["members"] == len(all_files(archive)) - 6
        _, again = ingest(str(archive), "--server", base, "--in-place")
        assert (again["ingested"], again["already_present"]) == (0, 6), again

        flip_pixel(archive / "ome" / "set-Z3.ome.tiff")
        _, refreshed = ingest(str(archive), "--server", base, "--in-place")
        assert (refreshed["ingested"], refreshed["already_present"]) == (1, 5), refreshed
        assert refreshed["failed"] == []

        _code, copied = ingest(str(archive), "--server", base)
        failed = {Path(f["path"]).name: f["reason"] for f in copied["failed"]}
        assert set(failed) == {mains[k].name for k in ("mm", "ome", "oif", "ndtiff", "ics")}
        assert all("cannot be uploaded over HTTP" in reason for reason in failed.values())


def test_in_place_set_with_a_member_outside_the_roots_is_refused(
    tmp_path: Path, zstack_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every member is confined, not only the main file: a companion linked out refuses the set."""
    archive = tmp_path / "archive"
    archive.mkdir()
    write_oif(archive, OIF_STACK)
    outside = tmp_path / "outside.tif"
    member = archive / "cells.oif.files" / "s_C002Z003T001.tif"
    outside.write_bytes(member.read_bytes())
    member.unlink()
    member.symlink_to(outside)
    monkeypatch.setenv("ZSTACK_IMPORT_ROOTS", str(archive))

    _, summary = ingest(str(archive), "--in-place")
    assert summary["ingested"] == 0
    assert [Path(f["path"]).name for f in summary["failed"]] == ["cells.oif"]
    assert "outside the import roots" in summary["failed"][0]["reason"]
    assert rows(zstack_env) == []

    from tests.batch.test_ingest_local import served

    with served() as client:
        answer = client.post("/api/images/register", json={"path": str(archive / "cells.oif")})
        assert answer.status_code == 403, answer.text
        assert "outside the import roots" in answer.json()["detail"]


def test_metamorph_nd_and_ics_grouping_by_name(tmp_path: Path) -> None:
    """The name rules: an ``.nd`` owns the TIFF/STK files named from its base; ICS owns its IDS."""
    from zstack_analyzer.filesets import file_set

    nd = tmp_path / "exp1.nd"
    nd.write_text('"NDInfoFile", Version 1.0\n"DoWave", TRUE\n"EndFile"\n')
    members = ["exp1_w1DAPI_s1_t1.TIF", "exp1_w2GFP_s1_t1.TIF", "exp1.stk"]
    for name in [*members, "exp10_w1DAPI.TIF", "other.tif", "exp1_notes.txt"]:
        (tmp_path / name).write_bytes(b"II*\x00")
    found = file_set(tmp_path / "exp1_w2GFP_s1_t1.TIF")
    assert found.main == nd
    assert sorted(found.names) == sorted([nd.name, *members])
    assert not file_set(tmp_path / "other.tif").is_multi
    ics, ids = write_ics_pair(tmp_path / "ics")
    assert file_set(ids).main == ics
    assert file_set(ics).names == (ics.name, ids.name)


def test_local_storage_keeps_set_folders_of_records_and_sweeps_orphans(tmp_path: Path) -> None:
    """A set's folder is one stored original: committed whole, removed whole, swept as one."""
    from zstack_analyzer.service.local_ingest import sweep_ingest_temps
    from zstack_analyzer.storage.local import LocalStorage

    storage = LocalStorage(tmp_path / "images", tmp_path / "tmp")
    storage.ensure_dirs()
    for key in ("kept", "orphan"):
        temp = storage.temp_path(f"ingest-{key}")
        (temp / "sub").mkdir(parents=True)
        (temp / "main.tif").write_bytes(b"1")
        (temp / "sub" / "plane.tif").write_bytes(b"2")
        storage.commit_folder(temp, key)
    assert storage.path("kept/main.tif").read_bytes() == b"1"
    report = storage.sweep({"kept/main.tif"})
    assert report.orphan_files == ["orphan"]
    assert (tmp_path / "images" / "kept" / "sub" / "plane.tif").is_file()
    assert storage.remove("kept/main.tif")
    assert not (tmp_path / "images" / "kept").exists()
    assert not storage.remove("kept/main.tif")

    partial = storage.temp_path("ingest-dead")
    partial.mkdir()
    (partial / "half.tif").write_bytes(b"3")
    old = 1_000_000_000
    os.utime(partial, (old, old))
    assert sweep_ingest_temps(tmp_path / "tmp") == ["ingest-dead"]
    assert not partial.exists()
