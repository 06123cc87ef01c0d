"""``POST /api/images/register`` and ``GET /api/images/lookup`` over HTTP (``routes/archive.py``).

What a lab's ingest script relies on: 201 and a Location for a new record, 200 "Already
registered" with the same id (nothing read) for an unchanged path, 200 "Refreshed" with the
same id after a change, the size of a multi-file image being its whole set's, the record's
renders dropped when its old content is no longer used, the audit trail's ``register``
event naming the record and the path, and ``lookup`` listing every record of a content
hash oldest first. Real files of the shared corpus, copied under the import root.
"""

from __future__ import annotations

import hashlib
import shutil
from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.test_zarr_store_routes import _start

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

STACK = "ome-tiff/18x24y5z5t2c8b-text.ome.tiff"
SWATCH = "ome-tiff/6x4y1z1t1c8b-swatch-1s1p4w2ws.ome.tiff"
MULTIFILE = "ome-tiff/multifile"


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    return root


@pytest.fixture
def client(tmp_path: Path, roots: Path) -> Iterator[TestClient]:
    with _start(tmp_path / "data", import_roots=[roots]) as started:
        yield started


def _register(client: TestClient, path: Path, status: int) -> dict[str, Any]:
    answer = client.post("/api/images/register", json={"path": str(path)})
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert answer.headers["location"] == f"/api/images/{body['id']}"
    return body


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_again_refresh_and_lookup(client: TestClient, roots: Path, testdata: Path) -> None:
    source = roots / "cells.ome.tiff"
    shutil.copyfile(testdata / STACK, source)
    first = _register(client, source, 201)
    assert first["message"] == "Registered in place"
    stack = first["image_stack"]
    assert stack["id"] == first["id"]
    assert stack["filename"] == "cells.ome.tiff"
    assert stack["size_bytes"] == source.stat().st_size
    assert (stack["depth"], stack["width"], stack["height"]) == (5, 18, 24)
    assert client.get(f"/api/images/{first['id']}").json()["sha256"] == _sha256(source)

    again = _register(client, source, 200)
    assert again["message"] == "Already registered"
    assert again["id"] == first["id"]
    assert again["image_stack"]["size_bytes"] == stack["size_bytes"]

    # The render of the first content, then new content at the same path.
    old_sha = _sha256(source)
    assert client.get(f"/api/images/{first['id']}/zarr/0/0/0/0/0/0/0").status_code == 200
    assert client.get(f"/api/images/{first['id']}/thumbnail").status_code == 200
    cache = client.app.state.cache  # type: ignore[attr-defined]
    assert cache.path_for(old_sha, "x").parent.is_dir()
    shutil.copyfile(testdata / SWATCH, source)
    refreshed = _register(client, source, 200)
    assert refreshed["message"] == "Refreshed (the original had changed)"
    assert refreshed["id"] == first["id"]
    assert refreshed["image_stack"]["size_bytes"] == source.stat().st_size
    assert (refreshed["image_stack"]["width"], refreshed["image_stack"]["height"]) == (6, 4)
    # The old content is no record's now: its renders are gone.
    assert not cache.path_for(old_sha, "x").parent.exists()
    new = client.get(f"/api/images/{first['id']}/zarr/0/0/.zarray")
    assert new.json()["shape"][-2:] == [4, 6]

    # lookup: every record of these bytes, oldest first; none of other bytes.
    copy = roots / "copy.ome.tiff"
    shutil.copyfile(testdata / SWATCH, copy)
    second = _register(client, copy, 201)
    found = client.get("/api/images/lookup", params={"sha256": _sha256(copy)})
    assert found.status_code == 200, found.text
    body = found.json()
    assert [item["id"] for item in body["data"]] == [first["id"], second["id"]]
    assert body["count"] == 2
    assert body["data"][1]["filename"] == "copy.ome.tiff"
    empty = client.get("/api/images/lookup", params={"sha256": old_sha}).json()
    assert empty == {"data": [], "count": 0}

    # The trail: one register event per new or refreshed record, with its path.
    events = client.get("/api/audit", params={"action": "register"}).json()["data"]
    targets = [(e["target"], e["details"].get("path"), e["username"]) for e in reversed(events)]
    assert targets == [
        (first["id"], str(source), "local"),
        (first["id"], str(source), "local"),
        (second["id"], str(copy), "local"),
    ]


def test_a_multi_file_image_is_its_whole_set(
    client: TestClient, roots: Path, testdata: Path
) -> None:
    folder = roots / "set"
    shutil.copytree(testdata / MULTIFILE, folder)
    members = sorted(folder.glob("*.ome.tiff"))
    main = folder / "multifile-Z1.ome.tiff"
    first = _register(client, main, 201)
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert first["image_stack"]["size_bytes"] == total
    assert first["image_stack"]["depth"] == len(members)
    again = _register(client, main, 200)
    assert again["message"] == "Already registered"
    assert again["id"] == first["id"]


def test_a_changed_member_of_a_set_is_a_change(
    client: TestClient, roots: Path, testdata: Path
) -> None:
    import os

    folder = roots / "set"
    shutil.copytree(testdata / MULTIFILE, folder)
    main = folder / "multifile-Z1.ome.tiff"
    first = _register(client, main, 201)
    member = folder / "multifile-Z4.ome.tiff"
    stat = member.stat()
    os.utime(member, ns=(stat.st_atime_ns, stat.st_mtime_ns + 7_000_000_000))
    refreshed = _register(client, main, 200)
    assert refreshed["message"] == "Refreshed (the original had changed)"
    assert refreshed["id"] == first["id"]


def test_with_accounts_a_path_is_answered_only_to_who_may_see_it(
    tmp_path: Path, testdata: Path
) -> None:
    """ann registers a file of her private group's root; ben, in that group, may not see it.

    ben registering the same path gets 409 (not ann's record), cid who may see it (the
    read-only group's root) but not change it gets 403, and ``lookup`` of its hash lists it
    only for whoever may see it.
    """
    from tests.service.authworld import FAST_PASSWORDS
    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.config import AccountSettings

    private, shared = tmp_path / "roots" / "private", tmp_path / "roots" / "shared"
    for folder in (private, shared):
        folder.mkdir(parents=True)
        shutil.copyfile(testdata / STACK, folder / "cells.ome.tiff")
    settings = {"auth": "users", "accounts": AccountSettings(**FAST_PASSWORDS)}
    with _start(tmp_path / "data", **settings) as client:
        with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
            accounts.create_group(session, "priv", "private")
            accounts.create_group(session, "ro", "read-only")
            for name in ("ann", "ben", "cid"):
                accounts.create_user(session, name)
            for group, name in (("priv", "ann"), ("priv", "ben"), ("ro", "ann"), ("ro", "cid")):
                accounts.set_membership(session, group, name)
            accounts.add_import_root(session, "priv", str(private))
            accounts.add_import_root(session, "ro", str(shared))
            tokens = {n: accounts.create_token(session, n)[1] for n in ("ann", "ben", "cid")}

        def register(name: str, path: Path) -> Any:
            return client.post(
                "/api/images/register",
                json={"path": str(path)},
                headers={"Authorization": f"Bearer {tokens[name]}"},
            )

        first = register("ann", private / "cells.ome.tiff")
        assert first.status_code == 201, first.text
        record = client.get(
            f"/api/images/{first.json()['id']}",
            headers={"Authorization": f"Bearer {tokens['ann']}"},
        ).json()
        assert (record["owner"], record["group"]) == ("ann", "priv")
        hidden = register("ben", private / "cells.ome.tiff")
        assert hidden.status_code == 409, hidden.text
        assert first.json()["id"] not in hidden.text
        assert (
            hidden.json()["detail"] == "this path is registered already, in a group you are not in"
        )
        assert register("ann", private / "cells.ome.tiff").json()["message"] == "Already registered"

        in_ro = register("ann", shared / "cells.ome.tiff")
        assert in_ro.status_code == 201, in_ro.text
        refused = register("cid", shared / "cells.ome.tiff")
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == (
            f"image {in_ro.json()['id']} is registered from this path; you may not refresh it"
        )

        sha = _sha256(private / "cells.ome.tiff")

        def lookup(name: str) -> list[str]:
            answer = client.get(
                "/api/images/lookup",
                params={"sha256": sha},
                headers={"Authorization": f"Bearer {tokens[name]}"},
            )
            assert answer.status_code == 200, answer.text
            return [item["id"] for item in answer.json()["data"]]

        assert lookup("ann") == [first.json()["id"], in_ro.json()["id"]]
        assert lookup("ben") == []
        assert lookup("cid") == [in_ro.json()["id"]]


def test_new_bytes_with_the_old_mtime_are_read_again(
    client: TestClient, roots: Path, testdata: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rewritten in place (same inode) and its mtime put back (``cp -p``): the size tells."""
    import logging
    import os

    source = roots / "cells.ome.tiff"
    shutil.copyfile(testdata / STACK, source)
    with caplog.at_level(logging.INFO, logger="zstack_analyzer.service.routes.archive"):
        first = _register(client, source, 201)
    said = [r.getMessage() for r in caplog.records if r.name.endswith("routes.archive")]
    assert said == [f"registered {source} in place as {first['id']} (OME-TIFF)"]
    stat = source.stat()
    shutil.copyfile(testdata / SWATCH, source)  # same file, other bytes, other size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source.stat().st_ino == stat.st_ino
    refreshed = _register(client, source, 200)
    assert refreshed["message"] == "Refreshed (the original had changed)"
    assert refreshed["image_stack"]["width"] == 6


def test_registering_applies_the_servers_limits(
    tmp_path: Path, roots: Path, testdata: Path
) -> None:
    from zstack_analyzer.service.config import LimitsSettings

    source = roots / "cells.ome.tiff"
    shutil.copyfile(testdata / STACK, source)
    limits = LimitsSettings(max_dimension=20)
    with _start(tmp_path / "data", import_roots=[roots], limits=limits) as client:
        answer = client.post("/api/images/register", json={"path": str(source)})
        assert answer.status_code == 422, answer.text
        assert "over the limit of 20" in answer.json()["detail"]


def test_a_registered_image_gets_its_thumbnail_and_quality(
    tmp_path: Path, roots: Path, testdata: Path
) -> None:
    import time

    from zstack_analyzer.service.config import RenderSettings

    source = roots / "cells.ome.tiff"
    shutil.copyfile(testdata / STACK, source)
    render = RenderSettings(thumbnail_on_upload=True)
    with _start(tmp_path / "data", import_roots=[roots], render=render) as client:
        image_id = _register(client, source, 201)["id"]
        deadline = time.monotonic() + 60
        while True:
            record = client.get(f"/api/images/{image_id}").json()
            quality = client.get(f"/api/images/{image_id}/quality").json()
            if record.get("thumbnail_ready") and quality["status"] != "pending":
                break
            assert time.monotonic() < deadline, (record, quality)
            time.sleep(0.1)
        assert quality["status"] == "ready", quality
        assert len(quality["channels"]) == 2


def test_an_unchanged_folder_image_is_already_registered(client: TestClient, roots: Path) -> None:
    """A folder's size is 0 (what is saved), never the folder entry's own size."""
    from tests.service.test_confinement import write_ome_zarr

    folder = roots / "cells.zarr"
    write_ome_zarr(folder)
    assert folder.stat().st_size > 1  # the directory entry's size, which must not count
    first = _register(client, folder, 201)
    assert first["image_stack"]["size_bytes"] == 0
    again = _register(client, folder, 200)
    assert again["message"] == "Already registered"
    assert again["id"] == first["id"]


def test_lookup_answers_the_oldest_hundred_and_ties_by_id(client: TestClient) -> None:
    """Many records of one hash: a bounded answer, the oldest; records made in the same
    instant come in id order, so two calls (and two servers) list them alike."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from tests.mutation_kills.service_db import add_image

    sha = "ab" * 32
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    made: list[tuple[datetime, uuid.UUID]] = []

    def run(session: Any) -> None:
        for i in range(101):
            # Three records per instant, each instant's ids written highest first.
            when = t0 + timedelta(seconds=i // 3)
            image_id = uuid.UUID(int=(1000 - i) * (1 << 64) + i)
            add_image(session, f"{i}.tif", id=image_id, sha256=sha, created_at=when)
            made.append((when, image_id))

    client.app.state.database.call(run)  # type: ignore[attr-defined]
    answer = client.get("/api/images/lookup", params={"sha256": sha})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["count"] == 100
    assert [item["id"] for item in body["data"]] == [str(i) for _, i in sorted(made)[:100]]


def test_a_registered_images_thumbnail_is_rendered_under_the_servers_limits(
    tmp_path: Path, roots: Path, testdata: Path
) -> None:
    """The background render gets the server's read limits, as the registration did."""
    from zstack_analyzer.service.config import LimitsSettings, RenderSettings

    source = roots / "cells.ome.tiff"
    shutil.copyfile(testdata / STACK, source)
    render = RenderSettings(thumbnail_on_upload=True)
    # Metadata reads fit; decoding a block of the file does not.
    limits = LimitsSettings(max_render_plane_bytes=10)
    with _start(tmp_path / "data", import_roots=[roots], render=render, limits=limits) as client:
        image_id = _register(client, source, 201)["id"]
        # Waits for the registration's render (same key), or renders under the same limits.
        thumbnail = client.get(f"/api/images/{image_id}/thumbnail")
        assert thumbnail.status_code == 422, thumbnail.text
        assert "over the render limit" in thumbnail.json()["detail"]
        assert client.get(f"/api/images/{image_id}").json()["thumbnail_ready"] is False
