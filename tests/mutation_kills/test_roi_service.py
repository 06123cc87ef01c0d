"""The ROI service (service/annotations/rois.py) on a migrated SQLite database, called directly.

Found by mutation testing: the route tests build the service per mutant and check
ROIs through their JSON; the scene sizes an ROI is checked against, the cap of ROIs
per image, who may delete, the all-or-none import, the GeoJSON export by id and the
stats CSV's cells were not pinned one by one. The stats job is measured on a real
ImageJ hyperstack of /work/shared/testdata against numpy on tifffile's pixels.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from sqlalchemy import func, select

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import (
    add_group,
    add_image,
    add_user,
    principal_of,
)
from zstack_analyzer.errors import InvalidRoiError, LimitExceededError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.roi.shapes import PlaneSizes, Shape
from zstack_analyzer.service.annotations import rois as service
from zstack_analyzer.service.annotations.roi_models import Roi, RoiShape
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import SINGLE_USER
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import ImageNotFoundError, RoiNotFoundError

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SPOTS_FILE = Path("/work/shared/testdata/imagej/xyzc_16bit__spots.tif")

RECT = Shape("rectangle", {"x": 2.0, "y": 3.0, "width": 5.0, "height": 4.0}, z=1, t=0)
LINE = Shape("line", {"x1": 0.5, "y1": 0.5, "x2": 8.5, "y2": 0.5}, z=0, t=2, c=1, name="l")
POLY = Shape(
    "polygon",
    {"points": [(1.0, 1.0), (9.0, 1.0), (5.0, 7.0)]},
    z=2,
    t=0,
    name="tri",
    colour="#ff000080",
)


def _image(session: Session, **columns: object) -> Image:
    image = session.get(Image, add_image(session, "cells.tif", **columns))
    assert image is not None
    return image


# ---------------------------------------------------------------------------- sizes


def test_sizes_of_a_scene_and_the_fallback_of_scene_zero(session: Session) -> None:
    plain = _image(session, width=32, height=24, depth=5, channels=2, timepoints=3)
    assert service.sizes_of(plain, 0) == PlaneSizes(32, 24, 5, 3, 2)
    with pytest.raises(InvalidRoiError) as caught:
        service.sizes_of(plain, 1)
    assert str(caught.value) == "scene 1 is out of range (0..0)"
    scenes = [
        {"size_x": 10, "size_y": 11, "size_z": 4, "size_t": 2, "size_c": 3},
        {"size_x": 7, "size_y": 6},
    ]
    two = _image(session, scenes=scenes)
    assert service.sizes_of(two, 0) == PlaneSizes(10, 11, 4, 2, 3)
    assert service.sizes_of(two, 1) == PlaneSizes(7, 6, 1, 1, 1)
    for scene in (2, -1):
        with pytest.raises(InvalidRoiError) as caught:
            service.sizes_of(two, scene)
        assert str(caught.value) == f"scene {scene} is out of range (0..1)"


# ---------------------------------------------------------------------------- create, read


def test_create_and_read_back(session: Session) -> None:
    group = add_group(session, "lab", Permission.READ_ANNOTATE)
    alice = add_user(session, "alice", {group: False})
    image = _image(session, owner_id=alice, group_id=group)
    other = _image(session)
    as_alice = principal_of(session, alice)
    before = datetime.now(UTC).replace(microsecond=0)
    roi = service.create_roi(
        session, image, as_alice, name="cell 1", scene=0, shapes=[RECT, POLY, LINE]
    )
    assert (roi.owner_id, roi.group_id, roi.image_id, roi.scene) == (alice, group, image.id, 0)
    # The stored geometry is JSON: points as lists, in the order given.
    rows = session.scalars(select(RoiShape).where(RoiShape.roi_id == roi.id)).all()
    assert [(r.position, r.type, r.z, r.t, r.c, r.name, r.colour) for r in rows] == [
        (0, "rectangle", 1, 0, None, None, None),
        (1, "polygon", 2, 0, None, "tri", "#ff000080"),
        (2, "line", 0, 2, 1, "l", None),
    ]
    assert rows[1].geometry == {"points": [[1.0, 1.0], [9.0, 1.0], [5.0, 7.0]]}
    assert rows[0].geometry == {"x": 2.0, "y": 3.0, "width": 5.0, "height": 4.0}
    second = service.create_roi(session, image, SINGLE_USER, name=None, scene=0, shapes=[LINE])
    assert second.owner_id is None
    mine = service.create_roi(session, other, SINGLE_USER, name="x", scene=0, shapes=[RECT])
    session.rollback()  # committed, not only flushed

    assert [r.id for r in service.list_rois(session, image)] == [roi.id, second.id]
    got = service.get_roi(session, image, roi.id)
    assert service.roi_shapes(got) == [
        RECT,
        Shape(
            "polygon",
            {"points": [[1.0, 1.0], [9.0, 1.0], [5.0, 7.0]]},
            2,
            0,
            None,
            "tri",
            "#ff000080",
        ),
        LINE,
    ]
    public = service.roi_public(got, "alice")
    created = datetime.fromisoformat(public.pop("created"))
    assert created.tzinfo is not None and created >= before
    assert public == {
        "id": roi.id,
        "image_id": str(image.id),
        "scene": 0,
        "name": "cell 1",
        "owner_id": alice,
        "owner": "alice",
        "group_id": group,
        "shapes": [s.to_dict() for s in service.roi_shapes(got)],
    }
    assert service.roi_public(got)["owner"] is None
    assert service.owner_names(session, [got, service.get_roi(session, image, second.id)]) == {
        alice: "alice"
    }
    assert service.owner_names(session, [service.get_roi(session, image, second.id)]) == {}
    assert service.owner_names(session, []) == {}
    for wrong in (mine.id, 12345):
        with pytest.raises(RoiNotFoundError) as caught:
            service.get_roi(session, image, wrong)
        assert str(caught.value) == f"no ROI {wrong} on image {image.id}"


def test_an_aware_time_stays_as_it_is() -> None:
    zoned = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    roi = Roi(id=1, image_id=uuid.UUID(int=1), scene=2, name="n", created_at=zoned, shapes=[])
    assert service.roi_public(roi)["created"] == "2026-01-02T03:04:05+00:00"
    plus_two = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    roi.created_at = plus_two
    assert service.roi_public(roi)["created"] == "2026-01-02T03:04:05+02:00"
    naive = Roi(id=1, image_id=uuid.UUID(int=1), scene=2, name="n", created_at=datetime(2026, 1, 2))
    assert service.roi_public(naive)["created"] == "2026-01-02T00:00:00+00:00"


def test_at_most_so_many_rois_per_image(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "MAX_ROIS_PER_IMAGE", 2)
    image = _image(session)
    other = _image(session)
    service.create_roi(session, other, SINGLE_USER, name=None, scene=0, shapes=[RECT])
    service.create_roi(session, image, SINGLE_USER, name=None, scene=0, shapes=[RECT])
    service.create_roi(session, image, SINGLE_USER, name=None, scene=0, shapes=[RECT])
    with pytest.raises(InvalidRoiError) as caught:
        service.create_roi(session, image, SINGLE_USER, name=None, scene=0, shapes=[RECT])
    assert str(caught.value) == "the image already has 2 ROIs; at most 2 are kept"
    monkeypatch.setattr(service, "MAX_ROIS_PER_IMAGE", 1)
    fresh = _image(session)
    service.create_roi(session, fresh, SINGLE_USER, name=None, scene=0, shapes=[RECT])
    with pytest.raises(InvalidRoiError) as caught:
        service.create_roi(session, fresh, SINGLE_USER, name=None, scene=0, shapes=[RECT])
    assert str(caught.value) == "the image already has 1 ROIs; at most 1 are kept"
    monkeypatch.setattr(service, "MAX_ROIS_PER_IMAGE", 2)
    # Without commit the ROI is only pending: a rollback drops it.
    service.create_roi(session, other, SINGLE_USER, name=None, scene=0, shapes=[RECT], commit=False)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Roi)) == 4


# ---------------------------------------------------------------------------- files


def _geojson(*names: str) -> bytes:
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [3, 4]},
            "properties": {"name": name},
        }
        for name in names
    ]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def test_parse_and_import_files(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    from zstack_analyzer.roi.imagej import imagej_zip, to_imagej

    sizes = PlaneSizes(32, 24, 5, 3, 2)
    assert service.parse_roi_file(_geojson("a", "b"), sizes) == [
        ("a", [Shape("point", {"x": 3.0, "y": 4.0}, name="a")]),
        ("b", [Shape("point", {"x": 3.0, "y": 4.0}, name="b")]),
    ]
    single = to_imagej(RECT, "box").tobytes()
    assert single[:4] == b"Iout"
    [(name, shapes)] = service.parse_roi_file(single, sizes)
    assert name == "box" and [s.type for s in shapes] == ["rectangle"]
    zipped = imagej_zip([("one", RECT), ("two", LINE)])
    assert [n for n, _ in service.parse_roi_file(zipped, sizes)] == ["one", "two"]
    for junk in (b"hello", b"[" * 100_000, b"Iou", b"P"):
        with pytest.raises(InvalidRoiError) as caught:
            service.parse_roi_file(junk, sizes)
        assert str(caught.value) == "neither an ImageJ ROI (.roi, .zip) nor GeoJSON"
    with pytest.raises(InvalidRoiError) as caught:
        service.parse_roi_file(b'{"type": "FeatureCollection", "features": []}', sizes)
    assert str(caught.value) == "the file holds no ROIs"
    monkeypatch.setattr(service, "MAX_ROIS_PER_IMAGE", 2)
    assert len(service.parse_roi_file(_geojson("a", "b"), sizes)) == 2
    with pytest.raises(InvalidRoiError) as caught:
        service.parse_roi_file(_geojson("a", "b", "c"), sizes)
    assert str(caught.value) == "3 ROIs in the file; at most 2 are kept"

    monkeypatch.setattr(service, "MAX_ROIS_PER_IMAGE", 3)
    scenes = [{"size_x": 32, "size_y": 24}, {"size_x": 4, "size_y": 4}]
    image = _image(session, scenes=scenes)
    ids = service.import_rois(session, image, SINGLE_USER, _geojson("a", "b"))
    session.rollback()  # committed
    stored = service.list_rois(session, image)
    assert [r.id for r in stored] == ids and len(ids) == 2
    assert [(r.name, r.scene) for r in stored] == [("a", 0), ("b", 0)]
    # Scene 1 is 4 x 4: the point at (3, 4) is outside; nothing of the file is stored.
    with pytest.raises(InvalidRoiError):
        service.import_rois(session, image, SINGLE_USER, _geojson("c"), scene=1)
    inside = json.dumps([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}])
    [new] = service.import_rois(session, image, SINGLE_USER, inside.encode(), scene=1)
    assert service.get_roi(session, image, new).scene == 1
    # All or none: the fifth ROI is over the cap, the fourth is not kept either.
    monkeypatch.setattr(service, "MAX_ROIS_PER_IMAGE", 4)
    with pytest.raises(InvalidRoiError):
        service.import_rois(session, image, SINGLE_USER, _geojson("d", "e"))
    session.rollback()
    assert len(service.list_rois(session, image)) == 3


# ---------------------------------------------------------------------------- change, delete


def test_who_may_delete_and_replace(session: Session) -> None:
    annotate = add_group(session, "annotate", Permission.READ_ANNOTATE)
    write = add_group(session, "write", Permission.READ_WRITE)
    alice = add_user(session, "alice", {annotate: False, write: False})
    bob = add_user(session, "bob", {annotate: False, write: False})
    lead = add_user(session, "lead", {annotate: True})
    as_alice, as_bob, as_lead = (principal_of(session, u) for u in (alice, bob, lead))
    image = _image(session, owner_id=alice, group_id=annotate)
    bobs = service.create_roi(session, image, as_bob, name="b", scene=0, shapes=[RECT])
    alices = service.create_roi(session, image, as_alice, name="a", scene=0, shapes=[RECT])
    # Bob wrote his; alice owns the image; the group's leader changes every record of it.
    assert service.may_delete(as_bob, image, bobs)
    assert not service.may_delete(as_bob, image, alices)
    assert service.may_delete(as_alice, image, bobs)
    assert service.may_delete(as_lead, image, alices)
    shared = _image(session, owner_id=alice, group_id=write)
    on_shared = service.create_roi(session, shared, as_alice, name="s", scene=0, shapes=[RECT])
    assert service.may_delete(as_bob, shared, on_shared)

    service.create_roi(session, image, as_bob, name="b2", scene=0, shapes=[RECT])
    service.create_roi(session, image, as_alice, name="a2", scene=0, shapes=[RECT])
    assert service.delete_rois(session, as_bob, image) == (2, 2)
    session.rollback()  # committed
    assert [r.name for r in service.list_rois(session, image)] == ["a", "a2"]
    assert service.delete_rois(session, as_alice, image) == (2, 0)
    assert service.list_rois(session, image) == []
    assert service.delete_rois(session, as_alice, image) == (0, 0)

    replaced = service.replace_roi(session, on_shared, name="renamed", shapes=[LINE, RECT])
    session.rollback()  # committed, not only flushed
    again = service.get_roi(session, shared, replaced.id)
    assert (again.id, again.name, again.owner_id, again.group_id) == (
        on_shared.id,
        "renamed",
        alice,
        write,
    )
    assert service.roi_shapes(again) == [LINE, RECT]
    assert session.scalar(select(func.count()).select_from(RoiShape)) == 2
    service.delete_roi(session, again)
    session.rollback()  # committed, not only flushed
    assert session.scalar(select(func.count()).select_from(Roi)) == 0
    assert session.scalar(select(func.count()).select_from(RoiShape)) == 0


# ---------------------------------------------------------------------------- export


def test_geojson_of_an_image(session: Session) -> None:
    image = _image(session)
    other = _image(session)
    first = service.create_roi(
        session, image, SINGLE_USER, name="one", scene=0, shapes=[RECT, LINE]
    )
    service.create_roi(session, other, SINGLE_USER, name="else", scene=0, shapes=[RECT])
    second = service.create_roi(session, image, SINGLE_USER, name=None, scene=0, shapes=[POLY])
    for key in (image.id, str(image.id)):
        collection = service.image_rois_geojson(session, key)
        assert collection["image_id"] == str(image.id)
        assert collection["type"] == "FeatureCollection"
        props = [f["properties"] for f in collection["features"]]
        assert [(p["roi_id"], p["roi_name"], p["shape"]["type"]) for p in props] == [
            (first.id, "one", "rectangle"),
            (first.id, "one", "line"),
            (second.id, None, "polygon"),
        ]
    with pytest.raises(ImageNotFoundError):
        service.image_rois_geojson(session, "not an id")


# ---------------------------------------------------------------------------- stats


def test_stats_job_on_a_real_hyperstack_equals_numpy() -> None:
    import tifffile

    data = tifffile.imread(SPOTS_FILE)  # Z, C, Y, X
    assert data.shape == (17, 2, 88, 89)
    box = Shape("rectangle", {"x": 10.0, "y": 20.0, "width": 30.0, "height": 15.0}, z=4)
    spot = Shape("point", {"x": 50.5, "y": 60.5}, z=9, c=1)
    work = [(0, [box]), (0, [spot])]
    limits = ReadLimits()
    flat = service.roi_stats_job(SPOTS_FILE, work, False, limits)
    assert len(flat) == 2 and "planes" not in flat[0] and "planes" not in flat[1]
    region = data[4, :, 20:35, 10:40]
    for c in range(2):
        entry = flat[0]["channels"][c]
        values = region[c].astype(np.float64)
        assert entry["pixel_count"] == values.size == 450
        assert entry["sum"] == int(region[c].astype(np.int64).sum())
        assert entry["min"] == int(region[c].min()) and entry["max"] == int(region[c].max())
        assert entry["mean"] == values.mean()
        assert entry["std"] == pytest.approx(values.std(), rel=1e-12)
        assert entry["area_unit"] == "um2"
    assert flat[1]["channels"][1]["sum"] == int(data[9, 1, 60, 50])
    assert flat[1]["channels"][0]["pixel_count"] == 0
    stacked = service.roi_stats_job(SPOTS_FILE, work[:1], True, limits)
    assert [p["z"] for p in stacked[0]["planes"]] == list(range(17))
    for z in (0, 16):
        assert stacked[0]["planes"][z]["channels"][1]["sum"] == int(
            data[z, 1, 20:35, 10:40].astype(np.int64).sum()
        )


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_stats_csv_cells() -> None:
    stats = {
        "channels": [
            {
                "channel": 0,
                "name": "=DAPI",
                "pixel_count": 4,
                "min": 1,
                "max": 9,
                "mean": 4.5,
                "sum": 18,
                "std": 0.0,
                "area": 4.0,
                "area_unit": "px2",
                "area_um2": None,
                "nan_count": 0,
            }
        ]
    }
    planes = {
        "channels": [],
        "planes": [
            {"z": 0, "channels": [{"channel": 1, "name": None, "sample": 2, "sum": 0}]},
            {"z": 1, "channels": [{"channel": 1, "name": "GFP", "sum": 5}]},
        ],
    }
    text = service.stats_csv([(7, "+cell", stats), (8, None, planes)])
    assert "\r" not in text
    rows = _rows(text)
    assert rows[0] == list(service.CSV_COLUMNS)
    assert rows[1] == [
        "7", "'+cell", "", "0", "'=DAPI", "", "4", "1", "9", "4.5", "18", "0.0",
        "4.0", "px2", "", "", "", "", "0",
    ]  # fmt: skip
    assert rows[2] == ["8", "", "0", "1", "", "2", "", "", "", "", "0"] + [""] * 8
    assert rows[3] == ["8", "", "1", "1", "GFP", "", "", "", "", "", "5"] + [""] * 8
    assert len(rows) == 4
    assert _rows(service.stats_csv([])) == [list(service.CSV_COLUMNS)]


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("", ""),
        (None, None),
        ("plain", "plain"),
        ("Xenopus", "Xenopus"),
        ("X=1", "X=1"),
    ],
)
def test_names_never_run_as_formulas(name: str | None, cell: str | None) -> None:
    assert service._safe_cell(name) == cell


def test_stats_job_reads_the_scene_asked_with_the_limits_given() -> None:
    czi = Path("/work/shared/testdata/czi/xyz__multiple_images.czi")
    box = Shape("rectangle", {"x": 20.0, "y": 30.0, "width": 40.0, "height": 25.0}, z=1)
    stats = service.roi_stats_job(czi, [(0, [box]), (1, [box])], False, ReadLimits())
    from zstack_analyzer.loader import open_image

    with open_image(czi) as reader:
        expected = [
            int(reader.read_plane(scene, 0, 0, 1)[30:55, 20:60].astype(np.int64).sum())
            for scene in (0, 1)
        ]
    assert expected[0] != expected[1]
    assert [s["channels"][0]["sum"] for s in stats] == expected
    # The limits given are the reader's: a whole-plane format over them is refused.
    dicom = Path("/work/shared/testdata/dicom/dicom_file90.dcm")
    point = Shape("point", {"x": 3.0, "y": 4.0})
    assert service.roi_stats_job(dicom, [(0, [point])], False, ReadLimits())[0]["channels"]
    with pytest.raises(LimitExceededError):
        service.roi_stats_job(dicom, [(0, [point])], False, ReadLimits(max_render_plane_bytes=1000))
