"""The gallery's group filter: ``GET /api/images/search?group=NAME`` (in the query, with totals).

The filter narrows what the caller may see; it never widens it: a group the
caller cannot see into yields only what they could see anyway (their own images).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.service.conftest import upload
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient


def test_group_filter_narrows_search_and_its_total(
    tmp_path: Path,
    database_url: str | None,
    make_client: Callable[..., TestClient],
    tiff_file: Path,
) -> None:
    from zstack_analyzer.service.auth import accounts

    client = make_client(make_settings(tmp_path / "data", database_url=database_url, auth="users"))
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        accounts.create_group(session, "imaging", "read-only")
        accounts.create_group(session, "cryo", "read-only")
        accounts.create_group(session, "secret", "private")
        for name in ("ann", "ben"):
            accounts.create_user(session, name)
        accounts.set_membership(session, "imaging", "ann")
        accounts.set_membership(session, "cryo", "ann")
        accounts.set_membership(session, "secret", "ben")
        tokens = {name: accounts.create_token(session, name)[1] for name in ("ann", "ben")}

    def as_(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[name]}"}

    ids: dict[str, list[str]] = {"imaging": [], "cryo": [], "secret": []}
    for group, name, count in (("imaging", "ann", 2), ("cryo", "ann", 1), ("secret", "ben", 1)):
        for _ in range(count):
            answer = upload(client, tiff_file, params={"group": group}, headers=as_(name))
            assert answer.status_code == 201, answer.text
            ids[group].append(answer.json()["id"])

    def search(name: str, **params: str) -> tuple[set[str], int, set[str]]:
        body = client.get(
            "/api/images/search", params={**params, "limit": "1"}, headers=as_(name)
        ).json()
        everything = client.get(
            "/api/images/search", params={**params, "limit": "100"}, headers=as_(name)
        ).json()
        assert everything["count"] == body["count"]  # the total does not depend on the page
        return (
            {i["id"] for i in everything["data"]},
            body["count"],
            {i["group"] for i in everything["data"]},
        )

    assert search("ann") == (set(ids["imaging"] + ids["cryo"]), 3, {"imaging", "cryo"})
    assert search("ann", group="imaging") == (set(ids["imaging"]), 2, {"imaging"})
    assert search("ann", group="cryo") == (set(ids["cryo"]), 1, {"cryo"})
    # Not a member of "secret": the filter does not open it.
    assert search("ann", group="secret") == (set(), 0, set())
    assert search("ann", group="no-such-group") == (set(), 0, set())
    assert search("ben", group="secret") == (set(ids["secret"]), 1, {"secret"})
    # Combined with the other filters.
    assert search("ann", group="imaging", format="OME-TIFF")[1] == 2
    assert search("ann", group="imaging", format="CZI")[1] == 0
