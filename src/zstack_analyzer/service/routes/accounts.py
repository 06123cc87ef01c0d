"""Accounts over HTTP: login/logout/me, one's own password and tokens, admin routes, moving.

Why thin: every rule (names, levels, last admin, adoption, token hashing,
lockout) lives in ``service/auth/``; these routes parse, call, and answer.
``auth_router`` is included without the global guard (login must work
without credentials); everything else goes through ``auth.guard.authorize``.
No route tells the principal caches about a change: the commit itself does
(``auth/account_changes.py``), for every server process and for the CLI.
"""

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from sqlalchemy import select

from zstack_analyzer.service.auth import events
from zstack_analyzer.service.auth.accounts import (
    AccountConflictError,
    AccountError,
    AccountLockedError,
    AccountNotFoundError,
    WrongPasswordError,
)
from zstack_analyzer.service.auth.login import ClientThrottle, LoginPolicy
from zstack_analyzer.service.auth.models import ApiToken, Group, Membership, Permission, User
from zstack_analyzer.service.auth.permissions import Principal
from zstack_analyzer.service.auth.principal import (
    COOKIE_NAME,
    PrincipalDep,
    get_principal,
)
from zstack_analyzer.service.auth.schemas import (
    GroupCreate,
    GroupMembership,
    GroupPublic,
    GroupUpdate,
    ImportRootCreate,
    ImportRootPublic,
    LoginRequest,
    MemberPublic,
    MembershipUpdate,
    MePublic,
    MoveRequest,
    PasswordChange,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from zstack_analyzer.service.deps import DatabaseDep, RecordsDep, SessionDep
from zstack_analyzer.service.images_service import require_image, to_public
from zstack_analyzer.service.routes import problems
from zstack_analyzer.service.schemas import ImagePublic

__all__ = ["admin_router", "auth_router", "move_router", "tokens_router"]

auth_router = APIRouter(prefix="/api/auth", tags=["accounts"])
tokens_router = APIRouter(prefix="/api/tokens", tags=["accounts"])
admin_router = APIRouter(prefix="/api/admin", tags=["admin"])
move_router = APIRouter(prefix="/api/images", tags=["images"])


@contextlib.contextmanager
def account_errors() -> Iterator[None]:
    """Account errors as HTTP: 404 unknown, 409 conflict, 422 refused."""
    try:
        yield
    except AccountNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except AccountConflictError as exc:
        raise HTTPException(409, str(exc)) from None
    except AccountError as exc:
        raise HTTPException(422, str(exc)) from None


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _accounts_on(request: Request) -> None:
    if request.app.state.settings.auth_mode() != "users":
        msg = "accounts are off on this server (ZSTACK_AUTH=users turns them on)"
        raise HTTPException(409, msg)


def _me(principal: Principal) -> MePublic:
    return MePublic(
        username=principal.username,
        is_admin=principal.is_admin,
        groups=[
            GroupMembership(name=role.name, permissions=role.level, role=role.role)
            for role in principal.groups.values()
        ],
        read_only=principal.read_only,
        auth=principal.via,
        csrf_token=principal.csrf_token,
        password_changeable=principal.user_id is not None and principal.auth_source == "local",
    )


# --- login, logout, me ---------------------------------------------------------------


def _set_session_cookie(request: Request, response: Response, secret: str, *, max_age: int) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure over HTTPS (or as configured)."""
    secure = request.app.state.settings.accounts.cookie_secure
    if secure is None:
        secure = request.url.scheme == "https"
    response.set_cookie(
        COOKIE_NAME, secret, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
    )


def _login_throttle(request: Request) -> ClientThrottle:
    """The app's per-client throttle of password attempts (logins and own password changes)."""
    throttle: ClientThrottle | None = getattr(request.app.state, "login_throttle", None)
    if throttle is None:
        accounts = request.app.state.settings.accounts
        throttle = ClientThrottle(
            max_failures=accounts.client_max_failures, window_s=accounts.client_window_seconds
        )
        request.app.state.login_throttle = throttle
    return throttle


def _throttled(throttle: ClientThrottle, client: str, what: str) -> None:
    """429 with Retry-After while ``client`` has had too many failed password attempts."""
    wait = throttle.retry_after(client)
    if wait:
        msg = f"too many {what} from {client}; try again in {wait} s"
        raise HTTPException(429, msg, headers={"Retry-After": str(wait)})


def _login_policy(request: Request) -> LoginPolicy:
    """The account lockout (``accounts.max_failed_logins``, ``accounts.lockout_minutes``)."""
    accounts = request.app.state.settings.accounts
    return LoginPolicy(
        max_failures=accounts.max_failed_logins,
        lockout=timedelta(minutes=accounts.lockout_minutes),
    )


def _renew_own_session(request: Request, response: Response, session: Any, cookie: str) -> None:
    """After one's own password change: the session making it gets a new id (a new cookie)."""
    from zstack_analyzer.service.auth.sessions import renew_session

    renewed = renew_session(session, cookie)
    if renewed is not None:
        secret, expires_at = renewed
        left = (expires_at - datetime.now(UTC)).total_seconds()
        _set_session_cookie(request, response, secret, max_age=max(int(left), 0))
        response.headers["Cache-Control"] = "no-store"


@auth_router.post(
    "/login",
    response_model=MePublic,
    summary="Log in with username and password; sets the session cookie",
    responses=problems(401, 409, 422, 429),
)
async def login(
    body: LoginRequest, request: Request, response: Response, database: DatabaseDep
) -> MePublic:
    """A new session (HttpOnly, SameSite=Lax cookie; Secure over HTTPS) and its CSRF token.

    A wrong password, an unknown user, a disabled or a locked account all
    answer the same 401. Too many failures from one address: 429.
    """
    from zstack_analyzer.service.auth.accounts import principal_for_user
    from zstack_analyzer.service.auth.login import authenticate_password
    from zstack_analyzer.service.auth.sessions import start_session

    _accounts_on(request)
    accounts = request.app.state.settings.accounts
    throttle = _login_throttle(request)
    client = _client(request)
    _throttled(throttle, client, "failed logins")
    policy = _login_policy(request)

    def check(session: Any) -> tuple[str, Principal] | None:
        user = authenticate_password(
            session,
            body.username,
            body.password,
            client,
            policy=policy,
            # LDAP (ZSTACK_LDAP__URL) adds its authenticator per app (auth/ldap_login.py).
            authenticators=getattr(request.app.state, "authenticators", None),
        )
        if user is None:
            return None
        secret, row = start_session(
            session,
            user.id,
            hours=accounts.session_hours,
            client=client,
            previous=request.cookies.get(COOKIE_NAME),
        )
        return secret, principal_for_user(session, user, via="session", csrf_token=row.csrf_token)

    result = await database.run(check)
    if result is None:
        throttle.failed(client)
        events.emit("login_failed", None, request, username=body.username[:150])
        msg = "wrong username or password"
        raise HTTPException(401, msg, headers={"WWW-Authenticate": "Bearer"})
    secret, principal = result
    _set_session_cookie(request, response, secret, max_age=int(accounts.session_hours * 3600))
    response.headers["Cache-Control"] = "no-store"
    events.emit("login", principal, request)
    return _me(principal)


@auth_router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End the session (server-side) and clear the cookie",
    responses={204: {"description": "Logged out"}, **problems(401, 403)},
)
async def logout(request: Request, database: DatabaseDep, principal: PrincipalDep) -> Response:
    """The session row is deleted, so the cookie is worthless even if kept."""
    from zstack_analyzer.service.auth.sessions import end_session

    cookie = request.cookies.get(COOKIE_NAME)
    if cookie and principal.via == "session":
        await database.run(end_session, cookie)
        events.emit("logout", principal, request)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax")
    return response


@auth_router.post(
    "/password",
    response_model=MePublic,
    summary="Change your own password (the current one first); your other sessions end",
    responses=problems(401, 403, 409, 422, 429),
)
def change_password(
    body: PasswordChange,
    request: Request,
    response: Response,
    principal: PrincipalDep,  # first: an anonymous caller is refused before the database
    session: SessionDep,
) -> MePublic:
    """Your new password; the session making the change stays, under a new id (new cookie).

    The current password is checked like a login (argon2id), and a wrong one
    counts toward the account's lockout and the client's throttle, so a stolen
    session cannot be used to guess the password: 403 ``forbidden`` (not 401:
    the session is valid, and 401 would send the viewer to its login page),
    429 once the account is locked or the address throttled. The new password
    follows the rule of every password set over HTTP (8 to 1024 characters;
    422). Your other sessions end at once in every server process; your API
    tokens stay (you proved the password; an admin's reset revokes them). A
    directory (LDAP) account is refused with 409: its password is changed in
    the directory.

    Only a session may do it (the viewer, or ``POST /api/auth/login``); an API
    token is refused with 403. A token is a credential for scripts, often kept
    in files and CI settings: a leaked one must not become a way to take the
    account over, nor to lock its owner out by failing on purpose. Changing a
    password is the person's own act; an admin may still set one for anyone
    (``PATCH /api/admin/users/{name}``).
    """
    from zstack_analyzer.service.auth.accounts import change_own_password

    _accounts_on(request)
    cookie = request.cookies.get(COOKIE_NAME)
    if principal.via != "session" or principal.user_id is None or not cookie:
        msg = (
            "change your password in a logged-in session (the viewer, or POST /api/auth/login); "
            "an API token cannot change it"
        )
        raise HTTPException(403, msg)
    throttle = _login_throttle(request)
    client = _client(request)
    _throttled(throttle, client, "failed password attempts")
    with account_errors():
        try:
            change_own_password(
                session,
                principal.username,
                body.current_password,
                body.new_password,
                client=client,
                policy=_login_policy(request),
                keep_session=cookie,
            )
        except WrongPasswordError as exc:
            throttle.failed(client)
            events.emit("password_change_failed", principal, request)
            raise HTTPException(403, str(exc)) from None
        except AccountLockedError as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            raise HTTPException(429, str(exc), headers=headers) from None
    _renew_own_session(request, response, session, cookie)
    events.emit("password_change", principal, request)
    return _me(principal)


@auth_router.get(
    "/me",
    response_model=MePublic,
    summary="Who you are: username, admin flag, groups with level and role, CSRF token",
    responses=problems(401),
)
async def me(principal: PrincipalDep, response: Response) -> MePublic:
    """The caller as the permission checks see them."""
    response.headers["Cache-Control"] = "no-store"
    return _me(principal)


# --- one's own tokens -------------------------------------------------------------------


def _user_id(principal: Principal) -> int:
    if principal.user_id is None:
        msg = "personal tokens need ZSTACK_AUTH=users and a user"
        raise HTTPException(409, msg)
    return principal.user_id


@tokens_router.get(
    "", response_model=list[TokenPublic], summary="Your API tokens", responses=problems(401, 409)
)
def list_tokens(session: SessionDep, principal: PrincipalDep) -> list[TokenPublic]:
    """Your tokens, newest first (revoked ones too; never their secrets)."""
    rows = session.scalars(
        select(ApiToken)
        .where(ApiToken.user_id == _user_id(principal))
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all()
    return [TokenPublic.model_validate(row) for row in rows]


@tokens_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    summary="Create an API token for yourself (its secret is shown once)",
    responses=problems(401, 403, 409, 422),
)
def create_own_token(
    body: TokenCreate, request: Request, session: SessionDep, principal: PrincipalDep
) -> TokenCreated:
    """A new token with your rights (or fewer: ``read_only``)."""
    from zstack_analyzer.service.auth.accounts import create_token

    _user_id(principal)
    with account_errors():
        row, secret = create_token(
            session,
            principal.username,
            name=body.name,
            expires_days=body.expires_days,
            read_only=body.read_only,
        )
    events.emit("token_create", principal, request, token_id=row.id)
    return TokenCreated.model_validate(
        {**TokenPublic.model_validate(row).model_dump(), "token": secret}
    )


@tokens_router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Revoke one of your API tokens",
    responses={204: {"description": "Revoked"}, **problems(401, 403, 404, 409)},
)
def revoke_own_token(
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> Response:
    """Refused at once by every server process sharing the data dir (``auth/account_changes.py``)."""
    from zstack_analyzer.service.auth.accounts import revoke_token

    with account_errors():
        revoke_token(session, token_id, user_id=_user_id(principal))
    events.emit("token_revoke", principal, request, token_id=token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- admin ---------------------------------------------------------------------------


async def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> None:
    """403 unless the caller is an admin."""
    if not principal.is_admin:
        msg = "admins only"
        raise HTTPException(403, msg)


AdminDep = [Depends(require_admin)]


def _groups_of(session: Any, user_ids: list[int]) -> dict[int, list[GroupMembership]]:
    rows = session.execute(
        select(Membership.user_id, Group.name, Group.permissions, Membership.is_owner)
        .join(Group, Group.id == Membership.group_id)
        .where(Membership.user_id.in_(user_ids))
        .order_by(Membership.created_at, Group.id)
    ).all()
    found: dict[int, list[GroupMembership]] = {}
    for user_id, name, level, is_owner in rows:
        found.setdefault(user_id, []).append(
            GroupMembership(
                name=name, permissions=Permission(level), role="owner" if is_owner else "member"
            )
        )
    return found


def _user_public(session: Any, user: User) -> UserPublic:
    public = UserPublic.model_validate(user)
    public.groups = _groups_of(session, [user.id]).get(user.id, [])
    return public


@admin_router.get(
    "/users",
    response_model=list[UserPublic],
    dependencies=AdminDep,
    summary="Every user with their groups",
    responses=problems(401, 403),
)
def admin_list_users(session: SessionDep) -> list[UserPublic]:
    """Users by name."""
    users = session.scalars(select(User).order_by(User.username)).all()
    groups = _groups_of(session, [u.id for u in users])
    out = []
    for user in users:
        public = UserPublic.model_validate(user)
        public.groups = groups.get(user.id, [])
        out.append(public)
    return out


@admin_router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    dependencies=AdminDep,
    summary="Create a user",
    responses=problems(401, 403, 409, 422),
)
def admin_create_user(
    body: UserCreate, request: Request, session: SessionDep, principal: PrincipalDep
) -> UserPublic:
    """A new active user (without a password: token or LDAP only)."""
    from zstack_analyzer.service.auth.accounts import create_user

    with account_errors():
        user = create_user(
            session,
            body.username,
            password=body.password,
            admin=body.is_admin,
            display_name=body.display_name,
            email=body.email,
        )
    events.emit("user_create", principal, request, username=user.username, admin=user.is_admin)
    return _user_public(session, user)


@admin_router.patch(
    "/users/{username}",
    response_model=UserPublic,
    dependencies=AdminDep,
    summary="Change a user: password, active, admin, display name, e-mail",
    responses=problems(401, 403, 404, 422),
)
def admin_update_user(
    username: str,
    body: UserUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
) -> UserPublic:
    """Disabling a user ends their sessions and revokes their API tokens for good.

    Enabling the user again brings neither back: the person logs in and makes
    new tokens. A new password ends every session of the user at once, in
    every server process, and revokes their API tokens (a reset presumes the
    account compromised). An admin changing their own password keeps their
    tokens and the session making the change, which gets a new id (a new
    cookie in this answer; the CSRF token stays). Each revoked token is a
    ``token_revoke`` event in the audit trail.
    """
    from zstack_analyzer.service.auth.accounts import change_user

    own = principal.user_id is not None and principal.username == username
    cookie = request.cookies.get(COOKIE_NAME) if own and principal.via == "session" else None
    with account_errors():
        change = change_user(
            session,
            username,
            password=body.password,
            active=body.is_active,
            admin=body.is_admin,
            display_name=body.display_name,
            email=body.email,
            keep_session=cookie,
            keep_tokens=own,
        )
    if body.password is not None and cookie:
        _renew_own_session(request, response, session, cookie)
    changed = sorted(k for k, v in body.model_dump(exclude={"password"}).items() if v is not None)
    events.emit(
        "user_update",
        principal,
        request,
        username=username,
        changed=changed,
        password=body.password is not None,
    )
    for token_id in change.revoked_tokens:
        events.emit("token_revoke", principal, request, token_id=token_id, username=username)
    return _user_public(session, change.user)


def _group_public(session: Any, group: Group) -> GroupPublic:
    members = session.execute(
        select(User.username, Membership.is_owner)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.group_id == group.id)
        .order_by(User.username)
    ).all()
    return GroupPublic(
        id=group.id,
        name=group.name,
        permissions=Permission(group.permissions),
        members=[MemberPublic(username=u, role="owner" if o else "member") for u, o in members],
    )


@admin_router.get(
    "/groups",
    response_model=list[GroupPublic],
    dependencies=AdminDep,
    summary="Every group with its level and members",
    responses=problems(401, 403),
)
def admin_list_groups(session: SessionDep) -> list[GroupPublic]:
    """Groups by name."""
    groups = session.scalars(select(Group).order_by(Group.name)).all()
    return [_group_public(session, group) for group in groups]


@admin_router.post(
    "/groups",
    status_code=status.HTTP_201_CREATED,
    response_model=GroupPublic,
    dependencies=AdminDep,
    summary="Create a group with a permission level",
    responses=problems(401, 403, 409, 422),
)
def admin_create_group(
    body: GroupCreate, request: Request, session: SessionDep, principal: PrincipalDep
) -> GroupPublic:
    """A new, empty group."""
    from zstack_analyzer.service.auth.accounts import create_group

    with account_errors():
        group = create_group(session, body.name, body.permissions.value)
    events.emit("group_create", principal, request, group=group.name, permissions=group.permissions)
    return _group_public(session, group)


@admin_router.patch(
    "/groups/{name}",
    response_model=GroupPublic,
    dependencies=AdminDep,
    summary="Change a group's permission level",
    responses=problems(401, 403, 404, 422),
)
def admin_update_group(
    name: str, body: GroupUpdate, request: Request, session: SessionDep, principal: PrincipalDep
) -> GroupPublic:
    """Takes effect on the members' next request, in every server process."""
    from zstack_analyzer.service.auth.accounts import update_group

    with account_errors():
        group = update_group(session, name, permissions=body.permissions.value)
    events.emit("group_update", principal, request, group=name, permissions=group.permissions)
    return _group_public(session, group)


@admin_router.delete(
    "/groups/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=AdminDep,
    summary="Delete an empty group",
    responses={204: {"description": "Deleted"}, **problems(401, 403, 404, 409)},
)
def admin_delete_group(
    name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """A group that still holds images is refused (409)."""
    from zstack_analyzer.service.auth.accounts import delete_group

    with account_errors():
        delete_group(session, name)
    events.emit("group_delete", principal, request, group=name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.put(
    "/groups/{name}/members/{username}",
    response_model=GroupPublic,
    dependencies=AdminDep,
    summary="Add a user to a group, or change their role (owner or member)",
    responses=problems(401, 403, 404, 422),
)
def admin_put_member(
    name: str,
    username: str,
    body: MembershipUpdate,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> GroupPublic:
    """Idempotent: the membership ends up with the given role."""
    from zstack_analyzer.service.auth.accounts import find_group, set_membership

    with account_errors():
        set_membership(session, name, username, owner=body.is_owner)
        group = find_group(session, name)
    events.emit(
        "membership_add", principal, request, group=name, username=username, owner=body.is_owner
    )
    return _group_public(session, group)


@admin_router.delete(
    "/groups/{name}/members/{username}",
    response_model=GroupPublic,
    dependencies=AdminDep,
    summary="Remove a user from a group (their images stay in it)",
    responses=problems(401, 403, 404),
)
def admin_remove_member(
    name: str, username: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> GroupPublic:
    """The user keeps their own images in the group (an owner always sees their own)."""
    from zstack_analyzer.service.auth.accounts import find_group, set_membership

    with account_errors():
        set_membership(session, name, username, remove=True)
        group = find_group(session, name)
    events.emit("membership_remove", principal, request, group=name, username=username)
    return _group_public(session, group)


@admin_router.get(
    "/import-roots",
    response_model=list[ImportRootPublic],
    dependencies=AdminDep,
    summary="Folders each group's members may register files from",
    responses=problems(401, 403),
)
def admin_list_roots(session: SessionDep) -> list[ImportRootPublic]:
    """Group import roots (``ZSTACK_IMPORT_ROOTS`` is for admins, into ``default``)."""
    from zstack_analyzer.service.auth.accounts import group_roots

    return [ImportRootPublic(path=str(r.path), group=r.group) for r in group_roots(session)]


@admin_router.post(
    "/import-roots",
    status_code=status.HTTP_201_CREATED,
    response_model=ImportRootPublic,
    dependencies=AdminDep,
    summary="Let a group's members register files under a folder",
    responses=problems(401, 403, 404, 409, 422),
)
def admin_add_root(
    body: ImportRootCreate, request: Request, session: SessionDep, principal: PrincipalDep
) -> ImportRootPublic:
    """The path is stored resolved (symlinks and ``..``)."""
    from zstack_analyzer.service.auth.accounts import add_import_root

    with account_errors():
        row = add_import_root(session, body.group, body.path)
    events.emit("import_root_add", principal, request, group=body.group, path=row.path)
    return ImportRootPublic(path=row.path, group=body.group)


@admin_router.delete(
    "/import-roots",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=AdminDep,
    summary="Stop registrations under a folder (records stay)",
    responses={204: {"description": "Removed"}, **problems(401, 403, 404, 422)},
)
def admin_remove_root(
    path: Annotated[str, Query(min_length=1, max_length=4096)],
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> Response:
    """Records registered from it stay where they are."""
    from zstack_analyzer.service.auth.accounts import remove_import_root

    with account_errors():
        remove_import_root(session, path)
    events.emit("import_root_remove", principal, request, path=path)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- moving an image between groups ----------------------------------------------------


@move_router.patch(
    "/{image_id}",
    response_model=ImagePublic,
    summary="Move an image to another group (its owner, a member of both; or an admin)",
    responses=problems(401, 403, 404, 422),
)
def move_image(
    image_id: str,
    body: MoveRequest,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    records: RecordsDep,
) -> ImagePublic:
    """The guard has checked the caller may change the image; here: owner and both groups."""
    from zstack_analyzer.service.auth.placement import choose_group

    image = require_image(session, image_id)
    if not principal.is_admin:
        if image.owner_id != principal.user_id:
            msg = "only the image's owner (or an admin) may move it to another group"
            raise HTTPException(403, msg)
        if principal.member_of(image.group_id) is None:
            msg = "you must belong to the image's current group to move it"
            raise HTTPException(403, msg)
    target = choose_group(session, principal, body.group)
    previous = image.group_id
    image.group_id = target.group_id
    session.commit()
    # Other server processes' memos must not show the image to its old group any longer.
    records.mark_changed(image_id)
    events.emit(
        "move", principal, request, image_id=str(image.id), from_group=previous, group=target.group
    )
    from zstack_analyzer.service.auth.labels import labels_for

    return to_public(image, labels_for(session, [image]))
