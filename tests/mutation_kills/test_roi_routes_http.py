"""ROI routes (service/routes/rois.py) over HTTP: who may edit or delete, the import's size cap.

Found by mutation testing of the route bodies: the route tests run in single-user
mode, where the one user may change every ROI, so the 403 of an edit or a delete of
someone else's ROI (and its message) was never answered over HTTP; and no test sent
an import of the size limit or just over it.

The lab is real accounts: root (admin) owns the group "notes" (read-annotate), where
mia and walt are members (they may see and annotate root's image, not change it),
and olga is in another group (she sees nothing of root's).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.users_lab import upload_into, users_app
from tests.service.conftest import write_ome_tiff
from zstack_analyzer.service.routes.rois import MAX_IMPORT_BYTES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

Headers = dict[str, str]
Lab = tuple["TestClient", dict[str, Headers], str]
RECT = {"type": "rectangle", "x": 1, "y": 2, "width": 3, "height": 4}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    groups = {
        "notes": ("read-annotate", {"root": True, "mia": False, "walt": False}),
        "other": ("read-annotate", {"olga": False}),
    }
    with users_app(tmp_path, groups) as (client, tokens):
        stack = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 3, 8, 10))
        yield client, tokens, upload_into(client, tokens["root"], stack, "cells.ome.tif", "notes")


def _upload(client: TestClient, token: Headers, path: Path) -> str:
    with path.open("rb") as fh:
        made = client.post(
            "/api/images/upload",
            files={"file": (path.name, fh)},
            params={"group": "notes"},
            headers=token,
        )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _create(client: TestClient, token: Headers, base: str, name: str) -> int:
    made = client.post(base, json={"name": name, "shapes": [RECT]}, headers=token)
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def test_only_its_author_or_who_may_change_the_image_edits_or_deletes_an_roi(lab: Lab) -> None:
    client, tokens, image = lab
    base = f"/api/images/{image}/rois"
    mine = _create(client, tokens["mia"], base, "mia's")
    edit = {"name": "walt's now", "shapes": [{**RECT, "x": 2}]}

    refused = client.put(f"{base}/{mine}", json=edit, headers=tokens["walt"])
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == f"you may not change ROI {mine}: it is someone else's"
    refused = client.delete(f"{base}/{mine}", headers=tokens["walt"])
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == f"you may not delete ROI {mine}: it is someone else's"
    assert client.put(f"{base}/{mine}", json=edit, headers=tokens["olga"]).status_code == 404
    assert client.delete(f"{base}/{mine}", headers=tokens["olga"]).status_code == 404
    kept = client.get(f"{base}/{mine}", headers=tokens["walt"]).json()
    assert (kept["name"], kept["shapes"][0]["x"]) == ("mia's", 1.0)

    # Its author edits it (id and author stay); the image's owner may delete it.
    edited = client.put(f"{base}/{mine}", json=edit, headers=tokens["mia"])
    assert edited.status_code == 200, edited.text
    assert (edited.json()["id"], edited.json()["name"], edited.json()["owner"]) == (
        mine,
        "walt's now",
        "mia",
    )
    gone = client.delete(f"{base}/{mine}", headers=tokens["root"])
    assert (gone.status_code, gone.content) == (204, b"")
    assert client.get(f"{base}/{mine}", headers=tokens["root"]).status_code == 404

    # Delete all: walt's own go, mia's stay.
    _create(client, tokens["mia"], base, "a")
    _create(client, tokens["walt"], base, "b")
    _create(client, tokens["walt"], base, "c")
    answer = client.delete(base, headers=tokens["walt"])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"deleted": 2, "kept": 1}
    left = client.get(base, headers=tokens["walt"]).json()
    assert [(r["name"], r["owner"]) for r in left["data"]] == [("a", "mia")]


def test_an_import_of_the_size_limit_is_read_and_one_byte_more_is_refused(lab: Lab) -> None:
    client, tokens, image = lab
    base = f"/api/images/{image}/rois"
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [5, 1], [5, 4], [1, 1]]]},
        "properties": {"name": "padded"},
    }
    document = json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()
    at_limit = document + b" " * (MAX_IMPORT_BYTES - len(document))  # whitespace: still JSON
    assert len(at_limit) == MAX_IMPORT_BYTES
    read = client.post(
        f"{base}/import", files={"file": ("big.geojson", at_limit)}, headers=tokens["mia"]
    )
    assert read.status_code == 201, read.text
    assert read.json()["count"] == 1
    over = client.post(
        f"{base}/import", files={"file": ("big.geojson", at_limit + b" ")}, headers=tokens["mia"]
    )
    assert over.status_code == 413, over.text
    assert str(MAX_IMPORT_BYTES) in over.json()["detail"]
    assert client.get(base, headers=tokens["mia"]).json()["count"] == 1


def test_the_servers_read_limits_bound_an_rois_stats(lab: Lab) -> None:
    """Stats read the file under the configured limits (not the library's defaults), and
    the refusal names the user's file, never the name it is stored under."""
    client, tokens, image = lab
    base = f"/api/images/{image}/rois"
    roi = _create(client, tokens["mia"], base, "cell")
    assert client.get(f"{base}/{roi}/stats", headers=tokens["mia"]).status_code == 200
    app: Any = client.app
    with app.state.database.sessions() as session:
        from zstack_analyzer.service.db import crud

        record = crud.get_image(session, uuid.UUID(image))
        assert record is not None
        stored_name = record.stored_name
    app.state.settings.limits.max_plane_bytes = 64  # a plane of the image is 8 x 10 x 2 bytes
    for path in (f"{base}/{roi}/stats", f"{base}.csv"):
        refused = client.get(path, headers=tokens["mia"])
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["code"] == "limit_exceeded"
        assert problem["detail"].startswith("cells.ome.tif: one plane of (8, 10) uint16 needs")
        assert stored_name not in problem["detail"]


def test_stats_answer_json_or_csv_of_one_plane_or_every_plane(lab: Lab) -> None:
    client, tokens, image = lab
    base = f"/api/images/{image}/rois"
    roi = _create(client, tokens["mia"], base, "cell")
    stats = client.get(f"{base}/{roi}/stats", headers=tokens["walt"])
    assert stats.status_code == 200, stats.text
    assert (stats.json()["roi_id"], stats.json()["image_id"]) == (roi, image)
    for path in (f"{base}/{roi}/stats", f"{base}.csv"):
        one = client.get(path, params={"format": "csv"}, headers=tokens["walt"])
        every = client.get(path, params={"format": "csv", "z": "all"}, headers=tokens["walt"])
        for table in (one, every):
            assert table.status_code == 200, table.text
            assert table.headers["content-type"] == "text/csv; charset=utf-8"
        one_rows = list(csv.DictReader(io.StringIO(one.text)))
        every_rows = list(csv.DictReader(io.StringIO(every.text)))
        # The ROI's own plane (no z column value), or its footprint on each of the three planes.
        assert [(r["roi_id"], r["z"]) for r in one_rows] == [(str(roi), "")]
        assert [(r["roi_id"], r["z"]) for r in every_rows] == [(str(roi), z) for z in "012"]


def test_stats_of_an_image_deleted_meanwhile_is_404_and_of_a_lost_file_500(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The file goes between the record's lookup and the read: if the record went too (a
    delete in progress) the image is gone (404); if only the file went, a server fault."""
    from zstack_analyzer.service.db import crud
    from zstack_analyzer.service.routes import rois as routes

    client, tokens, image = lab
    app: Any = client.app
    real = routes.readable_source
    other = _upload(client, tokens["root"], write_ome_tiff(tmp_path / "b.ome.tif", (1, 1, 8, 10)))
    rois = {i: _create(client, tokens["mia"], f"/api/images/{i}/rois", "c") for i in (image, other)}

    def file_of(image_id: str) -> Path:
        with app.state.database.sessions() as session:
            record = crud.get_image(session, uuid.UUID(image_id))
            assert record is not None
            return Path(app.state.storage.path(record.stored_name))

    def losing_the_file(record: Any, storage: Any) -> Any:
        file_of(str(record.id)).unlink()
        return real(record, storage)

    monkeypatch.setattr(routes, "readable_source", losing_the_file)
    with caplog.at_level(logging.ERROR):
        lost = client.get(f"/api/images/{image}/rois/{rois[image]}/stats", headers=tokens["mia"])
    assert lost.status_code == 500, lost.text
    assert lost.json()["code"] == "internal_error"
    request_id = lost.json()["request_id"]
    (logged,) = [r for r in caplog.records if request_id in r.getMessage() and r.exc_info]
    assert isinstance(logged.exc_info[1], FileNotFoundError)  # type: ignore[index]

    def deleting_the_image(record: Any, storage: Any) -> Any:
        path = file_of(str(record.id))
        with app.state.database.sessions() as session:
            assert crud.delete_image(session, record.id)
        path.unlink(missing_ok=True)
        return real(record, storage)

    monkeypatch.setattr(routes, "readable_source", deleting_the_image)
    for image_id, path in (
        (image, f"/api/images/{image}/rois/{rois[image]}/stats"),
        (other, f"/api/images/{other}/rois.csv"),
    ):
        gone = client.get(path, headers=tokens["mia"])
        assert gone.status_code == 404, gone.text
        assert gone.json()["code"] == "image_not_found"
        assert gone.json()["detail"] == f"no image with id {image_id!r} (deleted meanwhile)"
