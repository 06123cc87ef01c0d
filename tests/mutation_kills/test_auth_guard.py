"""The image guard of the routers (``service/auth/guard.py``) on a small app over a real database.

Why a small app: the answer depends on the route's method and mark, the image row and
the caller, so routes of each kind (view, change, annotate, view-only change) under
``/api/images/{image_id}`` show each rule exactly. The caller is given through FastAPI's
own dependency override of ``get_principal`` (its resolution from credentials is
``principal.py``'s and tested in ``test_principal.py``); the app's real error handlers,
record memo and database answer.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import update

from tests.mutation_kills.service_db import _template, add_group, add_image, add_user
from tests.service.conftest import _testclient_class
from zstack_analyzer.service.auth.guard import (
    ACTION_ATTRIBUTE,
    action_of,
    annotates,
    authorize,
    image_action,
)
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import Action, GroupRole, Principal
from zstack_analyzer.service.auth.principal import get_principal
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.session import Database, make_engine
from zstack_analyzer.service.errors import install_error_handlers
from zstack_analyzer.service.images_service import RecordMemo

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

UNKNOWN = "00000000-0000-0000-0000-000000000000"


def test_action_of_methods_and_marks() -> None:
    for method in ("GET", "HEAD", "OPTIONS"):
        assert action_of(method) is Action.VIEW
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert action_of(method) is Action.CHANGE
        assert action_of(method, object()) is Action.CHANGE

    def plain() -> None: ...

    @annotates
    def tagged() -> None: ...

    @image_action(Action.VIEW)
    def unlinked() -> None: ...

    assert ACTION_ATTRIBUTE == "image_action"
    assert getattr(tagged, "image_action") is Action.ANNOTATE  # noqa: B009
    assert getattr(unlinked, "image_action") is Action.VIEW  # noqa: B009
    route = type("Route", (), {})
    for endpoint, expected in (
        (plain, Action.CHANGE),
        (tagged, Action.ANNOTATE),
        (unlinked, Action.VIEW),
    ):
        matched = route()
        matched.endpoint = endpoint
        assert action_of("POST", matched) is expected
        assert action_of("GET", matched) is Action.VIEW  # a safe method only views
    # A mark that is not an Action is ignored.
    odd = route()
    odd.endpoint = type("E", (), {"image_action": "view"})()
    assert action_of("DELETE", odd) is Action.CHANGE


def _app(database: Database, who: dict[str, Principal]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.database = database
    app.state.records = RecordMemo(ttl_s=600)

    def caller(request: Request) -> Principal:
        return who[request.headers["x-who"]]

    app.dependency_overrides[get_principal] = caller
    router = APIRouter(prefix="/api/images", dependencies=[Depends(authorize)])

    @router.get("/{image_id}")
    def view(image_id: str) -> dict[str, str]:
        return {"viewed": image_id}

    @router.post("/{image_id}/change")
    def change(image_id: str) -> dict[str, str]:
        return {"changed": image_id}

    @router.put("/{image_id}/tags")
    @annotates
    def tag(image_id: str) -> dict[str, str]:
        return {"tagged": image_id}

    @router.delete("/{image_id}/link")
    @image_action(Action.VIEW)
    def unlink(image_id: str) -> dict[str, str]:
        return {"unlinked": image_id}

    @router.post("/lookup")
    def lookup(request: Request) -> dict[str, str]:
        return {"who": request.headers["x-who"]}

    app.include_router(router)
    return app


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, Any], Database]]:
    path = tmp_path / "zstack.db"
    shutil.copyfile(_template(), path)
    database = Database(make_engine(f"sqlite:///{path}"))
    with database.sessions() as session:
        groups = {level: add_group(session, f"g-{level.value}", level) for level in Permission}
        owner = add_user(session, "olivia", dict.fromkeys(groups.values(), False))
        images = {
            level: str(add_image(session, f"{level.value}.tif", owner_id=owner, group_id=gid))
            for level, gid in groups.items()
        }
    member_groups = {
        gid: GroupRole(gid, f"g-{level.value}", level) for level, gid in groups.items()
    }
    who = {
        "member": Principal(user_id=1000, username="member", groups=member_groups, via="session"),
        "owner": Principal(user_id=owner, username="olivia", via="session"),
        "stranger": Principal(user_id=1001, username="stranger", via="session"),
        "admin": Principal(user_id=1002, username="root", is_admin=True, via="session"),
        "ro-admin": Principal(
            user_id=1002, username="root", is_admin=True, read_only=True, via="api-token"
        ),
    }
    with _testclient_class()(_app(database, who)) as client:
        yield client, {"images": images, "groups": groups}, database
    database.engine.dispose()


def _do(client: TestClient, role: str, what: str, image_id: str) -> Any:
    headers = {"x-who": role}
    if what == "view":
        return client.get(f"/api/images/{image_id}", headers=headers)
    if what == "change":
        return client.post(f"/api/images/{image_id}/change", headers=headers)
    if what == "annotate":
        return client.put(f"/api/images/{image_id}/tags", headers=headers)
    return client.delete(f"/api/images/{image_id}/link", headers=headers)


MEMBER = {  # level -> status of view, change, annotate, unlink for a plain member
    Permission.PRIVATE: (404, 404, 404, 404),
    Permission.READ_ONLY: (200, 403, 403, 200),
    Permission.READ_ANNOTATE: (200, 403, 200, 200),
    Permission.READ_WRITE: (200, 200, 200, 200),
}
WHATS = ("view", "change", "annotate", "unlink")


def test_members_by_level_owners_strangers_and_admins(
    guarded: tuple[TestClient, dict[str, Any], Database],
) -> None:
    client, world, _ = guarded
    for level, codes in MEMBER.items():
        image_id = world["images"][level]
        got = tuple(_do(client, "member", what, image_id).status_code for what in WHATS)
        assert got == codes, level
        for what in WHATS:
            assert _do(client, "owner", what, image_id).status_code == 200
            assert _do(client, "admin", what, image_id).status_code == 200
            assert _do(client, "stranger", what, image_id).status_code == 404
    ok = _do(client, "member", "change", world["images"][Permission.READ_WRITE])
    assert ok.json() == {"changed": world["images"][Permission.READ_WRITE]}
    # Routes without an image id are not checked here.
    assert client.post("/api/images/lookup", headers={"x-who": "stranger"}).json() == {
        "who": "stranger"
    }


def test_refusals_say_what_and_do_not_disclose(
    guarded: tuple[TestClient, dict[str, Any], Database],
) -> None:
    client, world, _ = guarded
    private = world["images"][Permission.PRIVATE]
    hidden = _do(client, "stranger", "change", private)
    unknown = _do(client, "stranger", "change", UNKNOWN)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["detail"] == f"no image with id {private!r}"
    assert unknown.json()["detail"] == f"no image with id {UNKNOWN!r}"
    assert hidden.json()["code"] == unknown.json()["code"] == "image_not_found"
    assert _do(client, "stranger", "view", private).json()["detail"] == (
        f"no image with id {private!r}"
    )
    read_only = world["images"][Permission.READ_ONLY]
    answer = _do(client, "member", "change", read_only)
    assert answer.json()["detail"] == f"you may see image {read_only} but not change it"
    answer = _do(client, "member", "annotate", read_only)
    assert answer.json()["detail"] == f"you may see image {read_only} but not annotate it"
    assert _do(client, "member", "view", UNKNOWN).status_code == 404


def test_admins_pass_even_for_unknown_ids_but_read_only_tokens_do_not_change(
    guarded: tuple[TestClient, dict[str, Any], Database],
) -> None:
    client, world, _ = guarded
    # An admin is not checked here: an unknown id is the route's own business.
    assert _do(client, "admin", "change", UNKNOWN).json() == {"changed": UNKNOWN}
    assert _do(client, "admin", "view", UNKNOWN).json() == {"viewed": UNKNOWN}
    image_id = world["images"][Permission.PRIVATE]
    assert _do(client, "ro-admin", "view", image_id).status_code == 200


def test_changes_see_the_row_as_it_is_now(
    guarded: tuple[TestClient, dict[str, Any], Database],
) -> None:
    client, world, database = guarded
    image_id = world["images"][Permission.READ_WRITE]
    assert _do(client, "member", "view", image_id).status_code == 200  # memoised now
    with database.sessions() as session:
        session.execute(
            update(Image)
            .where(Image.group_id == world["groups"][Permission.READ_WRITE])
            .values(group_id=world["groups"][Permission.PRIVATE])
        )
        session.commit()
    # A change reads the row afresh: the image is private now, so not even seen.
    assert _do(client, "member", "change", image_id).status_code == 404
    assert _do(client, "member", "annotate", image_id).status_code == 404
    # A view may use the memo (a few seconds of staleness for pictures).
    assert _do(client, "member", "view", image_id).status_code == 200
