"""The audit trail: what is recorded, who may read it, and that nobody can rewrite it.

On SQLite and PostgreSQL (``database_url``): a small lab (an admin, a member),
real logins over HTTP, a real upload, download and delete, token and membership
changes; then ``GET /api/audit`` as the admin with each filter. Append-only is
checked on the database itself with raw SQL, as a stray script would try it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.service.conftest import upload
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient

PASSWORD = "a long enough passphrase"  # noqa: S105  (a test account's)


def users_client(
    tmp_path: Path, database_url: str | None, make_client: Callable[..., TestClient]
) -> TestClient:
    """A users-mode app: admin 'root', 'mia' in group 'lab' (read-only), 'ola' in none."""
    from zstack_analyzer.service.auth import accounts

    settings = make_settings(tmp_path / "data", database_url=database_url, auth="users")
    client = make_client(settings)
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        # Only mia has a password: argon2 costs half a second per hash on a busy machine,
        # so the others act through API tokens.
        accounts.create_user(session, "root", admin=True)
        accounts.create_group(session, "lab", "read-only")
        accounts.create_user(session, "mia", password=PASSWORD)
        accounts.set_membership(session, "lab", "mia")
        accounts.create_user(session, "ola")
    return client


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    """Log in (the client keeps the cookie); the CSRF header for state-changing calls."""
    answer = client.post("/api/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return {"X-CSRF-Token": answer.json()["csrf_token"]}


def audit(client: TestClient, token: str, **params: Any) -> dict[str, Any]:
    answer = client.get("/api/audit", params=params, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def admin_token(client: TestClient) -> str:
    from zstack_analyzer.service.auth import accounts

    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        return accounts.create_token(session, "root", name="audit reader")[1]


def test_actions_are_recorded_with_client_and_request_id(
    tmp_path: Path,
    database_url: str | None,
    make_client: Callable[..., TestClient],
    tiff_file: Path,
) -> None:
    client = users_client(tmp_path, database_url, make_client)
    reader = admin_token(client)

    failed = client.post("/api/auth/login", json={"username": "mia", "password": "wrong"})
    assert failed.status_code == 401
    unknown = client.post("/api/auth/login", json={"username": "ghost", "password": "x"})
    assert unknown.status_code == 401
    csrf = login(client, "mia")
    uploaded = upload(client, tiff_file, headers=csrf)
    assert uploaded.status_code == 201, uploaded.text
    image_id = uploaded.json()["id"]
    downloaded = client.get(f"/api/images/{image_id}/download")
    assert downloaded.status_code == 200
    made = client.post("/api/tokens", json={"name": "script"}, headers=csrf)
    assert made.status_code == 201, made.text
    token_id = made.json()["id"]
    assert client.delete(f"/api/tokens/{token_id}", headers=csrf).status_code == 204
    deleted = client.delete(f"/api/images/{image_id}", headers=csrf)
    assert deleted.status_code == 204
    assert client.post("/api/auth/logout", headers=csrf).status_code == 204
    client.cookies.clear()

    root = {"Authorization": f"Bearer {reader}"}
    added = client.put("/api/admin/groups/lab/members/ola", json={"owner": False}, headers=root)
    assert added.status_code in (200, 201, 204), added.text
    changed = client.patch("/api/admin/groups/lab", json={"permissions": "private"}, headers=root)
    assert changed.status_code == 200, changed.text

    body = audit(client, reader, limit=1000)
    events = list(reversed(body["data"]))  # oldest first
    assert body["count"] == len(events)
    actions = [(e["action"], e["username"]) for e in events]
    assert actions == [
        ("login_failed", "mia"),
        ("login_failed", "ghost"),
        ("login", "mia"),
        ("upload", "mia"),
        ("download", "mia"),
        ("token_create", "mia"),
        ("token_revoke", "mia"),
        ("delete", "mia"),
        ("logout", "mia"),
        ("membership_add", "root"),
        ("group_update", "root"),
    ]
    by_action = {e["action"]: e for e in events}
    assert by_action["upload"]["target"] == image_id
    assert by_action["download"]["target"] == image_id
    assert by_action["delete"]["target"] == image_id
    assert by_action["token_create"]["target"] == str(token_id)
    assert by_action["group_update"]["target"] == "lab"
    assert by_action["group_update"]["details"]["permissions"] == "private"
    assert by_action["membership_add"]["details"]["target_user"] == "ola"
    assert by_action["login_failed"]["user_id"] is None
    mia_id = by_action["login"]["user_id"]
    assert isinstance(mia_id, int)
    for event in events:
        assert event["client"] == "testclient"
        assert event["action"] == "login_failed" or event["user_id"] is not None
        # Nothing secret is ever recorded.
        assert PASSWORD not in str(event)
        assert "wrong" not in str(event["details"])
    # Each event names the request that did it (the X-Request-ID the client saw).
    assert by_action["upload"]["request_id"] == uploaded.headers["X-Request-ID"]
    assert by_action["download"]["request_id"] == downloaded.headers["X-Request-ID"]
    assert by_action["delete"]["request_id"] == deleted.headers["X-Request-ID"]
    assert events[0]["request_id"] == failed.headers["X-Request-ID"]
    # Times are in order and recent.
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)
    assert datetime.now(UTC) - times[0] < timedelta(minutes=5)


def test_filters_and_paging(
    tmp_path: Path,
    database_url: str | None,
    make_client: Callable[..., TestClient],
) -> None:
    client = users_client(tmp_path, database_url, make_client)
    reader = admin_token(client)
    for _ in range(2):
        client.post("/api/auth/login", json={"username": "mia", "password": "nope"})
    login(client, "mia")
    client.cookies.clear()
    root = {"Authorization": f"Bearer {reader}"}
    assert client.post("/api/tokens", json={"name": "x"}, headers=root).status_code == 201
    assert client.post("/api/tokens", json={"name": "y"}, headers=root).status_code == 201

    everything = audit(client, reader)
    assert everything["count"] == 5
    assert audit(client, reader, user="mia")["count"] == 3
    assert audit(client, reader, user="root")["count"] == 2
    assert audit(client, reader, user="nobody")["count"] == 0
    assert audit(client, reader, action="login_failed")["count"] == 2
    assert audit(client, reader, action="login*")["count"] == 3
    assert audit(client, reader, action="token_*")["count"] == 2
    assert audit(client, reader, action="login", user="mia")["count"] == 1
    assert audit(client, reader, action="login", user="root")["count"] == 0

    newest_first = everything["data"]
    assert [e["action"] for e in newest_first[:3]] == ["token_create", "token_create", "login"]
    page = audit(client, reader, skip=1, limit=2)
    assert page["count"] == 5
    assert [e["id"] for e in page["data"]] == [e["id"] for e in newest_first[1:3]]

    middle = datetime.fromisoformat(newest_first[2]["at"])
    since = audit(client, reader, since=middle.isoformat())
    until = audit(client, reader, until=middle.isoformat())
    assert since["count"] + until["count"] == 5
    assert newest_first[2]["id"] in {e["id"] for e in since["data"]}
    # A time with another zone means the same instant.
    shifted = middle.astimezone(timezone(timedelta(hours=2)))
    assert audit(client, reader, since=shifted.isoformat())["count"] == since["count"]
    later = (middle + timedelta(hours=2)).replace(tzinfo=None).isoformat()
    assert audit(client, reader, since=later)["count"] == 0

    bad = client.get(
        "/api/audit", params={"action": "x'; drop"}, headers={"Authorization": f"Bearer {reader}"}
    )
    assert bad.status_code == 422


def test_only_admins_read_the_trail(
    tmp_path: Path,
    database_url: str | None,
    make_client: Callable[..., TestClient],
) -> None:
    client = users_client(tmp_path, database_url, make_client)
    assert client.get("/api/audit").status_code == 401
    login(client, "mia")
    forbidden = client.get("/api/audit")
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")
    client.cookies.clear()
    root = {"Authorization": f"Bearer {admin_token(client)}"}
    assert client.get("/api/audit", headers=root).status_code == 200


def test_no_route_changes_the_trail(
    tmp_path: Path,
    database_url: str | None,
    make_client: Callable[..., TestClient],
) -> None:
    client = users_client(tmp_path, database_url, make_client)
    headers = {"Authorization": f"Bearer {admin_token(client)}"}
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = client.request(method, "/api/audit", headers=headers)
        assert answer.status_code == 405, (method, answer.status_code)
    answer = client.request("DELETE", "/api/audit/1", headers=headers)
    assert answer.status_code in (404, 405)
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/audit"]) == {"get"}


def test_database_refuses_update_and_delete(
    tmp_path: Path,
    database_url: str | None,
    make_client: Callable[..., TestClient],
) -> None:
    client = users_client(tmp_path, database_url, make_client)
    reader = admin_token(client)
    root = {"Authorization": f"Bearer {reader}"}
    assert client.post("/api/tokens", json={"name": "x"}, headers=root).status_code == 201
    assert audit(client, reader)["count"] == 1
    engine = client.app.state.database.engine  # type: ignore[attr-defined]
    statements = [
        "UPDATE audit_events SET username = 'someone else'",
        "DELETE FROM audit_events",
    ]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    row = audit(client, reader)["data"][0]
    assert (row["action"], row["username"]) == ("token_create", "root")
    # Appending still works.
    assert client.post("/api/tokens", json={"name": "y"}, headers=root).status_code == 201
    assert audit(client, reader)["count"] == 2


def test_single_user_mode_records_as_the_local_user(
    tmp_path: Path, make_client: Callable[..., TestClient], tiff_file: Path
) -> None:
    client = make_client(make_settings(tmp_path / "data"))
    uploaded = upload(client, tiff_file)
    assert uploaded.status_code == 201
    body = client.get("/api/audit").json()
    assert [(e["action"], e["username"]) for e in body["data"]] == [("upload", "local")]


def test_container_deletes_are_recorded(
    tmp_path: Path, make_client: Callable[..., TestClient], tiff_file: Path
) -> None:
    """Deleting a dataset is an event, and so is each image deleted with it (its own ``delete``)."""
    client = make_client(make_settings(tmp_path / "data"))
    image_id = upload(client, tiff_file).json()["id"]
    kept = client.post("/api/datasets", json={"name": "kept images"}).json()["id"]
    emptied = client.post("/api/datasets", json={"name": "emptied"}).json()["id"]
    linked = client.post(f"/api/datasets/{emptied}/images", json={"image_ids": [image_id]})
    assert linked.status_code == 200, linked.text
    assert client.delete(f"/api/datasets/{kept}").status_code == 200
    gone = client.delete(f"/api/datasets/{emptied}", params={"with_images": "true"})
    assert gone.status_code == 200, gone.text
    assert gone.json()["images_deleted"] == [image_id]
    events = list(reversed(client.get("/api/audit").json()["data"]))
    assert [(e["action"], e["target"]) for e in events] == [
        ("upload", image_id),
        ("container_delete", f"dataset {kept}"),
        ("container_delete", f"dataset {emptied}"),
        ("delete", image_id),
    ]
    assert [e["details"].get("with_images") for e in events[1:3]] == [False, True]
    assert events[3]["request_id"] == events[2]["request_id"] == gone.headers["X-Request-ID"]


def test_cli_changes_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., TestClient]
) -> None:
    from typer.testing import CliRunner

    from zstack_analyzer.cli import app as cli
    from zstack_analyzer.service.config import get_settings

    data = tmp_path / "data"
    monkeypatch.setenv("ZSTACK_DATA_DIR", str(data))
    monkeypatch.setenv("ZSTACK_AUTH", "users")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        made = runner.invoke(
            cli, ["user", "add", "root", "--admin", "--password-stdin"], input=PASSWORD + "\n"
        )
        assert made.exit_code == 0, made.output
        assert runner.invoke(cli, ["group", "add", "lab"]).exit_code == 0
        # Disabling revokes the user's tokens: each revocation is recorded.
        assert runner.invoke(cli, ["user", "add", "leaver", "--no-password"]).exit_code == 0
        assert runner.invoke(cli, ["token", "create", "leaver"]).exit_code == 0
        disabled = runner.invoke(cli, ["user", "disable", "leaver"])
        assert disabled.exit_code == 0, disabled.output
        assert "API tokens revoked" in disabled.output
    finally:
        get_settings.cache_clear()
    client = make_client(make_settings(data, auth="users"))
    body = audit(client, admin_token(client))
    events = list(reversed(body["data"]))
    assert [e["action"] for e in events] == [
        "user_create",
        "group_create",
        "user_create",
        "token_create",
        "user_update",
        "token_revoke",
    ]
    assert events[5]["target"] == events[3]["target"]
    assert events[5]["details"]["target_user"] == "leaver"
    assert events[0]["username"] is None
    assert events[0]["details"]["via"] == "cli"
    assert events[0]["details"]["target_user"] == "root"
    assert events[0]["details"]["system_user"]
    assert events[1]["target"] == "lab"


def test_times_at_the_calendars_edges_are_not_errors(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(make_settings(tmp_path / "data"))
    for params in (
        {"since": "9999-12-31T23:59:59-14:00"},
        {"until": "0001-01-01T00:00:00+14:00"},
        {"since": "0001-01-01T00:00:00", "until": "9999-12-31T23:59:59"},
    ):
        answer = client.get("/api/audit", params=params)
        assert answer.status_code == 200, (params, answer.text)
    assert client.get("/api/audit", params={"since": "yesterday"}).status_code == 422


def test_writer_keeps_every_event_from_many_threads_in_order(tmp_path: Path) -> None:
    import threading

    from zstack_analyzer.service.auth.audit import AuditEvent
    from zstack_analyzer.service.auth.audit_writer import AuditEntry, AuditWriter
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import Database, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        upgrade_database(engine)
        writer = AuditWriter(Database(engine))

        def emit_many(thread: int) -> None:
            for i in range(50):
                writer.submit(
                    AuditEntry(action="download", username=f"t{thread}", details={"i": i})
                )

        threads = [threading.Thread(target=emit_many, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.flush()
        with Database(engine).sessions() as session:
            rows = session.query(AuditEvent).order_by(AuditEvent.id).all()
        assert len(rows) == 400
        for n in range(8):
            assert [r.details["i"] for r in rows if r.username == f"t{n}"] == list(range(50))
        # Closing writes what is still queued; later events are written at once.
        writer.submit(AuditEntry(action="logout"))
        writer.close()
        writer.submit(AuditEntry(action="login"))
        with Database(engine).sessions() as session:
            assert session.query(AuditEvent).count() == 402
    finally:
        engine.dispose()
