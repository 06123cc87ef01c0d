"""``zstack ingest --server``: uploads (hash looked up first) and in-place registration."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import httpx
from typer.testing import CliRunner

from tests.batch.conftest import make_archive
from tests.service.live import live_server
from zstack_analyzer.cli import app

if TYPE_CHECKING:
    from pathlib import Path

runner = CliRunner()


def _ingest(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["ingest", *args, "--json", "--settle", "0"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout)


def test_ingest_through_the_api(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    files = make_archive(archive, n=4)
    shutil.copyfile(files[0], archive / "copy-of-0.ome.tif")
    (archive / "readme.md").write_text("# not an image")
    with live_server(tmp_path / "data", import_roots=[archive], api_token="s3cret") as base:  # noqa: S106
        code, summary = _ingest(str(archive), "--server", base, "--token", "s3cret")
        assert code == 0, summary
        assert (summary["ingested"], summary["already_present"], summary["unsupported"]) == (
            4,
            1,
            1,
        )
        code, again = _ingest(str(archive), "--server", base, "--token", "s3cret")
        assert (code, again["ingested"], again["already_present"]) == (0, 0, 5)
        headers = {"Authorization": "Bearer s3cret"}
        listed = httpx.get(f"{base}/api/images/", headers=headers).json()
        assert listed["count"] == 4
        assert not any(item["stored_in_place"] for item in listed["data"])

        # In place: the server registers the paths; twice adds nothing.
        code, placed = _ingest(str(archive), "--server", base, "--token", "s3cret", "--in-place")
        assert (code, placed["ingested"], placed["unsupported"]) == (0, 5, 1)
        code, placed = _ingest(str(archive), "--server", base, "--token", "s3cret", "--in-place")
        assert (code, placed["ingested"], placed["already_present"]) == (0, 0, 5)
        listed = httpx.get(f"{base}/api/images/", headers=headers).json()
        assert sum(item["stored_in_place"] for item in listed["data"]) == 5

        # Wrong token: every file fails with the server's reason; exit status 1.
        code, refused = _ingest(str(archive), "--server", base, "--token", "wrong")
        assert code == 1
        assert "HTTP 401" in refused["failed"][0]["reason"]
    # No server at all: failures that say so, not a crash.
    code, down = _ingest(str(files[0]), "--server", base)
    assert code == 1
    assert "no answer from the server" in down["failed"][0]["reason"]
