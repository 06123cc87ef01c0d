"""``zstack rois import`` / ``export``: on the local database and over HTTP (a real socket)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest
from typer.testing import CliRunner

from tests.service.conftest import write_ome_tiff
from tests.service.live import live_server, make_settings
from zstack_analyzer.cli import app
from zstack_analyzer.service.config import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

runner = CliRunner()
GEOJSON = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [9, 1], [9, 7], [1, 1]]]},
            "properties": {"name": "wedge", "plane": {"z": 1, "t": 0, "c": -1}},
        }
    ],
}


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_import_and_export_on_the_local_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_client: object
) -> None:
    data = tmp_path / "d"
    monkeypatch.setenv("ZSTACK_DATA_DIR", str(data))
    monkeypatch.delenv("ZSTACK_DATABASE_URL", raising=False)
    client = make_client(make_settings(data))  # type: ignore[operator]
    with write_ome_tiff(tmp_path / "a.ome.tif").open("rb") as fh:
        image_id = client.post("/api/images/upload", files={"file": ("a.ome.tif", fh)}).json()["id"]
    source = tmp_path / "rois.geojson"
    source.write_text(json.dumps(GEOJSON))
    result = runner.invoke(app, ["rois", "import", image_id, str(source)])
    assert result.exit_code == 0, result.output
    ids = json.loads(result.output)["ids"]
    stored = client.get(f"/api/images/{image_id}/rois/{ids[0]}").json()
    assert stored["name"] == "wedge" and stored["shapes"][0]["z"] == 1
    out = tmp_path / "out.geojson"
    result = runner.invoke(app, ["rois", "export", image_id, str(out)])
    assert result.exit_code == 0, result.output
    exported = json.loads(out.read_text())
    assert exported["features"][0]["properties"]["shape"]["points"] == [[1, 1], [9, 1], [9, 7]]
    # A bad file and an unknown image: a message and exit 2, no traceback.
    source.write_text('{"type": "Feature", "geometry": {"type": "Point", "coordinates": [999, 1]}}')
    result = runner.invoke(app, ["rois", "import", image_id, str(source)])
    assert result.exit_code == 2 and "outside" in result.output
    result = runner.invoke(app, ["rois", "export", "00000000-0000-4000-8000-000000000000"])
    assert result.exit_code == 2 and "no image" in result.output


def test_import_over_http(tmp_path: Path) -> None:
    source = tmp_path / "rois.geojson"
    source.write_text(json.dumps(GEOJSON))
    with live_server(tmp_path / "served") as base:
        with write_ome_tiff(tmp_path / "a.ome.tif").open("rb") as fh:
            uploaded = httpx.post(f"{base}/api/images/upload", files={"file": ("a.ome.tif", fh)})
        image_id = uploaded.json()["id"]
        result = runner.invoke(app, ["rois", "import", image_id, str(source), "--server", base])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["count"] == 1
        result = runner.invoke(app, ["rois", "export", image_id, "--server", base])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["features"][0]["properties"]["name"] == "wedge"
        result = runner.invoke(app, ["rois", "import", "nope", str(source), "--server", base])
        assert result.exit_code == 2
