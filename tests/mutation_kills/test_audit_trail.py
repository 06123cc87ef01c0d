"""The audit trail's rows (``auth/audit.py``), what an event becomes (``auth/audit_writer.py``).

Why direct calls: the row an event turns into depends only on ``emit``'s arguments (the
principal, the request's peer and id, the details), and the table's filters only on the rows;
so both are checked on a migrated SQLite copy, with real principals and Starlette requests,
field by field: secrets dropped, the target picked, who acted for a failed login, the CLI's
system user, the column limits, the family filter's escaping, the order and the paging.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select
from starlette.requests import Request

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import _template
from zstack_analyzer.service.auth import audit_writer, events
from zstack_analyzer.service.auth.audit import (
    AuditEvent,
    AuditQuery,
    as_utc,
    query_events,
    record,
    record_many,
)
from zstack_analyzer.service.auth.audit_writer import AuditEntry, AuditWriter, entry_from
from zstack_analyzer.service.auth.permissions import Principal

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy.orm import Session

    from zstack_analyzer.service.db.session import Database


def _request(host: str | None = "10.0.0.7", request_id: Any = "req-1", writer: Any = None) -> Any:
    scope: dict[str, Any] = {
        "type": "http",
        "headers": [],
        "client": (host, 4321) if host else None,
        "state": {"request_id": request_id},
        "app": SimpleNamespace(state=SimpleNamespace(audit=writer)),
    }
    return Request(scope)


ALICE = Principal(user_id=7, username="alice", via="session")


# --- audit.py ---------------------------------------------------------------------------------


def test_record_cuts_to_the_columns(session: Session) -> None:
    event = record(
        session,
        "a" * 70,
        user_id=3,
        username="u" * 160,
        client="c" * 70,
        request_id="r" * 70,
        target="t" * 300,
        details={"k": 1},
    )
    stored = session.scalars(select(AuditEvent)).one()
    assert stored is event
    session.expire_all()
    assert (len(stored.action), len(stored.username), len(stored.client)) == (64, 150, 64)
    assert (len(stored.request_id), len(stored.target)) == (64, 255)
    assert (stored.user_id, stored.details) == (3, {"k": 1})
    assert datetime.now(UTC) - as_utc(stored.at) < timedelta(minutes=5)
    bare = record(session, "logout")
    session.expire_all()
    assert (bare.user_id, bare.username, bare.client, bare.request_id, bare.target) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert bare.details == {}


def test_record_many_cuts_and_keeps_times(session: Session) -> None:
    then = datetime(2020, 5, 6, 7, 8, 9, tzinfo=UTC)
    record_many(
        session,
        [
            {
                "action": "b" * 70,
                "at": then,
                "user_id": 4,
                "username": "u" * 160,
                "client": "c" * 70,
                "request_id": "r" * 70,
                "target": "t" * 300,
                "details": {"x": [1]},
            },
            {"action": "logout"},
        ],
    )
    first, second = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    session.expire_all()
    assert (len(first.action), len(first.username), len(first.client)) == (64, 150, 64)
    assert (len(first.request_id), len(first.target)) == (64, 255)
    assert (first.user_id, first.details, as_utc(first.at)) == (4, {"x": [1]}, then)
    assert (second.action, second.user_id, second.username, second.client) == (
        "logout",
        None,
        None,
        None,
    )
    assert (second.request_id, second.target, second.details) == (None, None, {})
    assert datetime.now(UTC) - as_utc(second.at) < timedelta(minutes=5)


def test_as_utc() -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5)
    assert as_utc(naive) == naive.replace(tzinfo=UTC)
    assert as_utc(naive).tzinfo is UTC
    plus2 = datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(plus2) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert as_utc(plus2).tzinfo is UTC
    late = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-14)))
    assert as_utc(late) == datetime.max.replace(tzinfo=UTC)
    early = datetime(1, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=14)))
    assert as_utc(early) == datetime.min.replace(tzinfo=UTC)


@pytest.fixture
def trail(session: Session) -> Session:
    """Six events an hour apart (t0 + 0..5 h); two at t0 + 5 h exactly."""
    t0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
    rows = [
        ("login", "mia", 0),
        ("token_create", "root", 1),
        ("tokenXcreate", "root", 2),  # "_" must not act as LIKE's any-character
        ("token_revoke", "mia", 3),
        ("login_failed", "mia", 4),
        ("logout", "mia", 5),
        ("login", "ola", 5),
    ]
    record_many(
        session,
        [{"action": a, "username": u, "at": t0 + timedelta(hours=h)} for a, u, h in rows],
    )
    return session


T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


def _ask(session: Session, **filters: Any) -> tuple[list[tuple[str, str | None]], int]:
    rows, count = query_events(session, AuditQuery(**filters))
    return [(r.action, r.username) for r in rows], count


def test_query_filters_order_and_pages(trail: Session) -> None:
    everything, count = _ask(trail)
    assert count == 7
    # Newest first; the two at the same time: the later id first.
    assert everything == [
        ("login", "ola"),
        ("logout", "mia"),
        ("login_failed", "mia"),
        ("token_revoke", "mia"),
        ("tokenXcreate", "root"),
        ("token_create", "root"),
        ("login", "mia"),
    ]
    assert _ask(trail, username="nobody") == ([], 0)
    assert _ask(trail, username="root") == ([("tokenXcreate", "root"), ("token_create", "root")], 2)
    assert _ask(trail, action="login")[1] == 2
    assert _ask(trail, action="token_*") == (
        [("token_revoke", "mia"), ("token_create", "root")],
        2,
    )
    assert _ask(trail, action="login*")[1] == 3
    assert _ask(trail, action="")[1] == 7
    assert _ask(trail, action="login", username="mia") == ([("login", "mia")], 1)
    # since inclusive, until exclusive; a naive time is UTC, another zone the same instant.
    since = _ask(trail, since=T0 + timedelta(hours=4))
    assert since[1] == 3
    until = _ask(trail, until=T0 + timedelta(hours=4))
    assert until[1] == 4
    assert _ask(trail, since=(T0 + timedelta(hours=4)).replace(tzinfo=None))[1] == 3
    plus3 = timezone(timedelta(hours=3))
    assert _ask(trail, until=(T0 + timedelta(hours=1)).astimezone(plus3))[1] == 1
    both = _ask(trail, since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert both == ([("tokenXcreate", "root"), ("token_create", "root")], 2)
    page = _ask(trail, skip=2, limit=3)
    assert page == (everything[2:5], 7)
    # Order is by time, not by when a row was written.
    record_many(trail, [{"action": "upload", "username": "late", "at": T0 - timedelta(hours=1)}])
    assert _ask(trail)[0][-1] == ("upload", "late")
    assert _ask(trail, limit=1)[0] == [("login", "ola")]


# --- audit_writer.py: what an event becomes ---------------------------------------------------


def test_an_event_of_a_request() -> None:
    image = uuid.UUID(int=5)
    entry = entry_from(
        "download",
        ALICE,
        _request(),
        {
            "image_id": image,
            "password": "hunter2",
            "secret": b"raw",
            "token": "abc",
            "csrf_token": "c",
            "session": "s",
            "token_id": 12,
            "sizes": (1, {2: image}, {3}),
            "when": datetime(2024, 1, 1, tzinfo=UTC),
            "none": None,
            "flag": True,
            "ratio": 0.5,
        },
    )
    assert entry.action == "download"
    assert (entry.user_id, entry.username, entry.client, entry.request_id) == (
        7,
        "alice",
        "10.0.0.7",
        "req-1",
    )
    assert entry.target == str(image)
    assert entry.details == {
        "image_id": str(image),
        "token_id": 12,
        "sizes": [1, {"2": str(image)}, [3]],
        "when": "2024-01-01 00:00:00+00:00",
        "none": None,
        "flag": True,
        "ratio": 0.5,
        "via": "session",
    }
    assert datetime.now(UTC) - entry.at < timedelta(minutes=5)
    # A secret key with a value that is no string (a count, say) is kept.
    assert entry_from("x", ALICE, _request(), {"token": 3}).details["token"] == 3


def test_targets_in_order_and_who_acted() -> None:
    details = {"path": "/p", "group": "lab", "container": "c", "token_id": None}
    assert entry_from("a", ALICE, _request(), details).target == "lab"
    assert entry_from("a", ALICE, _request(), {"container": "dataset 4"}).target == "dataset 4"
    assert entry_from("a", ALICE, _request(), {"n": 1}).target is None
    # An admin acting on another account: the account is the target.
    other = entry_from("user_update", ALICE, _request(), {"username": "bob"})
    assert (other.username, other.target, other.details) == (
        "alice",
        "bob",
        {"target_user": "bob", "via": "session"},
    )
    own = entry_from("user_update", ALICE, _request(), {"username": "alice"})
    assert own.details == {"username": "alice", "via": "session"}
    assert own.target is None
    # A failed login: nobody acted; the name tried is who.
    failed = entry_from("login_failed", None, _request(), {"username": "ghost", "reason": "r"})
    assert (failed.user_id, failed.username, failed.target, failed.details) == (
        None,
        "ghost",
        None,
        {"reason": "r"},
    )
    odd = entry_from("login_failed", None, _request(), {"username": 5})
    assert (odd.username, odd.details, odd.target) == (None, {"target_user": 5}, "5")
    # The all-powerful principal of none/token mode: no user id, its name, its via.
    local = Principal(user_id=None, username="local", is_admin=True, via="none")
    entry = entry_from("upload", local, _request(host=None, request_id=17), {})
    assert (entry.user_id, entry.username, entry.client, entry.request_id) == (
        None,
        "local",
        None,
        17,
    )
    assert entry.details == {"via": "none"}
    unnamed = entry_from("upload", SimpleNamespace(user_id="7", username=""), _request(), {})
    assert (unnamed.user_id, unnamed.username) == (None, None)
    assert "via" not in unnamed.details
    stateless = entry_from("upload", ALICE, SimpleNamespace(client=None, scope={"state": 1}), {})
    assert (stateless.client, stateless.request_id) == (None, None)
    # Requests without a peer or a scope at all, a principal whose name is no text.
    bare = entry_from("upload", ALICE, SimpleNamespace(), {})
    assert (bare.client, bare.request_id, bare.username) == (None, None, "alice")
    odd_name = entry_from("upload", SimpleNamespace(user_id=3, username=5), _request(), {})
    assert (odd_name.user_id, odd_name.username) == (3, None)


def test_an_event_of_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    monkeypatch.setattr(getpass, "getuser", lambda: "operator")
    entry = entry_from("user_create", None, None, {"username": "root", "admin": True})
    assert (entry.user_id, entry.username, entry.client, entry.request_id) == (
        None,
        None,
        None,
        None,
    )
    assert entry.details == {
        "admin": True,
        "via": "cli",
        "system_user": "operator",
        "target_user": "root",
    }
    assert entry.target == "root"

    def nobody() -> str:
        raise KeyError("uid 4242")

    monkeypatch.setattr(getpass, "getuser", nobody)
    assert entry_from("x", None, None, {}).details["system_user"] == "unknown"


def _database(tmp_path: Path) -> Iterator[Database]:
    import shutil

    from zstack_analyzer.service.db.session import Database, make_engine

    shutil.copyfile(_template(), tmp_path / "zstack.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'zstack.db'}")
    try:
        yield Database(engine)
    finally:
        engine.dispose()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    yield from _database(tmp_path)


def _rows(database: Database) -> list[tuple[Any, ...]]:
    with database.sessions() as db:
        rows = db.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        return [(r.action, r.username, r.client, r.request_id, r.target, r.details) for r in rows]


def test_emit_writes_through_the_apps_writer(database: Database) -> None:
    writer = AuditWriter(database)
    try:
        request = _request(writer=writer)
        events.emit("group_update", ALICE, request, group="lab", permissions="private")
        audit_writer.dispatch("token_revoke", ALICE, request, {"token_id": 9})
        writer.flush()
        assert _rows(database) == [
            (
                "group_update",
                "alice",
                "10.0.0.7",
                "req-1",
                "lab",
                {"group": "lab", "permissions": "private", "via": "session"},
            ),
            ("token_revoke", "alice", "10.0.0.7", "req-1", "9", {"token_id": 9, "via": "session"}),
        ]
    finally:
        writer.close()


def test_emit_never_raises(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "zstack_analyzer.service.auth.audit_writer"):
        events.emit("upload", ALICE, _request(writer=None), image_id="i")
    assert len(caplog.records) == 1
    assert (
        caplog.records[0]
        .getMessage()
        .startswith("audit: no writer on this app; not recorded: AuditEntry(action='upload'")
    )
    caplog.clear()
    stateless_app = _request()
    stateless_app.scope["app"] = SimpleNamespace(state=SimpleNamespace())  # no "audit" at all
    with caplog.at_level(logging.WARNING, "zstack_analyzer.service.auth.audit_writer"):
        events.emit("upload", ALICE, stateless_app, image_id="i")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert caplog.records[0].getMessage().startswith("audit: no writer on this app")
    caplog.clear()
    broken = SimpleNamespace(client=None, scope={}, app=None)  # no app state: an odd request
    with caplog.at_level(logging.WARNING, "zstack_analyzer.service.auth.audit_writer"):
        events.emit("upload", ALICE, broken)
    assert [r.getMessage() for r in caplog.records] == ["audit: could not record upload"]
    assert caplog.records[0].exc_info is not None


def test_cli_events_go_to_the_configured_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from zstack_analyzer.service.config import get_settings

    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(_template(), data / "zstack.db")
    monkeypatch.setenv("ZSTACK_DATA_DIR", str(data))
    monkeypatch.delenv("ZSTACK_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        events.emit("group_create", None, None, group="lab")
    finally:
        get_settings.cache_clear()
    from zstack_analyzer.service.db.session import Database, make_engine

    engine = make_engine(f"sqlite:///{data / 'zstack.db'}")
    try:
        rows = _rows(Database(engine))
    finally:
        engine.dispose()
    assert len(rows) == 1
    assert rows[0][:5] == ("group_create", None, None, None, "lab")
    assert rows[0][5]["via"] == "cli"


def test_writer_order_flush_close_and_failures(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = AuditWriter(database)
    threads = [
        threading.Thread(
            target=lambda n=n: [
                writer.submit(AuditEntry(action="download", username=f"t{n}", details={"i": i}))
                for i in range(40)
            ]
        )
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.flush()
    rows = _rows(database)
    assert len(rows) == 160
    for n in range(4):
        assert [r[5]["i"] for r in rows if r[1] == f"t{n}"] == list(range(40))
    # A flush that cannot finish in time says so (and returns).
    release = threading.Event()
    writer._executor.submit(release.wait, 30)
    try:
        with caplog.at_level(logging.WARNING, "zstack_analyzer.service.auth.audit_writer"):
            writer.flush(timeout=0.6)
    finally:
        release.set()
    assert [r.getMessage() for r in caplog.records] == ["audit: flush did not finish within 1 s"]
    caplog.clear()
    # close() writes everything queued before it returns.
    for i in range(200):
        writer.submit(AuditEntry(action="logout", details={"i": i}))
    writer.close()
    assert len(_rows(database)) == 360
    writer.flush()  # closed: returns at once
    writer.submit(AuditEntry(action="login"))  # closed: written here and now
    assert _rows(database)[-1][0] == "login"
    # A database that cannot be written: each event is logged (from the writer's thread).
    from zstack_analyzer.service.db.session import Database, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    try:
        failing = AuditWriter(Database(engine))
        with caplog.at_level(logging.ERROR, "zstack_analyzer.service.auth.audit_writer"):
            failing.submit(AuditEntry(action="upload", username="zed"))
            failing.flush()
        assert len(caplog.records) == 1
        logged = caplog.records[0]
        assert logged.msg == "audit: could not record %r"
        assert isinstance(logged.args, tuple)
        assert logged.args[0].username == "zed"
        assert logged.getMessage().startswith("audit: could not record AuditEntry(action='upload'")
        assert logged.threadName.startswith("zstack-audit")
        assert logged.exc_info is not None
        failing.close()
    finally:
        engine.dispose()
