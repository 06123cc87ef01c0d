"""Attachment uploads (service/routes/annotations.py ``_receive_attachment``) in users mode.

Found by mutation testing: the route test attaches in single-user mode, where
every target may be annotated, and checks a refused upload only by its status.
Here a read-only member is refused on a dataset (whose route has no guard of its
own: the right to annotate is checked only here), and after every refusal (no
such target, too many parts for the app's upload bounds, too big, not allowed) neither the stored object nor the staged
upload stays behind. The right to annotate is checked twice, before the body is
read and when the row is added: a read-annotate member passes both, and a dataset
deleted while its attachment was being stored leaves no stored object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.users_lab import users_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A users-mode app: admin root owns 'lab' (read-only) and 'notes' (read-annotate),
    mia is a member of both; the app's own upload bounds, not the defaults (16 parts)."""

    def bounds(settings: Settings) -> None:
        settings.annotations.max_attachment_bytes = 4096
        settings.uploads.max_parts = 1

    members = {"root": True, "mia": False}
    groups = {"lab": ("read-only", members), "notes": ("read-annotate", members)}
    with users_app(tmp_path_factory.mktemp("lab"), groups, configure=bounds) as built:
        yield built


def _leftovers(client: TestClient) -> tuple[list[str], list[str]]:
    app: Any = client.app
    stored = app.state.storage.path("x").parent
    return sorted(p.name for p in stored.iterdir()), sorted(
        p.name for p in app.state.settings.tmp_dir.iterdir()
    )


def test_refused_attachments_leave_nothing(lab: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = lab
    made = client.post(
        "/api/datasets", params={"group": "lab"}, json={"name": "d"}, headers=tokens["root"]
    )
    assert made.status_code == 201, made.text
    base = f"/api/datasets/{made.json()['id']}/attachments"
    before = _leftovers(client)

    refused = client.post(base, files={"file": ("p.pdf", PDF)}, headers=tokens["mia"])
    assert refused.status_code == 403, refused.text
    assert "dataset" in refused.json()["detail"]
    assert _leftovers(client) == before
    absent = client.post(
        "/api/datasets/99999/attachments", files={"file": ("p.pdf", PDF)}, headers=tokens["root"]
    )
    assert absent.status_code == 404
    assert _leftovers(client) == before
    two = client.post(base, files={"file": ("p.pdf", PDF)}, data={"a": "b"}, headers=tokens["root"])
    assert two.status_code == 400, two.text
    assert _leftovers(client) == before
    big = client.post(base, files={"file": ("big.bin", b"x" * 5000)}, headers=tokens["root"])
    assert big.status_code == 413
    assert _leftovers(client) == before

    ok = client.post(base, files={"file": ("../p.pdf", PDF)}, headers=tokens["root"])
    assert ok.status_code == 201, ok.text
    assert (ok.json()["filename"], ok.json()["size_bytes"]) == ("p.pdf", len(PDF))
    stored, staged = _leftovers(client)
    assert staged == before[1]
    (new,) = set(stored) - set(before[0])
    assert new.endswith(".pdf")
    assert client.get(f"/api/attachments/{ok.json()['id']}", headers=tokens["mia"]).content == PDF


def _dataset(client: TestClient, token: dict[str, str], group: str) -> int:
    made = client.post("/api/datasets", params={"group": group}, json={"name": "d"}, headers=token)
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def test_a_read_annotate_member_may_attach(lab: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = lab
    dataset = _dataset(client, tokens["root"], "notes")
    answer = client.post(
        f"/api/datasets/{dataset}/attachments",
        files={"file": ("m.pdf", PDF)},
        headers=tokens["mia"],
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["filename"] == "m.pdf"


def test_a_dataset_deleted_during_the_upload_keeps_no_object(
    lab: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from zstack_analyzer.service.annotations.models import Dataset

    client, tokens = lab
    app: Any = client.app
    dataset = _dataset(client, tokens["root"], "lab")
    storage = app.state.storage
    commit = storage.commit

    def commit_then_delete(*args: Any, **kwargs: Any) -> Any:
        """The real commit, then the dataset goes (another client's delete, meanwhile)."""
        stored = commit(*args, **kwargs)
        with app.state.database.sessions() as session:
            session.delete(session.get(Dataset, dataset))
            session.commit()
        return stored

    monkeypatch.setattr(storage, "commit", commit_then_delete)
    before = _leftovers(client)
    answer = client.post(
        f"/api/datasets/{dataset}/attachments",
        files={"file": ("g.pdf", PDF)},
        headers=tokens["root"],
    )
    assert answer.status_code == 404, answer.text
    assert _leftovers(client) == before
