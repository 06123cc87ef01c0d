"""``zstack ingest --project/--dataset/--dataset-from-folder``, ``zstack annotate`` and ``zstack export`` (issue 24).

On real files (small OME-TIFFs in nested folders), locally (the database of
ZSTACK_*) and through a live server's API; the export's RO-Crate is read back
with ro-crate-py and its OME-Zarr images with our own reader.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.batch.conftest import make_archive
from tests.service.live import live_server
from zstack_analyzer.cli import app

if TYPE_CHECKING:
    from pathlib import Path

runner = CliRunner()


def _run(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def _local_api() -> Any:
    """The service on the database of ZSTACK_* (what the CLI wrote), as a test client."""
    import warnings

    from zstack_analyzer.service.app import create_app
    from zstack_analyzer.service.config import get_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(get_settings()))


def test_ingest_files_into_datasets_locally(tmp_path: Path, zstack_env: Path) -> None:
    archive = tmp_path / "screen"
    make_archive(archive, n=4)  # day0/well0, day1/well1, day0/well2, day1/well0
    done = _run(
        "ingest",
        str(archive / "day0"),
        "--project",
        "Screen",
        "--dataset",
        "Day 0",
        "--settle",
        "0",
        "--quiet",
    )
    assert done.exit_code == 0, done.output
    by_folder = _run(
        "ingest",
        str(archive),
        "--project",
        "Screen",
        "--dataset-from-folder",
        "--settle",
        "0",
        "--quiet",
    )
    assert by_folder.exit_code == 0, by_folder.output
    refused = _run("ingest", str(archive), "--dataset", "x", "--dataset-from-folder")
    assert refused.exit_code == 2
    assert _run("ingest", str(archive), "--project", "P").exit_code == 2
    with _local_api() as client:
        projects = client.get("/api/projects").json()["data"]
        assert [p["name"] for p in projects] == ["Screen"]
        datasets = client.get("/api/datasets", params={"project_id": projects[0]["id"]}).json()
        counts = {d["name"]: d["child_count"] for d in datasets["data"]}
        # Files already present from the first run are not filed again (see batch/filing.py).
        assert counts == {"Day 0": 2, "day1/well0": 1, "day1/well1": 1}


def test_ingest_files_into_datasets_over_http(tmp_path: Path) -> None:
    archive = tmp_path / "screen"
    make_archive(archive, n=4)
    with live_server(tmp_path / "data", api_token="s3cret") as base:  # noqa: S106
        done = _run(
            "ingest",
            str(archive),
            "--server",
            base,
            "--token",
            "s3cret",
            "--project",
            "Screen",
            "--dataset-from-folder",
            "--settle",
            "0",
            "--quiet",
        )
        assert done.exit_code == 0, done.output
        # A re-run finds every file present by its hash, and files them all the same.
        again = _run(
            "ingest",
            str(archive),
            "--server",
            base,
            "--token",
            "s3cret",
            "--dataset",
            "All",
            "--settle",
            "0",
            "--quiet",
        )
        assert again.exit_code == 0, again.output
        headers = {"Authorization": "Bearer s3cret"}
        datasets = httpx.get(f"{base}/api/datasets", headers=headers).json()["data"]
        counts = {d["name"]: (d["child_count"], len(d["project_ids"])) for d in datasets}
        assert counts == {
            "day0/well0": (1, 1),
            "day0/well2": (1, 1),
            "day1/well0": (1, 1),
            "day1/well1": (1, 1),
            "All": (4, 0),
        }


def test_annotate_and_export(tmp_path: Path, zstack_env: Path) -> None:
    from rocrate.rocrate import ROCrate

    from zstack_analyzer import open_image

    archive = tmp_path / "plate"
    files = make_archive(archive, n=3)
    assert (
        _run("ingest", str(archive), "--dataset", "Plate", "--settle", "0", "--quiet").exit_code
        == 0
    )
    table = tmp_path / "table.csv"
    table.write_text(
        "filename,tag,strain,antibody\n"
        f"{files[0].name},mitosis,N2,anti-tubulin\n"
        f"{files[1].name},interphase,CB4856,\n",
        encoding="utf-8",
    )
    dry = _run("annotate", str(table), "--dataset", "Plate", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"row 2: {files[0].name}" in dry.output and "tags +mitosis" in dry.output
    assert "would change 2 image(s)" in dry.output
    done = _run("annotate", str(table), "--dataset", "Plate", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["applied"] is True
    again = _run("annotate", str(table), "--dataset", "Plate")
    assert "changed 0 image(s)" in again.output
    faulty = tmp_path / "faulty.csv"
    faulty.write_text(f"filename,tag\n{files[2].name},ok\nmissing.tif,x\n", encoding="utf-8")
    refused = _run("annotate", str(faulty), "--dataset", "Plate")
    assert refused.exit_code == 1
    assert "faulty.csv: row 3: no image with filename 'missing.tif'" in refused.output
    # One image gets an ROI (through `zstack rois import`): the export carries it as GeoJSON.
    import sqlite3

    with sqlite3.connect(zstack_env / "zstack.db") as conn:
        (roi_image,) = conn.execute(
            "SELECT id FROM images WHERE filename = ?", (files[1].name,)
        ).fetchone()
    shapes = tmp_path / "cell.geojson"
    square = [[1, 1], [5, 1], [5, 4], [1, 4], [1, 1]]
    shapes.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": [square]},
                        "properties": {"name": "cell"},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    imported = _run("rois", "import", str(roi_image), str(shapes))
    assert imported.exit_code == 0, imported.output
    # Export: OME-Zarr per image, annotations, ROIs, RO-Crate.
    out = tmp_path / "export"
    exported = _run("export", "Plate", str(out))
    assert exported.exit_code == 0, exported.output
    assert "3 image(s)" in exported.output
    crate = ROCrate(out)
    assert crate.name == "Plate"
    images = [e for e in crate.data_entities if e.id.endswith(".ome.zarr/")]
    assert len(images) == 3
    tagged = next(e for e in images if e["name"] == files[0].name)
    assert tagged["keywords"] == ["mitosis"]
    notes_id = tagged["subjectOf"].id
    notes = json.loads((out / notes_id).read_text())
    assert notes["tags"] == ["mitosis"]
    assert {"key": "strain", "value": "N2", "namespace": None} in notes["key_values"]
    assert crate.get(notes_id)["about"].id == tagged.id
    roi_files = [e for e in crate.data_entities if e.id.startswith("rois/")]
    assert len(roi_files) == 1
    measured = next(e for e in images if e["name"] == files[1].name)
    assert roi_files[0]["about"].id == measured.id
    exported_rois = json.loads((out / roi_files[0].id).read_text())
    assert [f["properties"]["name"] for f in exported_rois["features"]] == ["cell"]
    with open_image(out / tagged.id.rstrip("/")) as reader:
        assert reader.metadata().size_z == 3
    assert _run("export", "Plate", str(out)).exit_code == 2  # not empty: refused
    assert _run("export", "No such", str(tmp_path / "x")).exit_code == 2


@pytest.mark.slow
def test_watch_files_into_datasets_from_folders(tmp_path: Path) -> None:
    """``zstack watch --dataset-from-folder``: each complete new file lands in its folder's dataset."""
    import sqlite3
    import subprocess
    import time

    from tests.batch.conftest import child_env, stop, zstack_command

    folder = tmp_path / "incoming"
    make_archive(folder, n=2)  # day0/well0, day1/well1
    data = tmp_path / "data"
    log = tmp_path / "watch.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                *zstack_command(),
                "watch",
                str(folder),
                "--settle",
                "0",
                "--interval",
                "0.2",
                "--dataset-from-folder",
                "--project",
                "Live",
            ],
            env=child_env(ZSTACK_DATA_DIR=str(data)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    query = (
        "SELECT d.name, count(l.image_id) FROM datasets d JOIN dataset_images l"
        " ON l.dataset_id = d.id GROUP BY d.name ORDER BY d.name"
    )
    found: list[tuple[str, int]] = []
    try:
        deadline = time.monotonic() + 120
        while found != [("day0/well0", 1), ("day1/well1", 1)]:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, (found, log.read_text())
            time.sleep(0.2)
            try:
                with sqlite3.connect(data / "zstack.db") as conn:
                    found = conn.execute(query).fetchall()
            except sqlite3.OperationalError:  # not created or migrated yet
                found = []
    finally:
        stop(process)
