"""``GET /api/images/search`` over HTTP: the 422 details name the parameter, bare dates are days.

Why: a client (the gallery, a script) shows the problem's detail; it must start with the
name of the parameter at fault, as the query spells it. And ``acquired_after=2013-01-15``
includes images acquired during that day (a bare date is its start), while
``acquired_before`` includes the whole day. The image is a real OME-TIFF of the shared
corpus acquired 2013-01-15T17:02:40Z.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.test_zarr_store_routes import _start
from tests.service.conftest import upload

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

ACQUIRED_2013_01_15 = "ome-tiff/largeimg.ome.tiff"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _start(tmp_path / "data") as started:
        yield started


def _detail(client: TestClient, **params: Any) -> str:
    answer = client.get("/api/images/search", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return str(answer.json()["detail"])


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"min_size_z": 3, "max_size_z": 2}, "min_size_z/max_size_z: the minimum is greater"),
        (
            {"pixel_size_min_um": 0.5, "pixel_size_max_um": 0.25},
            "pixel_size_min_um/pixel_size_max_um: the minimum is greater",
        ),
        (
            {"acquired_after": "2024-01-03", "acquired_before": "2024-01-01"},
            "acquired_after/acquired_before: the minimum is greater",
        ),
        ({"acquired_after": "soon"}, "acquired_after: expected an ISO date or datetime"),
        ({"acquired_before": "2024-02-30"}, "acquired_before: expected an ISO date or datetime"),
        # A pair that is only control characters is no pair (not "any image with a key").
        ({"kv": "\x01\x02"}, "kv: expected KEY:VALUE (or KEY), got ''"),
    ],
)
def test_details_start_with_the_parameter(
    client: TestClient, params: dict[str, Any], detail: str
) -> None:
    assert _detail(client, **params).startswith(detail)


def test_bare_dates_are_whole_days(client: TestClient, testdata: Path) -> None:
    answer = upload(client, testdata / ACQUIRED_2013_01_15)
    assert answer.status_code == 201, answer.text
    image_id = answer.json()["id"]

    def found(**params: str) -> bool:
        response = client.get("/api/images/search", params=params)
        assert response.status_code == 200, response.text
        return image_id in {item["id"] for item in response.json()["data"]}

    assert found(acquired_after="2013-01-15")  # that day, from its start
    assert not found(acquired_after="2013-01-16")
    assert found(acquired_before="2013-01-15")  # that day included
    assert not found(acquired_before="2013-01-14")
    assert found(acquired_after="2013-01-15", acquired_before="2013-01-15")
    assert found(acquired_after="2013-01-15T17:02:40Z")
    assert not found(acquired_after="2013-01-15T17:02:41Z")


def test_group_and_dataset_filters_see_what_the_caller_may(tmp_path: Path, testdata: Path) -> None:
    """With accounts: ``group=`` narrows to that group; a dataset the caller cannot see is no filter.

    vic's image is in the read-only group "lab" that uma shares; vic also files it in his
    dataset "Secret set" of his private group "vault". uma sees the image, but not the
    dataset: searching by that dataset's name finds nothing for her (its name is not
    disclosed), and ``group=vault`` finds nothing either.
    """
    from tests.service.authworld import FAST_PASSWORDS
    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.config import AccountSettings

    with _start(
        tmp_path / "data", auth="users", accounts=AccountSettings(**FAST_PASSWORDS)
    ) as client:
        with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
            accounts.create_group(session, "lab", "read-only")
            accounts.create_group(session, "vault", "private")
            for name in ("uma", "vic"):
                accounts.create_user(session, name)
                accounts.set_membership(session, "lab", name)
            accounts.set_membership(session, "vault", "vic")
            tokens = {name: accounts.create_token(session, name)[1] for name in ("uma", "vic")}

        def as_(name: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[name]}"}

        answer = upload(
            client, testdata / ACQUIRED_2013_01_15, params={"group": "lab"}, headers=as_("vic")
        )
        assert answer.status_code == 201, answer.text
        image_id = answer.json()["id"]
        dataset = client.post(
            "/api/datasets",
            json={"name": "Secret set"},
            params={"group": "vault"},
            headers=as_("vic"),
        )
        assert dataset.status_code == 201, dataset.text
        linked = client.post(
            f"/api/datasets/{dataset.json()['id']}/images",
            json={"image_ids": [image_id]},
            headers=as_("vic"),
        )
        assert linked.status_code == 200, linked.text

        def found(name: str, **params: str) -> set[str]:
            response = client.get("/api/images/search", params=params, headers=as_(name))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["total"] == len(body["data"])
            return {item["id"] for item in body["data"]}

        assert found("uma") == {image_id}
        assert found("uma", group="lab") == {image_id}
        assert found("uma", group="vault") == set()
        assert found("uma", dataset="Secret set") == set()
        assert found("vic", dataset="Secret set") == {image_id}
        assert found("vic", group="lab", dataset="Secret set") == {image_id}
        assert found("vic", group="vault") == set()  # the image is in "lab"
