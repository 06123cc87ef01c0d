"""Organize and annotate over HTTP (issue 24), on SQLite and PostgreSQL, without accounts.

Every route of ``routes/containers.py`` and ``routes/annotations.py`` and the
new search parameters, on real uploaded OME-TIFF stacks. The permission cases
per group level are in ``test_annotation_permissions.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.service.conftest import upload, write_ome_tiff
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient


@pytest.fixture
def api(tmp_path: Path, database_url: str | None, make_client: Callable[..., TestClient]) -> Any:
    settings = make_settings(tmp_path / "data", database_url=database_url)
    settings.render.thumbnail_on_upload = False
    settings.annotations.max_attachment_bytes = 4096
    client = make_client(settings)
    stack = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 2, 8, 10))
    ids = [upload(client, stack, f"cell{n}.ome.tif").json()["id"] for n in range(3)]
    return client, ids


def _ok(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


def test_containers_links_and_delete(api: Any) -> None:
    client, (a, b, c) = api
    project = _ok(client.post("/api/projects", json={"name": "Screen", "description": "d"}), 201)
    assert project["kind"] == "project" and project["group"] == "default"
    dataset = _ok(
        client.post("/api/datasets", json={"name": "Plate 1", "project_id": project["id"]}), 201
    )
    assert dataset["project_ids"] == [project["id"]]
    other = _ok(client.post("/api/datasets", json={"name": "Plate 2"}), 201)
    assert other["project_ids"] == []
    # Link: new and already linked are told apart; an image may be in several datasets.
    linked = _ok(client.post(f"/api/datasets/{dataset['id']}/images", json={"image_ids": [a, b]}))
    assert set(linked["linked"]) == {a, b} and linked["already"] == []
    again = _ok(client.post(f"/api/datasets/{dataset['id']}/images", json={"image_ids": [b, c]}))
    assert again["linked"] == [c] and again["already"] == [b]
    _ok(client.post(f"/api/datasets/{other['id']}/images", json={"image_ids": [a]}))
    page = _ok(client.get(f"/api/datasets/{dataset['id']}/images", params={"limit": 2}))
    assert page["count"] == 3 and len(page["data"]) == 2
    assert {item["id"] for item in page["data"]} <= {a, b, c}
    # Lists, filters, one, counts.
    assert _ok(client.get("/api/projects"))["count"] == 1
    listed = _ok(client.get("/api/datasets", params={"project_id": project["id"]}))
    assert [d["name"] for d in listed["data"]] == ["Plate 1"]
    assert (
        _ok(client.get("/api/datasets", params={"name": "plate 2"}))["data"][0]["id"] == other["id"]
    )
    assert _ok(client.get(f"/api/projects/{project['id']}"))["child_count"] == 1
    assert _ok(client.get(f"/api/datasets/{dataset['id']}"))["child_count"] == 3
    renamed = _ok(client.patch(f"/api/datasets/{dataset['id']}", json={"name": "Plate 1b"}))
    assert renamed["name"] == "Plate 1b" and renamed["description"] == ""
    # Unlink: the image stays; unlinking again is 404.
    assert client.delete(f"/api/datasets/{dataset['id']}/images/{c}").status_code == 204
    assert client.delete(f"/api/datasets/{dataset['id']}/images/{c}").status_code == 404
    assert client.get(f"/api/images/{c}").status_code == 200
    # Bad input: typed errors, never a 500.
    assert client.post("/api/datasets", json={"name": " "}).status_code == 422
    assert client.post("/api/datasets", json={"name": "x", "project_id": 999}).status_code == 404
    bad = client.post(f"/api/datasets/{dataset['id']}/images", json={"image_ids": ["nope"]})
    assert bad.status_code == 422
    missing = "00000000-0000-4000-8000-000000000000"
    assert (
        client.post(
            f"/api/datasets/{dataset['id']}/images", json={"image_ids": [a, missing]}
        ).status_code
        == 404
    )
    assert client.get("/api/datasets/abc").status_code == 404
    assert client.get("/api/projects/99999999999").status_code == 404
    # Deleting a project keeps its datasets and images; a dataset keeps its images ...
    gone = _ok(client.delete(f"/api/projects/{project['id']}"))
    assert gone == {
        "deleted": "project",
        "id": project["id"],
        "images_deleted": [],
        "images_kept": [],
    }
    assert client.get(f"/api/datasets/{dataset['id']}").status_code == 200
    _ok(client.delete(f"/api/datasets/{other['id']}"))
    assert client.get(f"/api/images/{a}").status_code == 200
    # ... unless asked: with_images deletes them (records and files).
    result = _ok(client.delete(f"/api/datasets/{dataset['id']}", params={"with_images": "true"}))
    assert set(result["images_deleted"]) == {a, b}
    assert client.get(f"/api/images/{a}").status_code == 404
    assert client.get(f"/api/images/{c}").status_code == 200
    assert client.get(f"/api/datasets/{dataset['id']}").status_code == 404


@pytest.mark.parametrize("kind", ["image", "dataset", "project"])
def test_annotations_of_each_kind(api: Any, kind: str) -> None:
    client, (a, _, _) = api
    if kind == "image":
        base = f"/api/images/{a}"
    else:
        created = _ok(client.post(f"/api/{kind}s", json={"name": f"a {kind}"}), 201)
        base = f"/api/{kind}s/{created['id']}"
    # Tags: replace, case-insensitive de-duplication, made on first use.
    tags = _ok(client.put(f"{base}/tags", json=["Mitosis", "DAPI", "mitosis"]))
    assert [t["name"] for t in tags] == ["DAPI", "Mitosis"]
    tags = _ok(client.put(f"{base}/tags", json=["dapi", "late"]))
    assert [t["name"] for t in tags] == ["DAPI", "late"]  # the existing tag keeps its spelling
    assert _ok(client.get(f"{base}/tags")) == tags
    assert client.put(f"{base}/tags", json=["x" * 300]).status_code == 422
    assert client.put(f"{base}/tags", json=["\x00 "]).status_code == 422
    # Key-value pairs: ordered, repeatable keys, namespace; replace.
    pairs = [
        {"key": "strain", "value": "N2", "namespace": None},
        {"key": "strain", "value": "CB4856", "namespace": None},
        {"key": "antibody", "value": "anti-tubulin lot 7", "namespace": "rembi"},
    ]
    assert _ok(client.put(f"{base}/key-values", json=pairs)) == pairs
    assert _ok(client.get(f"{base}/key-values")) == pairs
    assert _ok(client.put(f"{base}/key-values", json=pairs[:1])) == pairs[:1]
    assert client.put(f"{base}/key-values", json=[{"key": "", "value": "x"}]).status_code == 422
    # Comments.
    comment = _ok(client.post(f"{base}/comments", json={"text": "  nice cells  "}), 201)
    assert comment["text"] == "nice cells" and comment["owner"] is None
    assert [c["id"] for c in _ok(client.get(f"{base}/comments"))] == [comment["id"]]
    assert client.delete(f"/api/comments/{comment['id']}").status_code == 204
    assert client.delete(f"/api/comments/{comment['id']}").status_code == 404
    assert _ok(client.get(f"{base}/comments")) == []
    # Attachments: stored like originals, size-capped, downloaded as attachments.
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 4
    made = _ok(client.post(f"{base}/attachments", files={"file": ("../protocol.pdf", pdf)}), 201)
    assert made["filename"] == "protocol.pdf" and made["size_bytes"] == len(pdf)
    assert made["media_type"] == "application/pdf"
    got = client.get(f"/api/attachments/{made['id']}")
    assert got.status_code == 200 and got.content == pdf
    assert "attachment" in got.headers["content-disposition"]
    assert got.headers["x-content-type-options"] == "nosniff"
    assert [x["id"] for x in _ok(client.get(f"{base}/attachments"))] == [made["id"]]
    too_big = client.post(f"{base}/attachments", files={"file": ("big.bin", b"x" * 5000)})
    assert too_big.status_code == 413
    stored = client.app.state.storage.path("x").parent
    pdfs = [p for p in stored.iterdir() if p.suffix == ".pdf"]
    assert len(pdfs) == 1 and pdfs[0].read_bytes() == pdf
    assert client.delete(f"/api/attachments/{made['id']}").status_code == 204
    assert client.get(f"/api/attachments/{made['id']}").status_code == 404
    assert not pdfs[0].exists()


def test_tags_list_rename_merge(api: Any) -> None:
    client, (a, b, c) = api
    _ok(client.put(f"/api/images/{a}/tags", json=["mitosis", "dapi"]))
    _ok(client.put(f"/api/images/{b}/tags", json=["Mitoses", "dapi"]))
    _ok(client.put(f"/api/images/{c}/tags", json=["dapi"]))
    listed = _ok(client.get("/api/tags"))
    counts = {t["name"]: t["count"] for t in listed["data"]}
    assert counts == {"dapi": 3, "Mitoses": 1, "mitosis": 1}
    assert [t["name"] for t in _ok(client.get("/api/tags", params={"q": "MIT"}))["data"]] == [
        "Mitoses",
        "mitosis",
    ]
    ids = {t["name"]: t["id"] for t in listed["data"]}
    # Rename onto a taken name: 409 (merge instead); a free name: renamed.
    clash = client.patch(f"/api/tags/{ids['Mitoses']}", json={"name": "MITOSIS"})
    assert clash.status_code == 409
    renamed = _ok(client.patch(f"/api/tags/{ids['dapi']}", json={"name": "DAPI stain"}))
    assert renamed["name"] == "DAPI stain" and renamed["count"] == 3
    merged = _ok(client.post(f"/api/tags/{ids['Mitoses']}/merge", json={"into": ids["mitosis"]}))
    assert merged["name"] == "mitosis" and merged["count"] == 2
    assert [t["name"] for t in _ok(client.get(f"/api/images/{b}/tags"))] == [
        "DAPI stain",
        "mitosis",
    ]
    assert client.patch(f"/api/tags/{ids['Mitoses']}", json={"name": "x"}).status_code == 404
    itself = client.post(f"/api/tags/{ids['mitosis']}/merge", json={"into": ids["mitosis"]})
    assert itself.status_code == 422


def test_templates(api: Any) -> None:
    client, _ = api
    templates = _ok(client.get("/api/annotations/templates"))
    rembi = next(t for t in templates if t["name"] == "rembi")
    keys = {k["key"] for section in rembi["sections"] for k in section["keys"]}
    assert {"study.title", "sample.organism", "specimen.preparation"} <= keys
    assert {s["name"] for s in rembi["sections"]} >= {"study", "sample", "specimen"}


def test_bulk_table(api: Any) -> None:
    client, (a, b, _) = api
    dataset = _ok(client.post("/api/datasets", json={"name": "Plate"}), 201)
    _ok(client.post(f"/api/datasets/{dataset['id']}/images", json={"image_ids": [a, b]}))
    table = (
        "filename,tag,tags,strain,treatment\n"
        "cell0.ome.tif,mitosis,late; bright,N2,DMSO\n"
        "cell1.ome.tif,,,CB4856,\n"
    )
    body = {"csv": table, "dataset": "Plate", "dry_run": True}
    dry = _ok(client.post("/api/annotations/bulk", json=body))
    assert dry["applied"] is False and dry["rows"] == 2
    first = next(ch for ch in dry["changes"] if ch["image_id"] == a)
    assert first["row"] == 2 and first["tags_added"] == ["mitosis", "late", "bright"]
    assert first["key_values"] == {"strain": ["N2"], "treatment": ["DMSO"]}
    assert _ok(client.get(f"/api/images/{a}/tags")) == []  # a dry run writes nothing
    done = _ok(client.post("/api/annotations/bulk", json={**body, "dry_run": False}))
    assert done["applied"] is True
    assert {t["name"] for t in _ok(client.get(f"/api/images/{a}/tags"))} == {
        "mitosis",
        "late",
        "bright",
    }
    assert _ok(client.get(f"/api/images/{b}/key-values")) == [
        {"key": "strain", "value": "CB4856", "namespace": None}
    ]
    # The same table again changes nothing; a key given again replaces only that key.
    assert (
        _ok(client.post("/api/annotations/bulk", json={**body, "dry_run": False}))["changes"] == []
    )
    _ok(client.post("/api/annotations/bulk", json={"csv": f"id,strain\n{a},PD1074\n"}))
    assert _ok(client.get(f"/api/images/{a}/key-values")) == [
        {"key": "treatment", "value": "DMSO", "namespace": None},
        {"key": "strain", "value": "PD1074", "namespace": None},
    ]
    # Errors name their rows; nothing of a faulty table is applied.
    faulty = "filename,tag\ncell0.ome.tif,new\nnope.tif,x\ncell2.ome.tif,y\n"
    answer = client.post("/api/annotations/bulk", json={"csv": faulty, "dataset": "Plate"})
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["code"] == "bulk_rows_invalid"
    assert [e["row"] for e in problem["errors"]] == [3, 4]  # cell2 is not in the dataset
    assert "nope.tif" in problem["errors"][0]["message"]
    assert "new" not in {t["name"] for t in _ok(client.get(f"/api/images/{a}/tags"))}
    # Header faults, unknown dataset, by path.
    assert client.post("/api/annotations/bulk", json={"csv": "image\nx\n"}).status_code == 422
    unknown = client.post("/api/annotations/bulk", json={"csv": table, "dataset": "Nope"})
    assert unknown.status_code == 422 and "Nope" in unknown.json()["detail"]


def test_search_by_annotations(api: Any) -> None:
    client, (a, b, c) = api
    project = _ok(client.post("/api/projects", json={"name": "Screen"}), 201)
    dataset = _ok(
        client.post("/api/datasets", json={"name": "Plate 7", "project_id": project["id"]}), 201
    )
    _ok(client.post(f"/api/datasets/{dataset['id']}/images", json={"image_ids": [a, b]}))
    _ok(client.put(f"/api/images/{a}/tags", json=["mitosis", "bright"]))
    _ok(client.put(f"/api/images/{b}/tags", json=["mitosis"]))
    _ok(client.put(f"/api/images/{a}/key-values", json=[{"key": "Strain", "value": "N2"}]))
    _ok(client.put(f"/api/images/{c}/key-values", json=[{"key": "strain", "value": "CB4856"}]))
    _ok(
        client.put(
            f"/api/images/{c}/key-values",
            json=[{"key": "strain", "value": "CB4856"}, {"key": "treatment", "value": "wild type"}],
        )
    )

    def found(*params: tuple[str, str]) -> set[str]:
        answer = _ok(client.get("/api/images/search", params=list(params)))
        assert answer["count"] == len(answer["data"])
        return {item["id"] for item in answer["data"]}

    assert found(("tag", "MITOSIS")) == {a, b}
    assert found(("tag", "mitosis"), ("tag", "bright")) == {a}
    assert found(("kv", "strain:n2")) == {a}
    assert found(("kv", "strain")) == {a, c}
    assert found(("kv", "strain:N2"), ("kv", "treatment:wild type")) == set()
    assert found(("kv", "treatment: Wild Type")) == {c}
    assert found(("project", "screen")) == {a, b}
    assert found(("project", str(project["id"]))) == {a, b}
    assert found(("dataset", "Plate 7"), ("tag", "bright")) == {a}
    assert found(("q", "brig")) == {a}
    assert found(("q", "wild")) == {c}
    assert found(("q", "cell1")) == {b}  # the filename still matches as before
    assert found(("tag", "nothing")) == set()
    assert client.get("/api/images/search", params={"kv": ":x"}).status_code == 422
