"""A started users-mode service with people, groups and tokens, for route tests over HTTP.

Why one builder: the container, ROI and annotation route tests each need the same kind
of lab (an admin, members of groups at OMERO's levels, an outsider, each with a bearer
token, images uploaded into a group); each says only who is in which group.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from tests.service.conftest import _testclient_class
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

Headers = dict[str, str]


@contextlib.contextmanager
def users_app(
    tmp_path: Path,
    groups: Mapping[str, tuple[str, Mapping[str, bool]]],
    configure: Callable[[Settings], None] | None = None,
) -> Iterator[tuple[TestClient, dict[str, Headers]]]:
    """The app (no thumbnail on upload), and each person's ``Authorization`` header.

    ``groups``: name -> (its level, its members: username -> is owner). ``root`` is an
    admin; everyone else named there is a plain user, made in the order first named.
    ``configure`` changes the settings (a test's own bounds) before the app is made.
    """
    from zstack_analyzer.service.app import create_app
    from zstack_analyzer.service.auth import accounts

    people = ["root"]
    for _level, members in groups.values():
        people += [name for name in members if name not in people]
    settings = make_settings(tmp_path / "data", auth="users")
    settings.render.thumbnail_on_upload = False
    if configure is not None:
        configure(settings)
    with _testclient_class()(create_app(settings)) as client:
        app: Any = client.app
        with app.state.database.sessions() as session:
            accounts.create_user(session, "root", admin=True)
            for name in people[1:]:
                accounts.create_user(session, name)
            for group, (level, members) in groups.items():
                accounts.create_group(session, group, level)
                for name, owner in members.items():
                    accounts.set_membership(session, group, name, owner=owner)
            tokens = {
                name: {"Authorization": f"Bearer {accounts.create_token(session, name)[1]}"}
                for name in people
            }
        yield client, tokens


def upload_into(client: TestClient, headers: Headers, path: Path, name: str, group: str) -> str:
    """Upload ``path`` as ``name`` into ``group``; the new image's id (201 asserted)."""
    with path.open("rb") as fh:
        made = client.post(
            "/api/images/upload",
            files={"file": (name, fh)},
            params={"group": group},
            headers=headers,
        )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])
