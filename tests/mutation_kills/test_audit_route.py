"""``GET /api/audit`` over HTTP: who may read it, what a refused caller is told, nothing missing.

Why: the trail is for admins; a member asking for it gets 403 with a detail that says
why ("admins only"), and an admin reading it right after an action sees that action (the
route flushes the process's audit writer first), with its filters applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.mutation_kills.test_zarr_store_routes import _start
from tests.service.authworld import FAST_PASSWORDS
from zstack_analyzer.service.config import AccountSettings

if TYPE_CHECKING:
    from pathlib import Path


def test_members_are_refused_and_admins_see_every_action(tmp_path: Path) -> None:
    from zstack_analyzer.service.auth import accounts

    settings = {"auth": "users", "accounts": AccountSettings(**FAST_PASSWORDS)}
    with _start(tmp_path / "data", **settings) as client:
        with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
            accounts.create_user(session, "root", admin=True)
            accounts.create_user(session, "mia")
            root = accounts.create_token(session, "root", name="t")[1]
            mia = accounts.create_token(session, "mia", name="t")[1]
        refused = client.get("/api/audit", headers={"Authorization": f"Bearer {mia}"})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["detail"] == "admins only"

        as_root = {"Authorization": f"Bearer {root}"}
        made = client.post("/api/tokens", json={"name": "x"}, headers=as_root)
        assert made.status_code == 201, made.text
        trail = client.get("/api/audit", headers=as_root)
        assert trail.status_code == 200, trail.text
        body = trail.json()
        assert [(e["action"], e["username"]) for e in body["data"]] == [("token_create", "root")]
        assert body["count"] == 1
        mine = client.get("/api/audit", params={"user": "mia"}, headers=as_root).json()
        assert mine == {"data": [], "count": 0}


def test_the_trail_waits_for_what_was_recorded_before_the_call(
    tmp_path: Path, testdata: Path
) -> None:
    """The writer is held back (another connection holds SQLite's write lock) when the trail is read.

    The route flushes the writer first, so the answer waits for the release and has the
    event; a route that did not flush would answer at once, without it. The action is a
    download, which writes nothing else.
    """
    import sqlite3
    import threading

    from tests.service.conftest import upload

    with _start(tmp_path / "data") as client:  # single user: the local user is admin
        image_id = upload(client, testdata / "ome-tiff/6x4y1z1t1c8b-swatch-1s1p4w2ws.ome.tiff")
        assert image_id.status_code == 201, image_id.text
        client.get("/api/audit")  # the upload's event written
        blocker = sqlite3.connect(tmp_path / "data" / "zstack.db", check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.0, blocker.rollback)
        try:
            got = client.get(f"/api/images/{image_id.json()['id']}/download")
            assert got.status_code == 200
            release.start()
            trail = client.get("/api/audit").json()
        finally:
            if release.is_alive() or not release.finished.is_set():
                release.cancel()
                blocker.rollback()
            release.join()
            blocker.close()
        assert [e["action"] for e in trail["data"]] == ["download", "upload"]
