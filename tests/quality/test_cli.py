"""``zstack quality PATH... --csv OUT``: a folder measured without a server."""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING

import numpy as np
from typer.testing import CliRunner

from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer.cli import app

if TYPE_CHECKING:
    from pathlib import Path


def test_quality_csv_of_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    folder.mkdir()
    saturated = np.full((1, 2, 3, 20, 10), 100, np.uint16)
    saturated[0, 1, 1, :5] = 65535  # channel 1, plane z=1: a quarter saturated
    write_ome_tiff(folder / "a.ome.tif", [saturated])
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.ome.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    out = tmp_path / "q.csv"
    result = CliRunner().invoke(app, ["quality", str(folder), "--csv", str(out)])
    assert result.exit_code == 2, result.output  # the broken file is reported, not fatal
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    good = [r for r in rows if r["path"].endswith("a.ome.tif")]
    assert [r["channel"] for r in good] == ["0", "1"]
    assert float(good[0]["saturated_fraction"]) == 0.0
    assert float(good[1]["saturated_fraction"]) == 0.25
    assert not any(r["path"].endswith("notes.txt") for r in rows)
    (bad,) = [r for r in rows if r["path"].endswith("broken.ome.tif")]
    assert bad["error"]


def test_quality_json_lines_by_default(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "b.ome.tif", [np.ones((1, 1, 2, 8, 8), np.uint8)])
    result = CliRunner().invoke(app, ["quality", str(path)])
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()
    row = json.loads(line)
    assert row["channel"] == 0
    assert row["saturated_fraction"] == 0.0
