"""Upload every file of the real corpus; records agree with EXPECTED.json."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import expected_entries
from tests.service.conftest import _testclient_class
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

pytestmark = pytest.mark.realdata

ENTRIES = expected_entries()
OK = [e for e in ENTRIES if e["expect"] == "ok"]
UNSUPPORTED = [e for e in ENTRIES if e["expect"] == "unsupported"]


@pytest.fixture(scope="module")
def corpus_client(
    module_database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One app per database engine for the whole corpus (JSONB on PostgreSQL is stricter)."""
    from zstack_analyzer.service.app import create_app

    data = tmp_path_factory.mktemp("corpus") / "data"
    settings = make_settings(data, database_url=module_database_url)
    with _testclient_class()(create_app(settings)) as client:
        yield client


def _planes_alone(entry: dict[str, Any]) -> int | None:
    """Planes a multi-file set member gives on its own (EXPECTED.json notes say so)."""
    for note in entry.get("notes", []):
        found = re.search(r"alone this file gives (\d+) plane", note)
        if found:
            return int(found.group(1))
    return None


def _close(actual: float | None, expected: float | None) -> bool:
    if expected is None or actual is None:
        return actual is expected
    return math.isclose(actual, expected, rel_tol=1e-5)


@pytest.mark.parametrize("entry", OK, ids=[e["path"] for e in OK])
def test_upload_corpus_file(
    corpus_client: TestClient, testdata: Path, entry: dict[str, Any]
) -> None:
    path = testdata / entry["path"]
    with path.open("rb") as fh:
        response = corpus_client.post("/api/images/upload", files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    stack = response.json()["image_stack"]
    scene = entry["scenes"][0]
    sizes = scene["sizes"]
    got = {
        "width": stack["width"],
        "height": stack["height"],
        "depth": stack["depth"],
        "channels": stack["channels"],
        "timepoints": stack["timepoints"],
        "samples_per_pixel": stack["samples_per_pixel"],
        "dtype": stack["dtype"],
        "n_scenes": len(stack["scenes"]),
        "size_bytes": stack["size_bytes"],
        "sha256": stack["sha256"],
    }
    want = {
        "width": sizes["X"],
        "height": sizes["Y"],
        "depth": sizes["Z"],
        "channels": sizes["C"],
        "timepoints": sizes["T"],
        "samples_per_pixel": sizes.get("S", 1),
        "dtype": scene["dtype"],
        "n_scenes": entry["n_scenes"],
        "size_bytes": entry["size_bytes"],
        "sha256": entry["file_sha256"],
    }
    alone = _planes_alone(entry)
    if alone is not None:
        # A multi-file OME-TIFF set uploaded one file at a time: the planes it holds, warned.
        want["depth"] = alone
        assert stack["metadata"]["warnings"], "a partial multi-file set must say so"
    assert got == want
    voxel = scene["voxel_size_um"]
    assert _close(stack["pixel_size_x"], voxel["x"]), (stack["pixel_size_x"], voxel["x"])
    assert _close(stack["pixel_size_y"], voxel["y"]), (stack["pixel_size_y"], voxel["y"])
    assert _close(stack["pixel_size_z"], voxel["z"]), (stack["pixel_size_z"], voxel["z"])
    assert stack["format"] == entry["format"]

    # The default thumbnail renders (or fails as a typed problem, never a bare 500).
    thumb = corpus_client.get(f"/api/images/{stack['id']}/thumbnail")
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["content-type"] == "image/png"


#: Beside the corpus's unsupported files (none since the Bio-Formats fallback reads the last
#: one), a file no reader claims, so the 400 is always checked: a notebook export.
NOT_AN_IMAGE = {"path": "<written>/analysis.ipynb", "bytes": b'{"cells": [], "nbformat": 4}'}


@pytest.mark.parametrize(
    "entry", [*UNSUPPORTED, NOT_AN_IMAGE], ids=[e["path"] for e in [*UNSUPPORTED, NOT_AN_IMAGE]]
)
def test_unsupported_corpus_file_is_400(
    corpus_client: TestClient, testdata: Path, tmp_path: Path, entry: dict[str, Any]
) -> None:
    if "bytes" in entry:
        path = tmp_path / entry["path"].rsplit("/", 1)[-1]
        path.write_bytes(entry["bytes"])
    else:
        path = testdata / entry["path"]
    with path.open("rb") as fh:
        response = corpus_client.post("/api/images/upload", files={"file": (path.name, fh)})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "unsupported_format"
    assert path.name in body["detail"]


MULTI = [e for e in OK if (e.get("n_scenes") or 0) > 1]


@pytest.mark.parametrize("entry", MULTI, ids=[e["path"] for e in MULTI])
def test_other_scenes_of_corpus_file(
    corpus_client: TestClient, testdata: Path, entry: dict[str, Any]
) -> None:
    path = testdata / entry["path"]
    with path.open("rb") as fh:
        response = corpus_client.post("/api/images/upload", files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    image_id = response.json()["id"]
    last = entry["n_scenes"] - 1
    expected = entry["scenes"][last]["sizes"]
    metadata = corpus_client.get(f"/api/images/{image_id}/metadata", params={"scene": last})
    assert metadata.status_code == 200, metadata.text
    md = metadata.json()
    assert (md["size_x"], md["size_y"], md["size_z"], md["size_c"]) == (
        expected["X"],
        expected["Y"],
        expected["Z"],
        expected["C"],
    )
    assert md["filename"] == path.name
    thumb = corpus_client.get(
        f"/api/images/{image_id}/thumbnail", params={"scene": last, "width": 64, "height": 64}
    )
    assert thumb.status_code == 200, thumb.text
    beyond = corpus_client.get(f"/api/images/{image_id}/thumbnail", params={"scene": last + 1})
    assert beyond.status_code == 422
    assert beyond.json()["code"] == "out_of_range"
