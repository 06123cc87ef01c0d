"""Project and dataset routes (service/routes/containers.py) over HTTP, in users mode.

Found by mutation testing of the route bodies: the route test creates containers
without checking their descriptions, lists one page of everything (so ``skip``,
``limit`` and ``name`` reached the library unchecked), reads ``kind`` and
``project_ids`` only from a created dataset, never pages a dataset's images past the
first, and never calls the image's datasets, the dataset-into-project link or its
unlink. Here the lab is real accounts: an admin (root) owns the group "lab"
(read-only) and "secret" (private), mia is a member of "lab" only, so she sees
root's containers in "lab" and none in "secret", and may change none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from fastapi import APIRouter, FastAPI

from tests.mutation_kills.users_lab import upload_into, users_app
from tests.service.conftest import write_ome_tiff
from zstack_analyzer.service.routes import containers as routes

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

Lab = tuple["TestClient", dict[str, dict[str, str]], list[str]]
MISSING_IMAGE = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A users-mode app: root (admin, owns "lab" and "secret"), mia (member of "lab");
    their tokens; two images of root's in "lab"."""
    groups = {
        "lab": ("read-only", {"root": True, "mia": False}),
        "secret": ("private", {"root": True}),
    }
    with users_app(tmp_path, groups) as (client, tokens):
        stack = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 1, 8, 10))
        images = [
            upload_into(client, tokens["root"], stack, f"cell{n}.ome.tif", "lab") for n in range(2)
        ]
        yield client, tokens, images


def _ok(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


def _make(client: TestClient, token: dict[str, str], path: str, group: str, **body: Any) -> Any:
    return _ok(client.post(path, params={"group": group}, json=body, headers=token), 201)


def test_created_containers_keep_their_description(lab: Lab) -> None:
    client, tokens, _ = lab
    root = tokens["root"]
    project = _make(client, root, "/api/projects", "lab", name="Screen", description="all plates")
    assert (project["kind"], project["name"], project["description"]) == (
        "project",
        "Screen",
        "all plates",
    )
    assert (project["owner"], project["group"]) == ("root", "lab")
    dataset = _make(
        client,
        root,
        "/api/datasets",
        "lab",
        name="Plate 1",
        description="first plate",
        project_id=project["id"],
    )
    assert (dataset["kind"], dataset["description"], dataset["project_ids"]) == (
        "dataset",
        "first plate",
        [project["id"]],
    )
    # What was answered is what is stored.
    assert _ok(client.get(f"/api/projects/{project['id']}", headers=root))["description"] == (
        "all plates"
    )
    assert _ok(client.get(f"/api/datasets/{dataset['id']}", headers=root))["description"] == (
        "first plate"
    )


def test_lists_page_filter_and_describe_their_items(lab: Lab) -> None:
    client, tokens, _ = lab
    root, mia = tokens["root"], tokens["mia"]
    projects = {n: _make(client, root, "/api/projects", "lab", name=n)["id"] for n in "ACB"}
    hidden = _make(client, root, "/api/projects", "secret", name="D")["id"]
    in_a = {
        n: _make(client, root, "/api/datasets", "lab", name=n, project_id=projects["A"])["id"]
        for n in ("x2", "x1")
    }
    loose = _make(client, root, "/api/datasets", "lab", name="x3")["id"]

    def names(path: str, token: dict[str, str], **params: Any) -> tuple[list[str], int]:
        page = _ok(client.get(path, params=params, headers=token))
        return [item["name"] for item in page["data"]], page["count"]

    # By name; a page is a window on that order, the count is the whole list's.
    assert names("/api/projects", mia) == (["A", "B", "C"], 3)
    assert names("/api/projects", root) == (["A", "B", "C", "D"], 4)
    assert names("/api/projects", mia, skip=1, limit=1) == (["B"], 3)
    assert names("/api/projects", mia, skip=2) == (["C"], 3)
    assert names("/api/projects", mia, limit=2) == (["A", "B"], 3)
    assert names("/api/projects", mia, name="b") == (["B"], 1)
    assert names("/api/projects", mia, name="D") == ([], 0)  # root's, in a private group
    assert names("/api/datasets", mia) == (["x1", "x2", "x3"], 3)
    assert names("/api/datasets", mia, skip=1, limit=1) == (["x2"], 3)
    assert names("/api/datasets", mia, skip=2) == (["x3"], 3)
    assert names("/api/datasets", mia, limit=1) == (["x1"], 3)
    assert names("/api/datasets", mia, name="X3") == (["x3"], 1)
    assert names("/api/datasets", mia, project_id=projects["A"]) == (["x1", "x2"], 2)
    assert names("/api/datasets", mia, project_id=projects["A"], skip=1) == (["x2"], 2)
    assert names("/api/datasets", mia, project_id=projects["B"]) == ([], 0)
    unseen = client.get("/api/datasets", params={"project_id": hidden}, headers=mia)
    assert unseen.status_code == 404, unseen.text
    # Each listed dataset is a dataset, with the projects it is in.
    listed = _ok(client.get("/api/datasets", headers=mia))["data"]
    assert {item["kind"] for item in listed} == {"dataset"}
    assert {item["id"]: item["project_ids"] for item in listed} == {
        in_a["x1"]: [projects["A"]],
        in_a["x2"]: [projects["A"]],
        loose: [],
    }
    listed = _ok(client.get("/api/projects", headers=mia))["data"]
    assert {item["kind"] for item in listed} == {"project"}
    assert {item["name"]: item["child_count"] for item in listed} == {"A": 2, "B": 0, "C": 0}


def test_a_datasets_images_page_past_the_first(lab: Lab) -> None:
    client, tokens, images = lab
    root = tokens["root"]
    dataset = _make(client, root, "/api/datasets", "lab", name="both")["id"]
    linked = _ok(
        client.post(f"/api/datasets/{dataset}/images", json={"image_ids": images}, headers=root)
    )
    assert sorted(linked["linked"]) == sorted(images)
    path = f"/api/datasets/{dataset}/images"
    whole = _ok(client.get(path, headers=tokens["mia"]))
    assert (whole["count"], sorted(item["id"] for item in whole["data"])) == (2, sorted(images))
    first = _ok(client.get(path, params={"limit": 1}, headers=tokens["mia"]))
    second = _ok(client.get(path, params={"skip": 1, "limit": 1}, headers=tokens["mia"]))
    assert (first["count"], second["count"]) == (2, 2)
    assert [item["id"] for item in first["data"] + second["data"]] == [
        item["id"] for item in whole["data"]
    ]


def test_an_images_datasets_are_those_the_caller_sees(lab: Lab) -> None:
    client, tokens, (image, other) = lab
    root, mia = tokens["root"], tokens["mia"]
    shared = _make(client, root, "/api/datasets", "lab", name="shared")["id"]
    hidden = _make(client, root, "/api/datasets", "secret", name="hidden")["id"]
    apart = _make(client, root, "/api/datasets", "lab", name="apart")["id"]
    for dataset in (shared, hidden):
        _ok(
            client.post(
                f"/api/datasets/{dataset}/images", json={"image_ids": [image]}, headers=root
            )
        )
    _ok(client.post(f"/api/datasets/{apart}/images", json={"image_ids": [other]}, headers=root))

    def datasets(image_id: str, token: dict[str, str]) -> tuple[list[int], int]:
        page = _ok(client.get(f"/api/images/{image_id}/datasets", headers=token))
        assert {item["kind"] for item in page["data"]} <= {"dataset"}
        return [item["id"] for item in page["data"]], page["count"]

    assert datasets(image, root) == ([hidden, shared], 2)  # by name
    assert datasets(image, mia) == ([shared], 1)
    assert datasets(other, mia) == ([apart], 1)
    absent = client.get(f"/api/images/{MISSING_IMAGE}/datasets", headers=root)
    assert absent.status_code == 404, absent.text


def test_linking_datasets_into_a_project_needs_the_right_to_change_it(lab: Lab) -> None:
    client, tokens, _ = lab
    root, mia = tokens["root"], tokens["mia"]
    project = _make(client, root, "/api/projects", "lab", name="P")["id"]
    secret = _make(client, root, "/api/projects", "secret", name="S")["id"]
    first = _make(client, root, "/api/datasets", "lab", name="d1")["id"]
    second = _make(client, root, "/api/datasets", "lab", name="d2")["id"]
    path = f"/api/projects/{project}/datasets"

    # mia sees the project but may not change it (read-only group): 403, nothing linked.
    refused = client.post(path, json={"dataset_ids": [first]}, headers=mia)
    assert refused.status_code == 403, refused.text
    assert "project" in refused.json()["detail"]
    unseen = client.post(
        f"/api/projects/{secret}/datasets", json={"dataset_ids": [first]}, headers=mia
    )
    assert unseen.status_code == 404, unseen.text
    assert _ok(client.get(f"/api/projects/{project}", headers=root))["child_count"] == 0

    linked = _ok(client.post(path, json={"dataset_ids": [first]}, headers=root))
    assert linked == {"project_id": project, "linked": [first], "already": []}
    again = _ok(client.post(path, json={"dataset_ids": [second, first]}, headers=root))
    assert again == {"project_id": project, "linked": [second], "already": [first]}
    inside = _ok(client.get("/api/datasets", params={"project_id": project}, headers=mia))
    assert sorted(item["id"] for item in inside["data"]) == sorted([first, second])

    # Unlinking: mia may not; root may, once; the dataset stays.
    one = f"{path}/{first}"
    assert client.delete(one, headers=mia).status_code == 403
    assert client.delete(one, headers=root).status_code == 204
    assert client.delete(one, headers=root).status_code == 404
    inside = _ok(client.get("/api/datasets", params={"project_id": project}, headers=mia))
    assert [item["id"] for item in inside["data"]] == [second]
    assert _ok(client.get(f"/api/datasets/{first}", headers=mia))["project_ids"] == []
    wrong_project = client.delete(f"/api/projects/{secret}/datasets/{second}", headers=root)
    assert wrong_project.status_code == 404  # the dataset is not in that project
    assert _ok(client.get(f"/api/datasets/{second}", headers=mia))["project_ids"] == [project]


@pytest.mark.parametrize("kind", ["project", "dataset"])
def test_one_kinds_routes_as_registered(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """``_register_one`` (run at import) called again on a fresh router: its three routes,
    with the path parameter named after the kind."""
    router = APIRouter(prefix="/api")
    monkeypatch.setattr(routes, "router", router)
    routes._register_one(kind)  # type: ignore[arg-type]
    app = FastAPI()
    app.include_router(router)
    paths = app.openapi()["paths"]
    assert sorted(paths) == [f"/api/{kind}s/{{{kind}_id}}"]
    operations = paths[f"/api/{kind}s/{{{kind}_id}}"]
    assert sorted(operations) == ["delete", "get", "patch"]
    for method, name in (("get", "get"), ("patch", "update"), ("delete", "delete")):
        operation = operations[method]
        assert operation["operationId"].startswith(f"{name}_{kind}_")
        assert [(p["name"], p["in"]) for p in operation["parameters"] if p["in"] == "path"] == [
            (f"{kind}_id", "path")
        ]
