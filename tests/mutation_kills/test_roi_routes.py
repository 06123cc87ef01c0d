"""The ROI routes' database steps (service/routes/rois.py), called directly on a migrated SQLite copy.

Found by mutation testing: the route tests check ROIs through single-user JSON, so
the owner's name of each ROI (and ``None`` for an ROI nobody owns), who may change
or delete one, the message of an edit that moves an ROI to another scene, the
scene an import goes to, the cap of a stats table and the counts of a bulk delete
were not pinned.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_group, add_image, add_user, principal_of
from zstack_analyzer.errors import InvalidRoiError
from zstack_analyzer.service.annotations.roi_schemas import RoiCreate
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import SINGLE_USER
from zstack_analyzer.service.errors import ImageNotFoundError, RoiNotFoundError
from zstack_analyzer.service.routes import rois as routes

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SCENES = [
    {"size_x": 32, "size_y": 24, "size_z": 5, "size_t": 1, "size_c": 2},
    {"size_x": 8, "size_y": 6, "size_z": 1, "size_t": 1, "size_c": 1},
]
RECT = {"type": "rectangle", "x": 1, "y": 2, "width": 3, "height": 4, "z": 4, "c": 1}


def _body(name: str | None = "cell", scene: int = 0, **shape: Any) -> RoiCreate:
    return RoiCreate.model_validate({"name": name, "scene": scene, "shapes": [{**RECT, **shape}]})


def _lab(session: Session) -> tuple[str, Any, Any]:
    group = add_group(session, "lab", Permission.READ_ANNOTATE)
    alice = add_user(session, "alice", {group: False})
    bob = add_user(session, "bob", {group: False})
    image = add_image(session, "cells.tif", owner_id=alice, group_id=group, scenes=SCENES)
    return str(image), principal_of(session, alice), principal_of(session, bob)


def test_create_list_and_get_name_their_owner(session: Session) -> None:
    image_id, alice, _bob = _lab(session)
    created = routes._create(session, image_id, alice, _body())
    assert (created.name, created.scene, created.owner_id, created.owner) == (
        "cell",
        0,
        alice.user_id,
        "alice",
    )
    assert [s["type"] for s in created.model_dump()["shapes"]] == ["rectangle"]
    assert created.model_dump()["shapes"][0]["z"] == 4
    assert created.model_dump()["shapes"][0]["c"] == 1
    nobodys = routes._create(session, image_id, SINGLE_USER, _body(None, 1, z=0, c=0))
    assert (nobodys.owner_id, nobodys.owner, nobodys.scene, nobodys.name) == (None, None, 1, None)

    listed = routes._list(session, image_id)
    assert listed.count == 2
    assert [(r.id, r.owner) for r in listed.data] == [(created.id, "alice"), (nobodys.id, None)]
    assert routes._get(session, image_id, created.id) == created
    assert routes._get(session, image_id, nobodys.id).owner is None
    image, roi = routes._stats_input(session, image_id, nobodys.id)
    assert (str(image.id), roi.id, roi.scene) == (image_id, nobodys.id, 1)
    with pytest.raises(InvalidRoiError):
        routes._create(session, image_id, alice, _body(z=5))  # the image has 5 planes
    for call in (routes._list, routes._geojson, routes._all_rois):
        with pytest.raises(ImageNotFoundError):
            call(session, "0" * 32)


def test_replace_and_delete_one_need_the_right(session: Session) -> None:
    image_id, alice, bob = _lab(session)
    roi = routes._create(session, image_id, alice, _body())
    assert routes._replace(session, image_id, roi.id, bob, _body("bob's")) is None
    assert routes._delete_one(session, image_id, roi.id, bob) is False
    assert routes._get(session, image_id, roi.id).name == "cell"
    with pytest.raises(InvalidRoiError) as caught:
        routes._replace(session, image_id, roi.id, alice, _body(scene=1))
    assert str(caught.value) == "an ROI stays on its scene (0); create a new one for scene 1"
    with pytest.raises(InvalidRoiError):
        routes._replace(session, image_id, roi.id, alice, _body(z=5))
    edited = routes._replace(session, image_id, roi.id, alice, _body("nucleus", x=7, z=2))
    assert edited is not None
    assert (edited.id, edited.name, edited.owner) == (roi.id, "nucleus", "alice")
    assert (edited.model_dump()["shapes"][0]["x"], edited.model_dump()["shapes"][0]["z"]) == (7, 2)
    assert routes._get(session, image_id, roi.id) == edited
    assert routes._delete_one(session, image_id, roi.id, alice) is True
    with pytest.raises(RoiNotFoundError):
        routes._get(session, image_id, roi.id)


def test_delete_all_counts_what_stays(session: Session) -> None:
    image_id, alice, bob = _lab(session)
    routes._create(session, image_id, alice, _body())
    routes._create(session, image_id, alice, _body())
    routes._create(session, image_id, bob, _body())
    assert routes._delete_all(session, image_id, bob).model_dump() == {"deleted": 1, "kept": 2}
    assert routes._list(session, image_id).count == 2


def test_a_stats_table_is_capped(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    image_id, alice, _bob = _lab(session)
    monkeypatch.setattr(routes, "MAX_CSV_ROIS", 2)
    first = routes._create(session, image_id, alice, _body())
    second = routes._create(session, image_id, alice, _body())
    image, rois = routes._all_rois(session, image_id)
    assert (str(image.id), [r.id for r in rois]) == (image_id, [first.id, second.id])
    routes._create(session, image_id, alice, _body())
    with pytest.raises(InvalidRoiError) as caught:
        routes._all_rois(session, image_id)
    assert str(caught.value) == "3 ROIs; a stats table measures at most 2 (ask per ROI)"


def test_import_to_a_scene_and_export_geojson(session: Session) -> None:
    image_id, alice, _bob = _lab(session)
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [5, 1], [3, 4], [1, 1]]]},
        "properties": {"name": "tri"},
    }
    data = json.dumps({"type": "FeatureCollection", "features": [feature, feature]}).encode()
    imported = routes._import(session, image_id, alice, data, 1)
    assert imported.count == 2 and len(imported.ids) == 2
    rois = routes._list(session, image_id).data
    assert [(r.id, r.scene, r.owner) for r in rois] == [(i, 1, "alice") for i in imported.ids]
    collection = routes._geojson(session, image_id)
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == 2
