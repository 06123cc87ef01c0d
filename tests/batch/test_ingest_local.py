"""``zstack ingest`` into the server's own database and storage (no --server)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from typer.testing import CliRunner

from tests.batch.conftest import child_env, make_archive, rows, zstack_command
from tests.service.conftest import _testclient_class, write_ome_tiff
from zstack_analyzer.cli import app
from zstack_analyzer.service.config import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

runner = CliRunner()


@contextlib.contextmanager
def served() -> Iterator[TestClient]:
    """The service on the settings the CLI used (same ZSTACK_* environment)."""
    from zstack_analyzer.service.app import create_app

    get_settings.cache_clear()
    client = _testclient_class()(create_app(get_settings()))
    with client:
        yield client


def ingest(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["ingest", *args, "--json", "--settle", "0"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout)


def test_ingest_copies_then_nothing_on_rerun(tmp_path: Path, zstack_env: Path) -> None:
    archive = tmp_path / "archive"
    files = make_archive(archive)
    shutil.copyfile(files[0], archive / "day1" / "same-bytes.ome.tif")
    (archive / "notes.txt").write_text("not an image")
    corrupt = archive / "day0" / "cut.ome.tif"
    corrupt.write_bytes(files[1].read_bytes()[:2000])
    os.mkfifo(archive / "day0" / "pipe")

    code, summary = ingest(str(archive))
    assert code == 1  # the corrupt file failed, and is listed with its reason
    assert summary["ingested"] == 6
    assert summary["already_present"] == 1  # same bytes as stack0
    assert summary["unsupported"] == 1
    assert [f["path"] for f in summary["failed"]] == [str(corrupt)]
    assert "truncated" in summary["failed"][0]["reason"]
    assert "cut.ome.tif" in summary["failed"][0]["reason"]  # never our temp name
    assert summary["skipped"] == [
        {"path": str(archive / "day0" / "pipe"), "reason": "a FIFO (named pipe), not a file"}
    ]
    assert len(rows(zstack_env)) == 6

    corrupt.unlink()
    code, again = ingest(str(archive))
    assert code == 0
    assert (again["ingested"], again["already_present"]) == (0, 7)
    assert again["runner"] == "in process"  # nothing left to do: no cluster started
    assert len(rows(zstack_env)) == 6

    with served() as client:
        listed = client.get("/api/images/", params={"limit": 100}).json()
        assert listed["count"] == 6
        by_name = {item["filename"]: item for item in listed["data"]}
        item = by_name["stack2.ome.tif"]
        assert item["thumbnail_ready"] is True  # rendered by the ingest, into the shared cache
        assert item["stored_in_place"] is False
        thumb = client.get(f"/api/images/{item['id']}/thumbnail")
        assert thumb.status_code == 200
        assert thumb.content[:8] == b"\x89PNG\r\n\x1a\n"
        download = client.get(f"/api/images/{item['id']}/download")
        assert download.content == files[2].read_bytes()


def test_progress_bar_and_usage_errors(tmp_path: Path, zstack_env: Path) -> None:
    archive = tmp_path / "archive"
    make_archive(archive, n=2)
    shown = runner.invoke(app, ["ingest", str(archive), "--settle", "0"])
    assert shown.exit_code == 0, shown.output
    assert "2/2 files" in shown.output
    assert "ingested 2, already present 0" in shown.output
    quiet = runner.invoke(app, ["ingest", str(archive), "--settle", "0", "--quiet"])
    assert quiet.exit_code == 0
    assert "files" not in quiet.output
    assert runner.invoke(app, ["ingest", str(archive), "--token", "x"]).exit_code == 2
    assert runner.invoke(app, ["ingest", str(archive), "--in-place"]).exit_code == 2  # no roots
    assert runner.invoke(app, ["ingest", str(tmp_path / "missing")]).exit_code == 2
    assert runner.invoke(app, ["ingest"]).exit_code == 2


def test_settle_skips_files_still_being_written(tmp_path: Path, zstack_env: Path) -> None:
    archive = tmp_path / "archive"
    make_archive(archive, n=1)
    result = runner.invoke(app, ["ingest", str(archive), "--json", "--settle", "60"])
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["ingested"] == 0
    assert "still being written" in summary["skipped"][0]["reason"]


def test_in_place_ingest_and_changed_originals(
    tmp_path: Path, zstack_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    files = make_archive(archive, n=3)
    outside = tmp_path / "elsewhere"
    make_archive(outside, n=1)
    monkeypatch.setenv("ZSTACK_IMPORT_ROOTS", str(archive))

    code, summary = ingest(str(archive), "--in-place")
    assert (code, summary["ingested"]) == (0, 3)
    assert not any((zstack_env / "images").iterdir())  # nothing copied
    assert sorted(r[1] for r in rows(zstack_env)) == sorted(str(f) for f in files)
    assert {r[2] for r in rows(zstack_env)} == {1}

    code, refused = ingest(str(outside), "--in-place")
    assert code == 1
    assert "outside the import roots" in refused["failed"][0]["reason"]

    with served() as client:
        items = {i["filename"]: i for i in client.get("/api/images/").json()["data"]}
        record = items["stack1.ome.tif"]
        assert record["stored_in_place"] is True
        assert record["source_path"] == str(files[1])
        url = f"/api/images/{record['id']}"
        assert client.get(f"{url}/thumbnail").status_code == 200
        # The original changes: reads answer 409 naming the file, never the old picture.
        write_ome_tiff(files[1], (1, 2, 16, 20), seed=99)
        for route in ("/thumbnail", "/download", "/mip", "/metadata?scene=0"):
            answer = client.get(f"{url}{route}")
            if route.startswith("/metadata"):
                continue  # scene 0 comes from the record, not the file
            assert answer.status_code == 409, route
            assert answer.headers["content-type"] == "application/problem+json"
            assert str(files[1]) in answer.json()["detail"]
        # It disappears: 410.
        moved = files[1].with_name("moved.tif")
        files[1].rename(moved)
        gone = client.get(f"{url}/thumbnail")
        assert gone.status_code == 410
        assert gone.json()["code"] == "original_missing"
        moved.rename(files[1])

    # Ingesting again refreshes the changed record (same id, new metadata).
    code, refreshed = ingest(str(archive), "--in-place")
    assert (code, refreshed["ingested"], refreshed["already_present"]) == (0, 1, 2)
    with served() as client:
        after = client.get(url).json()
        assert after["id"] == record["id"]
        assert after["depth"] == 2
        assert after["sha256"] != record["sha256"]
        assert client.get(f"{url}/thumbnail").status_code == 200
        # Deleting the record removes record and renders, never the original.
        assert client.delete(url).status_code == 204
        assert client.get(url).status_code == 404
    assert files[1].is_file()


def _killable_ingest(archive: Path, data: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*zstack_command(), "ingest", str(archive), "--quiet", "--settle", "0"],
        env=child_env(ZSTACK_DATA_DIR=str(data)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes its cluster too
    )


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_finishes_without_duplicates(
    tmp_path: Path, zstack_env: Path
) -> None:
    archive = tmp_path / "archive"
    files = make_archive(archive, n=40)
    process = _killable_ingest(archive, zstack_env)
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while len(rows(zstack_env)) == 0:
            assert process.poll() is None, "ingest ended before any record"
            assert time.monotonic() < deadline, "no record within 120 s"
            time.sleep(0.02)
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    done_at_kill = len(rows(zstack_env))
    assert 0 < done_at_kill < len(files), "the kill did not land mid-run"
    psutil.wait_procs(family, timeout=30)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    code, summary = ingest(str(archive))
    assert code == 0, summary
    assert summary["ingested"] + summary["already_present"] == len(files)
    assert summary["ingested"] == len(files) - done_at_kill
    recorded = rows(zstack_env)
    assert len(recorded) == len(files)
    assert len({sha for sha, _, _ in recorded}) == len(files)
    assert sorted(path for _, path, _ in recorded) == sorted(str(f) for f in files)
    with served():  # the start-up sweep removes a copy the kill left without a row
        pass
    assert len(list((zstack_env / "images").iterdir())) == len(files)


def test_info_prints_json_lines(tmp_path: Path) -> None:
    first = write_ome_tiff(tmp_path / "a.ome.tif")
    second = write_ome_tiff(tmp_path / "b.ome.tif", (1, 2, 8, 12))
    result = runner.invoke(app, ["info", str(first), str(second), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(first), str(second)]
    assert [line["size_z"] for line in lines] == [5, 2]
    assert lines[1]["scenes"][0]["size_x"] == 12
    assert lines[0]["file_format"] == "OME-TIFF"


def test_ingest_sweeps_its_own_old_partial_copies(tmp_path: Path, zstack_env: Path) -> None:
    """A killed ingest leaves ``tmp/ingest-*``; the next run removes those (old, its own only)."""
    archive = tmp_path / "archive"
    make_archive(archive)
    tmp = zstack_env / "tmp"
    tmp.mkdir(parents=True)
    old_partial = tmp / "ingest-0123456789abcdef0123456789abcdef.ome.tif"
    young_partial = tmp / "ingest-fedcba9876543210fedcba9876543210.ome.tif"
    old_upload = tmp / "0123456789abcdef0123456789abcdef.czi"  # an upload's temp: not ours
    for path in (old_partial, young_partial, old_upload):
        path.write_bytes(b"partial" * 1000)
    two_hours_ago = time.time() - 7200
    for path in (old_partial, old_upload):
        os.utime(path, (two_hours_ago, two_hours_ago))

    code, summary = ingest(str(archive))
    assert code == 0, summary
    assert not old_partial.exists()
    assert young_partial.exists()  # another ingest may be writing it right now
    assert old_upload.exists()  # the server's sweep decides about uploads
    # The run's own copies were committed under their final names: nothing of ours is left.
    assert sorted(p.name for p in tmp.iterdir()) == sorted([young_partial.name, old_upload.name])
    assert len(rows(zstack_env)) == summary["ingested"]
    stored = {name for (name,) in rows(zstack_env, "stored_name")}
    assert not any(name.startswith("ingest-") for name in stored)
