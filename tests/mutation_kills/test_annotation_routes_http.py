"""Tag, comment, attachment and bulk routes (service/routes/annotations.py) over HTTP.

Found by mutation testing of the route bodies: the route tests run in single-user
mode, where the one user may rename every tag and delete every comment and file, so
who may do what was never asked of these routes; they list tags without paging or a
group, never check an attachment's ETag, media type or its download from S3, and
never show more than two faulty rows of a bulk table.

The lab is real accounts: root (admin) owns the groups "notes" (read-annotate) and
"secret" (private); mia and walt are members of "notes", olga of "other" only. So
mia and walt may see and annotate root's image in "notes" but not change it, and see
nothing of "secret"; olga sees nothing of root's.
"""

from __future__ import annotations

import errno
import hashlib
import logging
from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.users_lab import upload_into, users_app
from tests.service.conftest import _testclient_class, upload, write_ome_tiff

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from tests.s3server import S3Server

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
Headers = dict[str, str]


class Lab:
    """The client, each person's Authorization header, root's image in "notes"."""

    def __init__(self, client: TestClient, tokens: dict[str, Headers], image: str) -> None:
        self.client, self.tokens, self.image = client, tokens, image

    def ok(self, who: str, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        answer = self.client.request(method.upper(), path, headers=self.tokens[who], **kw)
        assert answer.status_code == status, answer.text
        return answer.json() if answer.content else None

    def status(self, who: str, method: str, path: str, **kw: Any) -> int:
        return self.client.request(method.upper(), path, headers=self.tokens[who], **kw).status_code


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    groups = {
        "notes": ("read-annotate", {"root": True, "mia": False, "walt": False}),
        "secret": ("private", {"root": True}),
        "other": ("read-annotate", {"olga": False}),
    }
    with users_app(tmp_path, groups) as (client, tokens):
        stack = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 1, 8, 10))
        yield Lab(
            client, tokens, upload_into(client, tokens["root"], stack, "cells.ome.tif", "notes")
        )


def _stored_files(lab: Lab) -> list[str]:
    app: Any = lab.client.app
    return sorted(p.name for p in app.state.storage.path("x").parent.iterdir())


def test_the_tag_list_pages_and_filters_by_group(lab: Lab) -> None:
    lab.ok("root", "put", f"/api/images/{lab.image}/tags", json=["alpha", "beta", "gamma"])
    secret = lab.ok(
        "root", "post", "/api/datasets", 201, params={"group": "secret"}, json={"name": "s"}
    )["id"]
    lab.ok("root", "put", f"/api/datasets/{secret}/tags", json=["delta"])

    def names(who: str, **params: Any) -> tuple[list[str], int]:
        page = lab.ok(who, "get", "/api/tags", params=params)
        return [tag["name"] for tag in page["data"]], page["count"]

    assert names("root") == (["alpha", "beta", "delta", "gamma"], 4)
    assert names("mia") == (["alpha", "beta", "gamma"], 3)  # "secret" is private to root
    assert names("olga") == ([], 0)
    assert names("root", skip=1, limit=2) == (["beta", "delta"], 4)
    assert names("root", skip=3) == (["gamma"], 4)
    assert names("root", limit=1) == (["alpha"], 4)
    assert names("root", q="GA") == (["gamma"], 1)
    assert names("root", group="notes") == (["alpha", "beta", "gamma"], 3)
    assert names("root", group="secret") == (["delta"], 1)
    assert names("mia", group="secret") == ([], 0)
    # A NUL in a name is dropped, as everywhere in the service (PostgreSQL rejects it).
    assert names("root", group="no\x00tes") == (["alpha", "beta", "gamma"], 3)
    counts = {
        t["name"]: (t["count"], t["dataset_count"])
        for t in lab.ok("root", "get", "/api/tags")["data"]
    }
    assert counts == {"alpha": (1, 0), "beta": (1, 0), "gamma": (1, 0), "delta": (0, 1)}


def test_a_tag_is_renamed_and_merged_by_its_owner_or_a_group_owner(lab: Lab) -> None:
    image = f"/api/images/{lab.image}/tags"
    lab.ok("root", "put", image, json=["alpha"])
    # mia may annotate root's image: her new tag is hers.
    mine = {t["name"]: t["id"] for t in lab.ok("mia", "put", image, json=["alpha", "mias"])}
    tags = {t["name"]: t for t in lab.ok("mia", "get", "/api/tags")["data"]}
    assert (tags["mias"]["owner"], tags["alpha"]["owner"]) == ("mia", "root")

    # Not walt's, not mia's to rename: 403 and nothing changes.
    assert lab.status("walt", "patch", f"/api/tags/{mine['mias']}", json={"name": "w"}) == 403
    assert lab.status("mia", "patch", f"/api/tags/{mine['alpha']}", json={"name": "m"}) == 403
    assert lab.status("olga", "patch", f"/api/tags/{mine['alpha']}", json={"name": "o"}) == 404
    # The owner renames and describes hers; the group owner (root) may too.
    renamed = lab.ok(
        "mia",
        "patch",
        f"/api/tags/{mine['mias']}",
        json={"name": "mitosis", "description": "late prophase"},
    )
    assert (renamed["name"], renamed["description"], renamed["count"]) == (
        "mitosis",
        "late prophase",
        1,
    )
    described = lab.ok(
        "root", "patch", f"/api/tags/{mine['mias']}", json={"description": "any phase"}
    )
    assert (described["name"], described["description"]) == ("mitosis", "any phase")
    listed = {t["id"]: t for t in lab.ok("walt", "get", "/api/tags")["data"]}
    assert (listed[mine["mias"]]["name"], listed[mine["mias"]]["description"]) == (
        "mitosis",
        "any phase",
    )

    # Merging: walt may not merge mia's tag; mia merges hers into root's.
    merge = f"/api/tags/{mine['mias']}/merge"
    assert lab.status("walt", "post", merge, json={"into": mine["alpha"]}) == 403
    assert lab.status("mia", "post", merge, json={"into": 99999}) == 404
    merged = lab.ok("mia", "post", merge, json={"into": mine["alpha"]})
    assert (merged["id"], merged["name"], merged["count"]) == (mine["alpha"], "alpha", 1)
    assert [t["name"] for t in lab.ok("walt", "get", image)] == ["alpha"]
    assert lab.status("mia", "patch", f"/api/tags/{mine['mias']}", json={"name": "x"}) == 404


def test_a_comment_is_deleted_by_its_author_or_who_may_change_the_target(lab: Lab) -> None:
    comments = f"/api/images/{lab.image}/comments"
    by_mia = lab.ok("mia", "post", comments, 201, json={"text": "mine"})["id"]
    by_root = lab.ok("root", "post", comments, 201, json={"text": "the owner's"})["id"]

    assert lab.status("walt", "delete", f"/api/comments/{by_mia}") == 403
    assert lab.status("mia", "delete", f"/api/comments/{by_root}") == 403
    assert lab.status("olga", "delete", f"/api/comments/{by_mia}") == 404  # cannot see it
    assert [c["id"] for c in lab.ok("walt", "get", comments)] == [by_mia, by_root]
    assert lab.status("mia", "delete", f"/api/comments/{by_mia}") == 204
    again = lab.ok("walt", "post", comments, 201, json={"text": "walt's"})["id"]
    assert lab.status("root", "delete", f"/api/comments/{again}") == 204  # the image's owner
    assert [c["id"] for c in lab.ok("mia", "get", comments)] == [by_root]
    assert lab.status("root", "delete", f"/api/comments/{again}") == 404


def test_an_attachment_is_downloaded_by_who_sees_it_and_deleted_by_who_may(lab: Lab) -> None:
    base = f"/api/images/{lab.image}/attachments"
    before = _stored_files(lab)
    made = lab.ok("mia", "post", base, 201, files={"file": ("protocol ü.pdf", PDF)})
    (stored,) = set(_stored_files(lab)) - set(before)

    got = lab.client.get(f"/api/attachments/{made['id']}", headers=lab.tokens["walt"])
    assert got.status_code == 200 and got.content == PDF
    # A download, never a page: one media type, the name as an attachment, the sha256 as ETag.
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"protocol _.pdf\"; filename*=UTF-8''protocol%20%C3%BC.pdf"
    )
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["etag"] == f'"{hashlib.sha256(PDF).hexdigest()}"'
    assert made["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert lab.status("olga", "get", f"/api/attachments/{made['id']}") == 404

    # walt may annotate but not change root's image, and it is not his: 403, the file stays.
    assert lab.status("walt", "delete", f"/api/attachments/{made['id']}") == 403
    assert lab.status("olga", "delete", f"/api/attachments/{made['id']}") == 404
    assert stored in _stored_files(lab)
    assert lab.status("mia", "delete", f"/api/attachments/{made['id']}") == 204
    assert stored not in _stored_files(lab)
    assert lab.status("mia", "get", f"/api/attachments/{made['id']}") == 404
    assert lab.status("mia", "delete", f"/api/attachments/{made['id']}") == 404

    # In a private group, only its owner sees the file.
    secret = lab.ok(
        "root", "post", "/api/datasets", 201, params={"group": "secret"}, json={"name": "s"}
    )["id"]
    hidden = lab.ok(
        "root", "post", f"/api/datasets/{secret}/attachments", 201, files={"file": ("h.pdf", PDF)}
    )["id"]
    assert lab.status("mia", "get", f"/api/attachments/{hidden}") == 404
    assert lab.client.get(f"/api/attachments/{hidden}", headers=lab.tokens["root"]).content == PDF


def test_a_commit_failing_after_the_move_logs_its_own_error(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The folder's fsync fails after the staged file was moved into place (a disk fault).

    The client gets a 500 with a request id; the log under that id must show that
    fault, not a "no such file" about the staged upload, which the clean-up would raise
    if it did not expect the file to be gone already. Nothing stays staged.
    """
    app: Any = lab.client.app
    storage = app.state.storage
    commit = storage.commit

    def commit_then_fail(*args: Any, **kwargs: Any) -> Any:
        commit(*args, **kwargs)
        raise OSError(errno.EIO, "fsync of the images folder failed")

    monkeypatch.setattr(storage, "commit", commit_then_fail)
    staged_before = sorted(p.name for p in app.state.settings.tmp_dir.iterdir())
    with caplog.at_level(logging.ERROR):
        answer = lab.client.post(
            f"/api/images/{lab.image}/attachments",
            files={"file": ("p.pdf", PDF)},
            headers=lab.tokens["mia"],
        )
    assert answer.status_code == 500, answer.text
    request_id = answer.json()["request_id"]
    logged = [r for r in caplog.records if request_id in r.getMessage() and r.exc_info]
    assert len(logged) == 1
    error = logged[0].exc_info[1]  # type: ignore[index]
    assert (type(error), str(error)) == (OSError, "[Errno 5] fsync of the images folder failed")
    assert sorted(p.name for p in app.state.settings.tmp_dir.iterdir()) == staged_before
    assert lab.ok("mia", "get", f"/api/images/{lab.image}/attachments") == []


def test_an_attachment_in_s3_is_downloaded_whole(s3_server: S3Server, tmp_path: Path) -> None:
    """The non-local branch: the bytes streamed from the bucket, with the same headers."""
    import httpx

    from tests.service.test_s3_service import s3_settings
    from zstack_analyzer.service.app import create_app

    settings = s3_settings(s3_server, tmp_path / "data")
    settings.render.thumbnail_on_upload = False
    stack = write_ome_tiff(tmp_path / "c.ome.tif", (1, 1, 8, 10))
    try:
        with _testclient_class()(create_app(settings)) as client:
            image = upload(client, stack).json()["id"]
            made = client.post(f"/api/images/{image}/attachments", files={"file": ("p.pdf", PDF)})
            assert made.status_code == 201, made.text
            path = f"/api/attachments/{made.json()['id']}"
            got = client.get(path)
            assert got.status_code == 200 and got.content == PDF
            assert got.headers["content-type"] == "application/octet-stream"
            assert got.headers["content-length"] == str(len(PDF))
            assert got.headers["content-disposition"].startswith('attachment; filename="p.pdf"')
            assert got.headers["x-content-type-options"] == "nosniff"
            assert got.headers["etag"] == f'"{hashlib.sha256(PDF).hexdigest()}"'
            assert client.delete(path).status_code == 204
            assert client.get(path).status_code == 404
    finally:
        bucket = str(settings.storage_url).removeprefix("s3://").split("/", 1)[0]
        httpx.delete(f"{s3_server.endpoint}/{bucket}", timeout=30)


def _bulk(lab: Lab, csv: str, **body: Any) -> Any:
    return lab.client.post(
        "/api/annotations/bulk", json={"csv": csv, **body}, headers=lab.tokens["root"]
    )


@pytest.mark.parametrize("faulty", [1, 5, 6, 7])
def test_a_faulty_bulk_table_names_its_first_five_rows(lab: Lab, faulty: int) -> None:
    rows = "".join(f"nope{n}.tif,x\n" for n in range(faulty))
    answer = _bulk(lab, f"filename,tag\ncells.ome.tif,good\n{rows}")
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["code"] == "bulk_rows_invalid"
    errors = problem["errors"]
    assert [e["row"] for e in errors] == list(range(3, 3 + faulty))
    shown = "; ".join(f"row {e['row']}: {e['message']}" for e in errors[:5])
    more = f" (and {faulty - 5} more)" if faulty > 5 else ""
    assert problem["detail"] == (f"{faulty} row(s) cannot be applied, nothing was: {shown}{more}")
    assert "nope0.tif" in errors[0]["message"]
    assert lab.ok("root", "get", f"/api/images/{lab.image}/tags") == []  # nothing applied


def test_a_bulk_table_writes_its_pairs_in_the_namespace(lab: Lab) -> None:
    table = "filename,strain\ncells.ome.tif,N2\n"
    dry = _bulk(lab, table, namespace="rembi", dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json()["applied"] is False
    assert lab.ok("root", "get", f"/api/images/{lab.image}/key-values") == []
    done = _bulk(lab, table, namespace="rembi")
    assert done.status_code == 200, done.text
    assert lab.ok("mia", "get", f"/api/images/{lab.image}/key-values") == [
        {"key": "strain", "value": "N2", "namespace": "rembi"}
    ]


def test_the_servers_own_templates_are_listed_after_the_shipped_ones(
    lab: Lab, tmp_path: Path
) -> None:
    """A template in ``annotations.templates_dir`` is served with the shipped REMBI one."""
    import json

    from zstack_analyzer.service.annotations.templates import SHIPPED_DIR

    ours = json.loads((SHIPPED_DIR / "rembi.json").read_text("utf-8"))
    ours["name"] = "lab-screen"
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "lab.json").write_text(json.dumps(ours), "utf-8")
    app: Any = lab.client.app
    app.state.settings.annotations.templates_dir = folder
    names = [t["name"] for t in lab.ok("walt", "get", "/api/annotations/templates")]
    assert names == ["lab-screen", "rembi"]
