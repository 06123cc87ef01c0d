"""A move to another group is seen at once by every server process sharing the data dir.

Why: the picture routes' guard checks a VIEW against a per-process memo of the image row
(``RecordMemo``, 5 s). A delete was seen at once through its tombstone, but a move was not:
another server process kept showing a moved image to its *old* group until the memo expired.
Two apps on one database and one data dir stand for two server processes here; the second
one's memo is made long-lived so the test does not depend on how fast the machine is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tests.service.authworld import FAST_PASSWORDS, PASSWORD
from tests.service.conftest import upload, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.service.config import AccountSettings

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest
    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

Headers = dict[str, str]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _settings(tmp_path: Path) -> Settings:
    settings = make_settings(
        tmp_path / "data", auth="users", accounts=AccountSettings(**FAST_PASSWORDS)
    )
    settings.render.thumbnail_on_upload = False
    return settings


def _shared_image(client: TestClient, tmp_path: Path) -> tuple[str, Headers, Headers]:
    """alice and bob in read-only g-shared, alice also in private g-private; alice's image
    in g-shared. The image's id, alice's and bob's headers."""
    from zstack_analyzer.service.auth import accounts

    with client.app.state.database.sessions() as session:
        accounts.create_group(session, "g-shared", "read-only")
        accounts.create_group(session, "g-private", "private")
        for name in ("alice", "bob"):
            accounts.create_user(session, name, password=PASSWORD)
            accounts.set_membership(session, "g-shared", name)
        accounts.set_membership(session, "g-private", "alice")
        alice = _bearer(accounts.create_token(session, "alice", name="t")[1])
        bob = _bearer(accounts.create_token(session, "bob", name="t")[1])
    created = upload(
        client, write_ome_tiff(tmp_path / "a.ome.tif"), headers=alice, params={"group": "g-shared"}
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], alice, bob


def test_a_move_into_a_private_group_hides_the_image_in_every_process(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    settings = _settings(tmp_path)
    first = make_client(settings)
    second = make_client(settings)
    second.app.state.records.ttl_s = 3600.0  # only the marker may end its memo entry
    image_id, alice, bob = _shared_image(first, tmp_path)
    thumbnail = f"/api/images/{image_id}/thumbnail"
    # bob sees it through the second process, which now has the row memoised.
    assert second.get(f"/api/images/{image_id}", headers=bob).status_code == 200
    assert second.get(thumbnail, headers=bob).status_code == 200

    moved = first.patch(f"/api/images/{image_id}", json={"group": "g-private"}, headers=alice)
    assert moved.status_code == 200, moved.text
    assert moved.json()["group"] == "g-private"

    # The second process refuses bob at once, on the memoised route as on the others.
    assert second.get(thumbnail, headers=bob).status_code == 404
    assert second.get(f"/api/images/{image_id}", headers=bob).status_code == 404
    # alice, in the new group, still sees it there.
    assert second.get(thumbnail, headers=alice).status_code == 200


def test_a_committed_move_whose_marker_cannot_be_written_answers_its_success(
    tmp_path: Path, make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    """The move is committed: 200 and an ERROR naming the marker, never a 500.

    The marker's path leads through a regular file (ENOTDIR), as on a data dir gone
    read-only or full; the moving process itself no longer serves its memoised row.
    """
    client = make_client(_settings(tmp_path))
    client.app.state.records.ttl_s = 3600.0
    image_id, alice, bob = _shared_image(client, tmp_path)
    thumbnail = f"/api/images/{image_id}/thumbnail"
    assert client.get(thumbnail, headers=bob).status_code == 200  # memoised
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    marker = client.app.state.records.deleted_dir / f"{image_id}.changed"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.symlink_to(blocker / "marker")

    with caplog.at_level(logging.ERROR, logger="zstack_analyzer.service.images_service"):
        moved = client.patch(f"/api/images/{image_id}", json={"group": "g-private"}, headers=alice)
    assert moved.status_code == 200, moved.text
    assert moved.json()["group"] == "g-private"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(str(marker) in e and "cannot be written" in e for e in errors), errors
    assert client.get(thumbnail, headers=bob).status_code == 404
