"""``zstack user | group | token``: manage accounts in the server's database (``ZSTACK_AUTH=users``).

Why on the command line: the first admin must exist before anyone can log in,
and an operator on the server machine needs no running server. The commands
open the database the ``ZSTACK_*`` settings name (migrating it first) and call
the same functions as the admin routes (``service/auth/accounts.py``). A change
is seen at once by every server on the same data dir (``ZSTACK_DATA_DIR``): the
commit touches its accounts-changed marker (``service/auth/account_changes.py``).
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

__all__ = ["group_app", "token_app", "user_app"]

user_app = typer.Typer(help="Users (ZSTACK_AUTH=users).", no_args_is_help=True)
group_app = typer.Typer(help="Groups and memberships (ZSTACK_AUTH=users).", no_args_is_help=True)
token_app = typer.Typer(help="Personal API tokens (ZSTACK_AUTH=users).", no_args_is_help=True)


@contextlib.contextmanager
def _session() -> Iterator[Session]:
    """A session on the configured database; account errors exit 2 with their message."""
    from zstack_analyzer.service.auth.account_changes import AccountChanges
    from zstack_analyzer.service.auth.accounts import AccountError
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import make_engine, make_session_factory

    settings = get_settings()
    settings.accounts.apply_password_cost()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade_database(engine)
        sessions = make_session_factory(engine)
        # A running server's cached principals drop at once what this command changes.
        AccountChanges(settings.accounts_marker).watch(sessions)
        with sessions() as session:
            yield session
    except (AccountError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    finally:
        engine.dispose()


def _read_password(from_stdin: bool, *, confirm: bool = True) -> str:
    """A new password from one line of standard input, or asked twice without echo.

    It must follow the rule of every new password (the HTTP routes' too): from
    ``MIN_NEW_PASSWORD_CHARS`` to ``MAX_PASSWORD_CHARS`` characters.
    """
    from zstack_analyzer.service.auth.passwords import MAX_PASSWORD_CHARS, MIN_NEW_PASSWORD_CHARS

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            typer.echo("error: no password on standard input", err=True)
            raise typer.Exit(code=2)
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=confirm)
    if not MIN_NEW_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        typer.echo(
            f"error: a password must have {MIN_NEW_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} "
            f"characters (this one has {len(password)})",
            err=True,
        )
        raise typer.Exit(code=2)
    return password


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Username")],
    admin: Annotated[bool, typer.Option("--admin", help="An administrator")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="No local password (tokens or LDAP only)")
    ] = False,
    display_name: Annotated[str, typer.Option(help="Full name")] = "",
    email: Annotated[str | None, typer.Option(help="E-mail")] = None,
) -> None:
    """Create a user. The first admin adopts every image that has no owner yet."""
    from zstack_analyzer.service.auth import events
    from zstack_analyzer.service.auth.accounts import create_user

    password = None if no_password else _read_password(password_stdin)
    with _session() as session:
        user = create_user(
            session, name, password=password, admin=admin, display_name=display_name, email=email
        )
        events.emit("user_create", None, None, username=user.username, admin=admin)
    typer.echo(f"user {name} created{' (admin)' if admin else ''}")


@user_app.command("list")
def user_list() -> None:
    """Every user: name, admin, active, groups."""
    from sqlalchemy import select

    from zstack_analyzer.service.auth.accounts import principal_for_user
    from zstack_analyzer.service.auth.models import User

    with _session() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            principal = principal_for_user(session, user, via="cli")
            groups = ",".join(f"{r.name}:{r.role}" for r in principal.groups.values()) or "-"
            flags = ("admin " if user.is_admin else "") + ("" if user.is_active else "disabled")
            typer.echo(f"{user.username}\t{flags.strip() or '-'}\t{groups}")


@user_app.command("disable")
def user_disable(
    name: Annotated[str, typer.Argument(help="Username")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable again instead")] = False,
) -> None:
    """Disable a user: their sessions end, their API tokens are revoked, their password stops working.

    ``--enable`` lets the password work again; the revoked tokens stay revoked.
    """
    from zstack_analyzer.service.auth import events
    from zstack_analyzer.service.auth.accounts import change_user

    with _session() as session:
        change = change_user(session, name, active=enable)
        events.emit("user_update", None, None, username=name, changed=["is_active"])
        for token_id in change.revoked_tokens:
            events.emit("token_revoke", None, None, token_id=token_id, username=name)
    if enable:
        typer.echo(f"user {name} enabled")
    else:
        typer.echo(f"user {name} disabled; their sessions ended, their API tokens revoked")


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="Username")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Set a password and lift a lockout; the sessions end, the API tokens are revoked."""
    from zstack_analyzer.service.auth import events
    from zstack_analyzer.service.auth.accounts import change_user

    password = _read_password(password_stdin)
    with _session() as session:
        change = change_user(session, name, password=password)
        events.emit("user_update", None, None, username=name, password=True)
        for token_id in change.revoked_tokens:
            events.emit("token_revoke", None, None, token_id=token_id, username=name)
    typer.echo(f"password of {name} changed; their sessions ended, their API tokens revoked")


@group_app.command("add")
def group_add(
    name: Annotated[str, typer.Argument(help="Group name")],
    permissions: Annotated[
        str, typer.Option(help="private | read-only | read-annotate | read-write")
    ] = "private",
) -> None:
    """Create a group with one of OMERO's four permission levels."""
    from zstack_analyzer.service.auth import events
    from zstack_analyzer.service.auth.accounts import create_group

    with _session() as session:
        group = create_group(session, name, permissions)
        events.emit("group_create", None, None, group=name, permissions=group.permissions)
    typer.echo(f"group {name} created ({group.permissions})")


@group_app.command("member")
def group_member(
    group: Annotated[str, typer.Argument(help="Group name")],
    user: Annotated[str, typer.Argument(help="Username")],
    owner: Annotated[bool, typer.Option("--owner", help="A group owner (leader)")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Take the user out")] = False,
) -> None:
    """Add a user to a group (or change their role, or remove them)."""
    from zstack_analyzer.service.auth import events
    from zstack_analyzer.service.auth.accounts import set_membership

    with _session() as session:
        set_membership(session, group, user, owner=owner, remove=remove)
        action = "membership_remove" if remove else "membership_add"
        events.emit(action, None, None, group=group, username=user, owner=owner)
    if remove:
        typer.echo(f"{user} removed from {group}")
    else:
        typer.echo(f"{user} is {'an owner' if owner else 'a member'} of {group}")


@group_app.command("root")
def group_root(
    group: Annotated[str, typer.Argument(help="Group name")],
    path: Annotated[str, typer.Argument(help="Absolute folder on the server")],
    remove: Annotated[bool, typer.Option("--remove", help="Stop registrations under it")] = False,
) -> None:
    """Let the group's members register files under PATH in place (or stop it)."""
    from zstack_analyzer.service.auth import events
    from zstack_analyzer.service.auth.accounts import add_import_root, remove_import_root

    with _session() as session:
        if remove:
            remove_import_root(session, path)
            events.emit("import_root_remove", None, None, path=path)
            typer.echo(f"{path} is no longer an import root")
            return
        row = add_import_root(session, group, path)
        events.emit("import_root_add", None, None, group=group, path=row.path)
    typer.echo(f"members of {group} may register files under {row.path}")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Argument(help="Username")],
    name: Annotated[str, typer.Option(help="What the token is for")] = "cli",
    expires: Annotated[
        float | None, typer.Option(help="Days until it expires (default: never)")
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="May only read")] = False,
) -> None:
    """Create a personal API token and print it (only the token, once; it is stored hashed)."""
    from zstack_analyzer.service.auth import events
    from zstack_analyzer.service.auth.accounts import create_token

    with _session() as session:
        row, secret = create_token(
            session, user, name=name, expires_days=expires, read_only=read_only
        )
        events.emit("token_create", None, None, username=user, token_id=row.id)
    typer.echo(secret)
