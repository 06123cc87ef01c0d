"""``zstack user add/passwd`` (``cli_accounts.py``): reading a new password, its rule, its effects.

Why through the real CLI (Typer's runner, a SQLite data dir): what an operator
sees and what the database holds afterwards is the behaviour. The bounds of the
rule are checked at both edges (exactly 8 and exactly 1024 characters are
accepted), a password typed at the prompt is asked twice and never echoed, a
Windows line ending on standard input is not part of the password, and a
``passwd`` ends the user's sessions, revokes their tokens, tells so, records the
audit event and touches the accounts-changed marker every server process reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.service.authworld import FAST_PASSWORDS
from zstack_analyzer.cli import app
from zstack_analyzer.service.auth import accounts
from zstack_analyzer.service.auth.audit import AuditEvent
from zstack_analyzer.service.auth.models import ApiToken, User, UserSession
from zstack_analyzer.service.auth.passwords import verify_password
from zstack_analyzer.service.auth.sessions import start_session
from zstack_analyzer.service.config import get_settings
from zstack_analyzer.service.db.session import make_engine

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

runner = CliRunner()
FIRST = "first password"


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {"ZSTACK_DATA_DIR": str(tmp_path / "data"), "ZSTACK_AUTH": "users"}
    values.update({f"ZSTACK_ACCOUNTS__{k.upper()}": str(v) for k, v in FAST_PASSWORDS.items()})
    made = runner.invoke(
        app, ["user", "add", "ann", "--password-stdin"], input=FIRST + "\n", env=values
    )
    assert made.exit_code == 0, made.output
    return values


def _db(env: dict[str, str]) -> Session:
    engine = make_engine(f"sqlite:///{env['ZSTACK_DATA_DIR']}/zstack.db")
    return Session(engine)


def _holds(env: dict[str, str], password: str) -> bool:
    with _db(env) as session:
        user = session.scalars(select(User).where(User.username == "ann")).one()
        return verify_password(user.password_hash, password)


def test_the_rule_accepts_both_edges(env: dict[str, str]) -> None:
    for password in ("e" * 8, "m" * 1024):
        done = runner.invoke(
            app, ["user", "passwd", "ann", "--password-stdin"], input=password + "\n", env=env
        )
        assert done.exit_code == 0, done.output
        assert _holds(env, password)


def test_a_windows_line_ending_is_not_part_of_the_password(env: dict[str, str]) -> None:
    done = runner.invoke(
        app, ["user", "passwd", "ann", "--password-stdin"], input="crlf password\r\n", env=env
    )
    assert done.exit_code == 0, done.output
    assert _holds(env, "crlf password")


def test_an_empty_standard_input_is_refused(env: dict[str, str]) -> None:
    refused = runner.invoke(app, ["user", "passwd", "ann", "--password-stdin"], input="\n", env=env)
    assert refused.exit_code == 2
    # On standard error: a script reading the command's output gets none.
    assert refused.stderr == "error: no password on standard input\n"
    assert refused.stdout == ""
    assert _holds(env, FIRST)


def test_an_account_error_is_told_on_standard_error(env: dict[str, str]) -> None:
    unknown = runner.invoke(
        app, ["user", "passwd", "nobody", "--password-stdin"], input="long enough\n", env=env
    )
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: ") and "nobody" in unknown.stderr
    assert unknown.stdout == ""


def test_spaces_and_x_at_the_end_are_part_of_the_password(env: dict[str, str]) -> None:
    for password in ("ends with spaces  ", "ends with an X"):
        done = runner.invoke(
            app, ["user", "passwd", "ann", "--password-stdin"], input=password + "\n", env=env
        )
        assert done.exit_code == 0, done.output
        assert _holds(env, password)


def test_the_prompt_asks_twice_without_echo_and_applies_the_rule(env: dict[str, str]) -> None:
    typed = "typed password"
    done = runner.invoke(app, ["user", "passwd", "ann"], input=f"{typed}\n{typed}\n", env=env)
    assert done.exit_code == 0, done.output
    assert typed not in done.output  # hidden input
    assert done.output.startswith("password: \nRepeat for confirmation: \n"), done.output
    assert _holds(env, typed)
    # Two different entries: asked again, never set (the runner's input then runs out).
    mismatch = runner.invoke(
        app, ["user", "passwd", "ann"], input="one password\nanother one\n", env=env
    )
    assert mismatch.exit_code != 0
    assert _holds(env, typed)
    # The rule holds for a typed password too.
    short = runner.invoke(app, ["user", "passwd", "ann"], input="short\nshort\n", env=env)
    assert short.exit_code == 2
    assert "a password must have 8 to 1024 characters (this one has 5)" in short.stderr
    assert _holds(env, typed)


def test_passwd_ends_sessions_revokes_tokens_records_and_marks(env: dict[str, str]) -> None:
    with _db(env) as session:
        user_id = session.scalars(select(User.id).where(User.username == "ann")).one()
        start_session(session, user_id, hours=1, client="c", previous=None)
        accounts.create_token(session, "ann")
    marker = get_settings().accounts_marker
    assert str(marker).startswith(env["ZSTACK_DATA_DIR"])
    before = marker.stat().st_mtime_ns if marker.exists() else None
    done = runner.invoke(
        app, ["user", "passwd", "ann", "--password-stdin"], input="new password\n", env=env
    )
    assert done.exit_code == 0, done.output
    assert "password of ann changed; their sessions ended, their API tokens revoked" in done.output
    assert marker.exists() and marker.stat().st_mtime_ns != before
    with _db(env) as session:
        assert session.scalars(select(UserSession)).all() == []
        assert all(t.revoked_at is not None for t in session.scalars(select(ApiToken)))
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "user_update"))
        assert (event.username, event.target) == (None, "ann")  # the CLI acted on ann
        assert (event.details["target_user"], event.details["password"]) == ("ann", True)
        assert event.details["via"] == "cli"
    assert _holds(env, "new password")


def test_the_first_command_makes_a_data_dir_whose_parents_do_not_exist(tmp_path: Path) -> None:
    """A fresh install names a data dir in a folder not made yet: the first command makes both."""
    data = tmp_path / "not" / "yet" / "data"
    env = {"ZSTACK_DATA_DIR": str(data), "ZSTACK_AUTH": "users"}
    env.update({f"ZSTACK_ACCOUNTS__{k.upper()}": str(v) for k, v in FAST_PASSWORDS.items()})
    made = runner.invoke(
        app, ["user", "add", "root", "--admin", "--password-stdin"], input=FIRST + "\n", env=env
    )
    assert made.exit_code == 0, made.output
    assert (data / "zstack.db").is_file()
