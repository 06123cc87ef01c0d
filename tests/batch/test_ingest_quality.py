"""Batch ingest measures quality with the thumbnail; ``zstack quality --missing`` fills gaps."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from typer.testing import CliRunner

from tests.batch.conftest import make_archive
from tests.batch.test_ingest_local import ingest, served
from zstack_analyzer.cli import app

if TYPE_CHECKING:
    from pathlib import Path


def _quality_rows(data: Path) -> list[tuple[str, int, str | None]]:
    with sqlite3.connect(data / "zstack.db") as conn:
        return conn.execute("SELECT image_id, scene, error FROM image_quality").fetchall()


def test_ingest_stores_quality_and_missing_resumes(tmp_path: Path, zstack_env: Path) -> None:
    archive = tmp_path / "archive"
    make_archive(archive, n=3)
    code, summary = ingest(str(archive))
    assert code == 0, summary
    stored = _quality_rows(zstack_env)
    assert len(stored) == 3
    assert all(error is None for _, _, error in stored)

    # Records without quality (older images): --missing measures them, once.
    with sqlite3.connect(zstack_env / "zstack.db") as conn:
        conn.execute(
            "DELETE FROM image_quality WHERE rowid IN (SELECT rowid FROM image_quality LIMIT 2)"
        )
    assert len(_quality_rows(zstack_env)) == 1
    result = CliRunner().invoke(app, ["quality", "--missing"])
    assert result.exit_code == 0, result.output
    assert "measured 2, failed 0" in result.output
    assert len(_quality_rows(zstack_env)) == 3
    again = CliRunner().invoke(app, ["quality", "--missing"])
    assert "measured 0, failed 0" in again.output

    everything = CliRunner().invoke(app, ["search", "--saturated-min", "0"])
    assert everything.exit_code == 0, everything.output
    assert len(everything.output.strip().splitlines()) == 3
    saturated = CliRunner().invoke(app, ["search", "--saturated-min", "0.5"])
    assert saturated.exit_code == 0, saturated.output
    assert saturated.output.strip() == ""
    bad = CliRunner().invoke(app, ["search", "--saturated-min", "2"])
    assert bad.exit_code == 2

    with served() as client:
        listed = client.get("/api/images/").json()["data"]
        for item in listed:
            body = client.get(f"/api/images/{item['id']}/quality").json()
            assert body["status"] == "ready"
            assert len(body["channels"][0]["focus"]) == 3
