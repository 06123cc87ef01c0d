"""Migration 0007 and the account commands: existing images keep everything; the first admin adopts them.

The path a lab takes: a database with images made before accounts existed,
``zstack db upgrade`` (or a server start), then the README's three commands
(first admin, a group, a token), then ``ZSTACK_AUTH=users``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import MetaData, Table, insert, select
from typer.testing import CliRunner

from tests.service.authworld import FAST_PASSWORDS
from tests.service.conftest import write_ome_tiff
from zstack_analyzer.cli import app
from zstack_analyzer.service.config import get_settings
from zstack_analyzer.service.db.migrations import upgrade_database
from zstack_analyzer.service.db.session import make_engine

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _env(data: Path, url: str | None) -> dict[str, str]:
    env = {"ZSTACK_DATA_DIR": str(data), "ZSTACK_AUTH": "users"}
    if url:
        env["ZSTACK_DATABASE_URL"] = url
    env.update({f"ZSTACK_ACCOUNTS__{k.upper()}": str(v) for k, v in FAST_PASSWORDS.items()})
    return env


def _old_image(url: str) -> uuid.UUID:
    """A database at revision 0004 holding one image, as a server before accounts left it."""
    engine = make_engine(url)
    image_id = uuid.uuid4()
    try:
        upgrade_database(engine, "0004")
        with engine.begin() as connection:
            images = Table("images", MetaData(), autoload_with=connection)
            postgres = connection.dialect.name == "postgresql"
            connection.execute(
                insert(images).values(
                    id=image_id if postgres else image_id.hex,
                    filename="before.ome.tif",
                    stored_name="x.ome.tif",
                    format="OME-TIFF",
                    size_bytes=10,
                    sha256="a" * 64,
                    width=4, height=3, depth=2, channels=1, timepoints=1,
                    samples_per_pixel=1, bit_depth=16, dtype="uint16",
                    metadata={"filename": "before.ome.tif"},
                    scenes=[],
                    thumbnail_ready=False,
                    created_at=datetime.now(UTC),
                    stored_in_place=False,
                )
            )  # fmt: skip
    finally:
        engine.dispose()
    return image_id


def test_migration_keeps_images_and_the_first_admin_adopts_them(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = database_url or f"sqlite:///{data / 'zstack.db'}"
    image_id = _old_image(url)
    for key, value in _env(data, database_url).items():
        monkeypatch.setenv(key, value)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            images = Table("images", MetaData(), autoload_with=connection)
            groups = Table("groups", MetaData(), autoload_with=connection)
            row = connection.execute(
                select(images.c.owner_id, images.c.group_id, images.c.filename)
            ).one()
            default = connection.execute(
                select(groups.c.id, groups.c.permissions).where(groups.c.name == "default")
            ).one()
        assert row == (None, default.id, "before.ome.tif")
        assert default.permissions == "read-only"
        # The README's three commands.
        added = runner.invoke(
            app, ["user", "add", "root", "--admin", "--password-stdin"], input="s3cret pass\n"
        )
        assert added.exit_code == 0, added.output
        assert (
            runner.invoke(app, ["group", "add", "lab", "--permissions", "read-annotate"]).exit_code
            == 0
        )
        assert (
            runner.invoke(
                app, ["user", "add", "ann", "--password-stdin"], input="another pass\n"
            ).exit_code
            == 0
        )
        assert runner.invoke(app, ["group", "member", "lab", "ann"]).exit_code == 0
        made = runner.invoke(
            app, ["token", "create", "root", "--name", "laptop", "--expires", "30"]
        )
        assert made.exit_code == 0, made.output
        token = made.output.strip()
        assert token.startswith("zst_") and "\n" not in token  # only the token
        with engine.connect() as connection:
            images = Table("images", MetaData(), autoload_with=connection)
            users = Table("users", MetaData(), autoload_with=connection)
            root_id = connection.execute(
                select(users.c.id).where(users.c.username == "root")
            ).scalar_one()
            owner = connection.execute(select(images.c.owner_id)).scalar_one()
        assert owner == root_id  # adopted
        listed = runner.invoke(app, ["user", "list"])
        assert "root\tadmin\tdefault:owner" in listed.output
        assert "ann\t-\tlab:member" in listed.output
        # Refusals are messages with exit code 2, never tracebacks.
        again = runner.invoke(app, ["group", "add", "lab"])
        bad = runner.invoke(app, ["group", "add", "x", "--permissions", "public"])
        last = runner.invoke(app, ["user", "disable", "root"])
        for result in (again, bad, last):
            assert result.exit_code == 2 and "Traceback" not in result.output
        assert "exists already" in again.output and "read-annotate" in bad.output
        assert "last active admin" in last.output
        assert runner.invoke(app, ["user", "disable", "ann"]).exit_code == 0
        assert (
            runner.invoke(
                app, ["user", "passwd", "ann", "--password-stdin"], input="third pass\n"
            ).exit_code
            == 0
        )
        assert runner.invoke(app, ["group", "member", "lab", "ann", "--remove"]).exit_code == 0
    finally:
        engine.dispose()
    # The server in users mode: root (by token) finds the old image, with its owner and group.
    import warnings

    from zstack_analyzer.service.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = get_settings()
    assert settings.auth_mode() == "users"
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/images/").status_code == 401
        record = client.get(f"/api/images/{image_id}", headers={"Authorization": f"Bearer {token}"})
        assert record.status_code == 200, record.text
        assert (record.json()["owner"], record.json()["group"]) == ("root", "default")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ingest_to_a_server_with_a_personal_token(tmp_path: Path, database_url: str | None) -> None:
    """``zstack ingest --server`` sends the user's token; the records are theirs, in their group."""
    from tests.service.live import LiveServer, make_settings
    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.config import AccountSettings

    server = LiveServer(
        make_settings(tmp_path / "data", auth="users", accounts=AccountSettings(**FAST_PASSWORDS))
    )
    server.start()
    try:
        with server.app.state.database.sessions() as session:
            accounts.create_group(session, "lab", "private")
            accounts.create_user(session, "ann")
            accounts.set_membership(session, "lab", "ann")
            token = accounts.create_token(session, "ann")[1]
        folder = tmp_path / "in"
        folder.mkdir()
        write_ome_tiff(folder / "a.ome.tif")
        refused = runner.invoke(
            app, ["ingest", str(folder), "--server", server.base_url, "--quiet", "--settle", "0"]
        )
        assert refused.exit_code != 0
        result = runner.invoke(
            app,
            [
                "ingest",
                str(folder),
                "--server",
                server.base_url,
                "--quiet",
                "--settle",
                "0",
                "--json",
            ],
            env={"ZSTACK_TOKEN": token},
        )
        assert result.exit_code == 0, result.output
        import httpx

        page = httpx.get(
            f"{server.base_url}/api/images/", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert [(i["owner"], i["group"]) for i in page["data"]] == [("ann", "lab")]
    finally:
        server.stop()


def test_a_new_password_from_the_cli_follows_the_rule_of_the_http_routes(tmp_path: Path) -> None:
    """``user add`` and ``user passwd`` refuse what ``POST /api/admin/users`` refuses (exit 2)."""
    from zstack_analyzer.service.auth.passwords import MIN_NEW_PASSWORD_CHARS

    env = _env(tmp_path / "data", None)
    short = "x" * (MIN_NEW_PASSWORD_CHARS - 1)
    refused = runner.invoke(
        app, ["user", "add", "ann", "--password-stdin"], input=short + "\n", env=env
    )
    assert refused.exit_code == 2, refused.output
    assert f"a password must have {MIN_NEW_PASSWORD_CHARS} to 1024 characters" in refused.output
    assert "Traceback" not in refused.output
    assert "ann" not in runner.invoke(app, ["user", "list"], env=env).output  # nobody made
    long_enough = "y" * MIN_NEW_PASSWORD_CHARS
    made = runner.invoke(
        app, ["user", "add", "ann", "--password-stdin"], input=long_enough + "\n", env=env
    )
    assert made.exit_code == 0, made.output
    too_long = runner.invoke(
        app, ["user", "passwd", "ann", "--password-stdin"], input="z" * 1025 + "\n", env=env
    )
    assert too_long.exit_code == 2 and "this one has 1025" in too_long.output
    short_passwd = runner.invoke(
        app, ["user", "passwd", "ann", "--password-stdin"], input=short + "\n", env=env
    )
    assert short_passwd.exit_code == 2
    # The password set by "add" still holds: neither refused change reached the database.
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.auth.models import User
    from zstack_analyzer.service.auth.passwords import verify_password

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'zstack.db'}")
    try:
        with Session(engine) as session:
            user = session.scalars(select(User).where(User.username == "ann")).one()
            assert verify_password(user.password_hash, long_enough)
    finally:
        engine.dispose()
