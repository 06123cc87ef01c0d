"""ROI routes over HTTP, on SQLite and PostgreSQL: every route, exact stats, import/export, hostile input.

Stats are compared with numpy on the uploaded file's own pixels (read here
with tifffile, not through the service's readers); the non-square-pixel case
is a synthetic OIB with 0.2 x 0.5 µm pixels.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.needs import unavailable
from tests.service.conftest import upload, write_ome_tiff
from zstack_analyzer.roi.shapes import MAX_POINTS, MAX_SHAPES

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient


def need_roifile() -> Any:
    """roifile (the ``roi`` extra): skipped locally without it, a failure under CI."""
    try:
        import roifile
    except ImportError:
        unavailable("roifile is not installed (pip install 'zstack-analyzer[roi]')")
    return roifile


#: (C, Z, Y, X) of the test stack.
SHAPE = (2, 5, 24, 32)


@pytest.fixture
def stack(tmp_path: Path) -> tuple[Path, np.ndarray]:
    import tifffile

    path = write_ome_tiff(tmp_path / "cells.ome.tif", SHAPE)
    return path, tifffile.imread(path)


def _image(client: TestClient, path: Path) -> str:
    answer = upload(client, path)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _mask_rect(x: float, y: float, w: float, h: float) -> np.ndarray:
    cy = np.arange(SHAPE[2])[:, None] + 0.5
    cx = np.arange(SHAPE[3])[None, :] + 0.5
    return np.asarray((cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h))


def test_every_roi_route(client: TestClient, stack: tuple[Path, np.ndarray]) -> None:
    path, data = stack
    image_id = _image(client, path)
    base = f"/api/images/{image_id}/rois"
    assert client.get(base).json() == {"data": [], "count": 0}

    body = {
        "name": "nucleus",
        "shapes": [
            {
                "type": "rectangle",
                "x": 3,
                "y": 4.5,
                "width": 10,
                "height": 6,
                "z": 2,
                "colour": "#00ff00",
            },
            {"type": "ellipse", "x": 20, "y": 12, "radius_x": 6.5, "radius_y": 4, "z": 2},
        ],
    }
    created = client.post(base, json=body)
    assert created.status_code == 201, created.text
    roi = created.json()
    roi_id = roi["id"]
    assert roi["name"] == "nucleus" and roi["image_id"] == image_id and roi["created"]
    assert roi["shapes"][0] == {
        "type": "rectangle",
        "x": 3.0,
        "y": 4.5,
        "width": 10.0,
        "height": 6.0,
        "z": 2,
        "t": 0,
        "c": None,
        "name": None,
        "colour": "#00ff00",
    }
    assert client.get(f"{base}/{roi_id}").json() == roi
    listed = client.get(base).json()
    assert listed["count"] == 1 and listed["data"][0]["id"] == roi_id

    # Stats: numpy on the file's own pixels, with masks computed here.
    cy = np.arange(SHAPE[2])[:, None] + 0.5
    cx = np.arange(SHAPE[3])[None, :] + 0.5
    mask = _mask_rect(3, 4.5, 10, 6) | (((cx - 20) / 6.5) ** 2 + ((cy - 12) / 4) ** 2 <= 1)
    answer = client.get(f"{base}/{roi_id}/stats")
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    assert stats["calibrated"] is True and stats["pixel_size_um"] == {"x": 0.5, "y": 0.5}
    for entry in stats["channels"]:
        values = data[entry["channel"], 2][mask]
        assert entry["pixel_count"] == values.size
        assert entry["min"] == int(values.min()) and entry["max"] == int(values.max())
        assert entry["sum"] == int(values.sum(dtype=np.int64))
        assert entry["mean"] == float(values.astype(np.float64).mean())
        assert entry["std"] == float(values.astype(np.float64).std())
        assert entry["area_um2"] == pytest.approx(values.size * 0.25)
        assert entry["area_unit"] == "um2"
    assert [len(s["channels"]) for s in stats["shapes"]] == [2, 2]

    # z=all: the footprint on every plane.
    every = client.get(f"{base}/{roi_id}/stats", params={"z": "all"}).json()
    assert [p["z"] for p in every["planes"]] == list(range(SHAPE[1]))
    for plane in every["planes"]:
        for entry in plane["channels"]:
            values = data[entry["channel"], plane["z"]][mask]
            assert entry["sum"] == int(values.sum(dtype=np.int64))
    table = client.get(f"{base}/{roi_id}/stats", params={"z": "all", "format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert len(rows) == SHAPE[0] * SHAPE[1]
    assert {int(r["z"]) for r in rows} == set(range(SHAPE[1]))

    # A line: length in µm, its sampled pixels.
    line = client.post(
        base, json={"shapes": [{"type": "line", "x1": 1, "y1": 1, "x2": 25, "y2": 8}]}
    )
    line_id = line.json()["id"]
    entry = client.get(f"{base}/{line_id}/stats").json()["channels"][0]
    assert entry["length_um"] == pytest.approx(0.5 * math.hypot(24, 7))
    assert entry["length_unit"] == "um" and "area_um2" not in entry

    # Every ROI's stats as CSV (one line per ROI and channel).
    table = client.get(f"/api/images/{image_id}/rois.csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [(int(r["roi_id"]), int(r["channel"])) for r in rows] == [
        (roi_id, 0),
        (roi_id, 1),
        (line_id, 0),
        (line_id, 1),
    ]

    # GeoJSON out, and back in as new ROIs with the same shapes.
    exported = client.get(f"/api/images/{image_id}/rois.geojson")
    assert exported.headers["content-type"].startswith("application/geo+json")
    document = exported.json()
    assert document["type"] == "FeatureCollection" and len(document["features"]) == 3
    imported = client.post(
        f"{base}/import", files={"file": ("rois.geojson", json.dumps(document).encode())}
    )
    assert imported.status_code == 201, imported.text
    new_ids = imported.json()["ids"]
    assert len(new_ids) == 2
    again = client.get(f"{base}/{new_ids[0]}").json()
    assert again["shapes"] == roi["shapes"] and again["name"] == "nucleus"

    # ImageJ: a RoiManager zip written by roifile.
    roifile = need_roifile()
    oval = roifile.ImagejRoi()
    oval.roitype = roifile.ROI_TYPE.OVAL
    oval.left, oval.top, oval.right, oval.bottom = 4, 2, 14, 10
    oval.z_position = 3
    poly = roifile.ImagejRoi.frompoints([[1, 1], [20, 3], [9, 15]], name="tri", c=1)
    poly.roitype = roifile.ROI_TYPE.POLYGON
    archive = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("oval.roi", oval.tobytes())
        zf.writestr("tri.roi", poly.tobytes())
    imported = client.post(f"{base}/import", files={"file": ("set.zip", archive.getvalue())})
    assert imported.status_code == 201, imported.text
    oval_id, tri_id = imported.json()["ids"]
    assert client.get(f"{base}/{oval_id}").json()["shapes"][0] | {"colour": None} == {
        "type": "ellipse",
        "x": 9.0,
        "y": 6.0,
        "radius_x": 5.0,
        "radius_y": 4.0,
        "z": 2,
        "t": 0,
        "c": None,
        "name": None,
        "colour": None,
    }
    tri = client.get(f"{base}/{tri_id}/stats").json()
    assert [e["channel"] for e in tri["channels"]] == [0, 1]
    assert tri["channels"][0]["pixel_count"] == 0  # the polygon belongs to channel 1 only
    assert tri["channels"][1]["pixel_count"] > 0

    # An edit: new name and shapes, same id and author; a bad edit changes nothing.
    edit = {"name": "moved", "shapes": [{"type": "point", "x": 5, "y": 6, "z": 4}]}
    edited = client.put(f"{base}/{roi_id}", json=edit)
    assert edited.status_code == 200, edited.text
    assert edited.json()["id"] == roi_id and edited.json()["name"] == "moved"
    assert [s["type"] for s in client.get(f"{base}/{roi_id}").json()["shapes"]] == ["point"]
    bad = client.put(
        f"{base}/{roi_id}", json={"shapes": [{"type": "point", "x": 5, "y": 6, "z": 9}]}
    )
    assert bad.status_code == 422
    assert client.get(f"{base}/{roi_id}").json()["name"] == "moved"
    assert client.put(f"{base}/999999", json=edit).status_code == 404

    # Delete one, then the rest.
    assert client.delete(f"{base}/{roi_id}").status_code == 204
    gone = client.get(f"{base}/{roi_id}")
    assert gone.status_code == 404 and gone.json()["code"] == "roi_not_found"
    assert client.get(f"{base}/{roi_id}/stats").status_code == 404
    assert client.delete(f"{base}/{roi_id}").status_code == 404
    left = client.get(base).json()["count"]
    assert client.delete(base).json() == {"deleted": left, "kept": 0}
    assert client.get(base).json()["count"] == 0


def test_rois_go_with_their_image(client: TestClient, stack: tuple[Path, np.ndarray]) -> None:
    image_id = _image(client, stack[0])
    roi = client.post(
        f"/api/images/{image_id}/rois", json={"shapes": [{"type": "point", "x": 1, "y": 1}]}
    ).json()
    other = _image(client, write_ome_tiff(stack[0].parent / "other.ome.tif", SHAPE, seed=5))
    # An ROI is reached only through its own image.
    assert client.get(f"/api/images/{other}/rois/{roi['id']}").status_code == 404
    assert client.delete(f"/api/images/{image_id}").status_code == 204
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        from zstack_analyzer.service.annotations.roi_models import Roi, RoiShape

        assert session.get(Roi, roi["id"]) is None
        assert session.query(RoiShape).count() == 0


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])  # not about the database
def test_non_square_pixels_give_areas_in_square_micrometres(
    tmp_path: Path, client: TestClient
) -> None:
    """A synthetic OIB with 0.2 x 0.5 µm pixels: area = pixels x 0.1 µm²; lengths scale per axis."""
    from tests.synthetic_oif import write_oib

    data = (np.arange(2 * 3 * 40 * 48, dtype=np.uint16).reshape(1, 2, 3, 40, 48) * 13) % 4095
    path = write_oib(tmp_path / "aniso.oib", data, pixel_um=(0.2, 0.5))
    image_id = _image(client, path)
    base = f"/api/images/{image_id}/rois"
    shapes = [
        {"type": "polygon", "points": [[2.5, 3], [40, 5.5], [30.25, 37], [4, 30]], "z": 1},
        {"type": "line", "x1": 0, "y1": 0, "x2": 30, "y2": 40, "z": 1},
    ]
    ids = [client.post(base, json={"shapes": [s]}).json()["id"] for s in shapes]
    polygon = client.get(f"{base}/{ids[0]}/stats").json()
    assert polygon["calibrated"] is True
    assert polygon["pixel_size_um"] == pytest.approx({"x": 0.2, "y": 0.5})
    for entry in polygon["channels"]:
        assert entry["area_um2"] == pytest.approx(entry["pixel_count"] * 0.1)
        assert entry["area_px2"] == entry["pixel_count"]
        assert entry["area"] == entry["area_um2"] and entry["area_unit"] == "um2"
        assert entry["pixel_count"] > 500
    line = client.get(f"{base}/{ids[1]}/stats").json()["channels"][0]
    assert line["length_px"] == pytest.approx(50.0)
    assert line["length_um"] == pytest.approx(math.hypot(30 * 0.2, 40 * 0.5))


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])  # not about the database
def test_uncalibrated_file_says_px2(tmp_path: Path, client: TestClient) -> None:
    path = write_ome_tiff(tmp_path / "raw.ome.tif", SHAPE, pixel_um=None)
    image_id = _image(client, path)
    base = f"/api/images/{image_id}/rois"
    roi_id = client.post(
        base, json={"shapes": [{"type": "rectangle", "x": 0, "y": 0, "width": 4, "height": 3}]}
    ).json()["id"]
    stats = client.get(f"{base}/{roi_id}/stats").json()
    assert stats["calibrated"] is False and stats["pixel_size_um"] is None
    entry = stats["channels"][0]
    assert entry["area_um2"] is None
    assert (entry["area"], entry["area_unit"], entry["pixel_count"]) == (12.0, "px2", 12)


HOSTILE: list[tuple[str, Any, str]] = [
    ("nan", b'{"shapes": [{"type": "point", "x": NaN, "y": 1}]}', "validation_error"),
    ("infinity", b'{"shapes": [{"type": "point", "x": Infinity, "y": 1}]}', "validation_error"),
    ("huge number", b'{"shapes": [{"type": "point", "x": 1e400, "y": 1}]}', "validation_error"),
    (
        "huge polygon",
        {"shapes": [{"type": "polygon", "points": [[1, 1]] * (MAX_POINTS + 1)}]},
        "validation_error",
    ),
    (
        "too many shapes",
        {"shapes": [{"type": "point", "x": 1, "y": 1}] * (MAX_SHAPES + 1)},
        "validation_error",
    ),
    ("no shapes", {"shapes": []}, "validation_error"),
    ("unknown kind", {"shapes": [{"type": "circle", "x": 1, "y": 1}]}, "validation_error"),
    ("z out of range", {"shapes": [{"type": "point", "x": 1, "y": 1, "z": 5}]}, "invalid_roi"),
    ("t out of range", {"shapes": [{"type": "point", "x": 1, "y": 1, "t": 1}]}, "invalid_roi"),
    ("c out of range", {"shapes": [{"type": "point", "x": 1, "y": 1, "c": 2}]}, "invalid_roi"),
    (
        "scene out of range",
        {"scene": 3, "shapes": [{"type": "point", "x": 1, "y": 1}]},
        "invalid_roi",
    ),
    ("outside the image", {"shapes": [{"type": "point", "x": 32, "y": 1}]}, "invalid_roi"),
    (
        "rectangle left of the image",
        {"shapes": [{"type": "rectangle", "x": -100, "y": 0, "width": 50, "height": 5}]},
        "invalid_roi",
    ),
    (
        "two-point polygon",
        {"shapes": [{"type": "polygon", "points": [[1, 1], [2, 2]]}]},
        "invalid_roi",
    ),
    (
        "zero width",
        {"shapes": [{"type": "rectangle", "x": 1, "y": 1, "width": 0, "height": 2}]},
        "validation_error",
    ),
    (
        "bad colour",
        {"shapes": [{"type": "point", "x": 1, "y": 1, "colour": "red"}]},
        "validation_error",
    ),
]


HOSTILE_IMPORTS: list[tuple[str, bytes]] = [
    ("garbage", b"not json, not a roi"),
    (
        "nan",
        b'{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
        b'{"type": "Point", "coordinates": [1, NaN]}}]}',
    ),
    ("outside", b'{"type": "Feature", "geometry": {"type": "Point", "coordinates": [500, 500]}}'),
    ("empty collection", b'{"type": "FeatureCollection", "features": []}'),
    ("short roi", b"Iout" + b"\x00" * 12),
    ("empty zip", b"PK\x05\x06" + b"\x00" * 18),
    ("deep json", b"[" * 100_000),
]


def test_hostile_input_gets_422(client: TestClient, stack: tuple[Path, np.ndarray]) -> None:
    """Every case on one image (one app per database keeps the test cheap); nothing is stored."""
    image_id = _image(client, stack[0])
    url = f"/api/images/{image_id}/rois"
    for case, body, code in HOSTILE:
        if isinstance(body, bytes):
            answer = client.post(url, content=body, headers={"content-type": "application/json"})
        else:
            answer = client.post(url, json=body)
        assert answer.status_code == 422, (case, answer.text)
        assert answer.json()["code"] == code, case
    for case, content in HOSTILE_IMPORTS:
        answer = client.post(f"{url}/import", files={"file": ("x", content)})
        assert answer.status_code == 422, (case, answer.text)
        assert answer.json()["code"] == "invalid_roi", case
    assert client.get(url).json()["count"] == 0


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])  # not about the database
def test_a_polygon_of_the_most_points_over_the_whole_plane_is_measured(
    client: TestClient, stack: tuple[Path, np.ndarray]
) -> None:
    """MAX_POINTS vertices around the plane: accepted, measured, and the count is the plane's."""
    path, data = stack
    image_id = _image(client, path)
    angles = np.linspace(0, 2 * np.pi, MAX_POINTS, endpoint=False)
    points = np.stack([16 + 40 * np.cos(angles), 12 + 40 * np.sin(angles)], axis=1).tolist()
    roi = client.post(
        f"/api/images/{image_id}/rois", json={"shapes": [{"type": "polygon", "points": points}]}
    )
    assert roi.status_code == 201, roi.text[:300]
    stats = client.get(f"/api/images/{image_id}/rois/{roi.json()['id']}/stats").json()
    entry = stats["channels"][1]
    assert entry["pixel_count"] == SHAPE[2] * SHAPE[3]
    assert entry["sum"] == int(data[1, 0].sum(dtype=np.int64))
