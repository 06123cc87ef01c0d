"""Key-value pairs, comments, templates and local filing (``annotations/``), called directly.

Found by mutation testing: the service tests (one round of each kind over HTTP) did not
check the limit of pairs per target and its message, positions, indexed copies, owner,
group and time of a row, that a replacement touches only its target, the order of
comments, who may delete a comment (author, changer, neither) and the 403/404 messages,
which templates are skipped (size, bad JSON, bad name) and which one wins a name, or
that local filing makes its project and dataset once.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from fastapi import HTTPException
from sqlalchemy import select

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_group, add_image, add_user, principal_of
from zstack_analyzer.service.annotations import comments, keyvalues, templates
from zstack_analyzer.service.annotations.access import Target
from zstack_analyzer.service.annotations.models import (
    Comment,
    Dataset,
    DatasetImage,
    KeyValue,
    Project,
    ProjectDataset,
)
from zstack_analyzer.service.annotations.schemas import KeyValueItem
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import Principal
from zstack_analyzer.service.db.models import Image

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session


def _image(session: Session, owner: int | None, group: int | None) -> Target:
    row = session.get(Image, add_image(session, "i.tif", owner_id=owner, group_id=group))
    assert row is not None
    return Target("image", row)


def _recent(value: datetime) -> bool:
    return abs(value.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)


# ---------------------------------------------------------------------------- key-values


def test_replace_key_values_keeps_order_and_fills_columns(session: Session) -> None:
    group = add_group(session, "g", Permission.READ_ANNOTATE)
    alice = add_user(session, "alice", {group: False})
    target = _image(session, None, group)
    other = _image(session, None, group)
    dataset = Dataset(name="d", description="", group_id=group)
    session.add(dataset)
    session.commit()
    who = principal_of(session, alice)
    items = [
        KeyValueItem(key="Strain", value=" N2 "),
        KeyValueItem(key="dose", value="1", namespace="ns"),
        KeyValueItem(key="Strain", value="CB"),
    ]
    keyvalues.replace_key_values(session, who, other, [KeyValueItem(key="keep", value="me")])
    keyvalues.replace_key_values(session, who, Target("dataset", dataset), items[:1])
    shown = keyvalues.replace_key_values(session, who, target, items)
    assert [(i.key, i.value, i.namespace) for i in shown] == [
        ("Strain", "N2", None),
        ("dose", "1", "ns"),
        ("Strain", "CB", None),
    ]
    rows = session.scalars(
        select(KeyValue).where(KeyValue.image_id == target.key).order_by(KeyValue.position)
    ).all()
    assert [(r.position, r.key_key, r.value_key) for r in rows] == [
        (0, "strain", "n2"),
        (1, "dose", "1"),
        (2, "strain", "cb"),
    ]
    assert {(r.owner_id, r.group_id, r.dataset_id, r.project_id) for r in rows} == {
        (alice, group, None, None)
    }
    assert all(_recent(r.created_at) for r in rows)
    row = keyvalues.kv_row(items[1], 7, 3, 4)
    assert {k: v for k, v in row.items() if k != "created_at"} == {
        "position": 7,
        "namespace": "ns",
        "key": "dose",
        "value": "1",
        "key_key": "dose",
        "value_key": "1",
        "owner_id": 3,
        "group_id": 4,
    }
    assert _recent(row["created_at"])  # type: ignore[arg-type]
    # A second replacement: the new list only, and only of this target.
    again = keyvalues.replace_key_values(session, who, target, items[2:])
    assert [(i.key, i.value) for i in again] == [("Strain", "CB")]
    assert keyvalues.replace_key_values(session, who, target, []) == []
    assert [i.key for i in keyvalues.target_key_values(session, other)] == ["keep"]
    assert [i.key for i in keyvalues.target_key_values(session, Target("dataset", dataset))] == [
        "Strain"
    ]


def test_the_limit_of_pairs_per_target(session: Session) -> None:
    target = _image(session, None, None)
    who = Principal(user_id=None, username="local", is_admin=True)
    items = [KeyValueItem(key="k", value=str(n)) for n in range(keyvalues.MAX_PAIRS)]
    assert len(keyvalues.replace_key_values(session, who, target, items)) == keyvalues.MAX_PAIRS
    from zstack_analyzer.service.errors import BadParameterError

    with pytest.raises(BadParameterError) as error:
        keyvalues.replace_key_values(session, who, target, [*items, items[0]])
    assert str(error.value) == (
        f"at most {keyvalues.MAX_PAIRS} key-value pairs per target, got {keyvalues.MAX_PAIRS + 1}"
    )
    assert len(keyvalues.target_key_values(session, target)) == keyvalues.MAX_PAIRS


# ---------------------------------------------------------------------------- comments


def test_comments_in_order_with_their_author(session: Session) -> None:
    group = add_group(session, "g", Permission.READ_ANNOTATE)
    alice = add_user(session, "alice", {group: False})
    target = _image(session, None, group)
    other = _image(session, None, group)
    who = principal_of(session, alice)
    first = comments.add_comment(session, who, target, "first")
    assert (first.text, first.owner_id, first.owner) == ("first", alice, "alice")
    assert first.created_at.tzinfo is not None and _recent(first.created_at)
    comments.add_comment(session, who, other, "elsewhere")
    second = comments.add_comment(session, who, target, "second")
    row = session.get(Comment, second.id)
    assert row is not None and (row.group_id, row.image_id) == (group, target.key)
    # Same time: by id.
    session.get(Comment, first.id).created_at = row.created_at  # type: ignore[union-attr]
    session.commit()
    assert [c.text for c in comments.target_comments(session, target)] == ["first", "second"]
    row.created_at = datetime(2000, 1, 1, tzinfo=UTC)
    session.commit()
    assert [c.text for c in comments.target_comments(session, target)] == ["second", "first"]


def test_who_may_delete_a_comment(session: Session) -> None:
    ra = add_group(session, "ra", Permission.READ_ANNOTATE)
    ro = add_group(session, "ro", Permission.READ_ONLY)
    private = add_group(session, "private", Permission.PRIVATE)
    owner = add_user(session, "owner", {ra: False, ro: False, private: False})
    author = add_user(session, "author", {ra: False, ro: False, private: False})
    other = add_user(session, "other", {ra: False})
    as_owner, as_author, as_other = (principal_of(session, u) for u in (owner, author, other))
    image = _image(session, owner, ra)
    by_author = comments.add_comment(session, as_author, image, "mine").id
    by_owner = comments.add_comment(session, as_owner, image, "theirs").id
    # Someone else may see but neither wrote it nor may change the image.
    with pytest.raises(HTTPException) as error:
        comments.delete_comment(session, as_other, by_author)
    assert (error.value.status_code, error.value.detail) == (
        403,
        f"comment {by_author} is not yours to delete",
    )
    with pytest.raises(HTTPException) as error:
        comments.delete_comment(session, as_author, by_owner)
    assert error.value.status_code == 403
    comments.delete_comment(session, as_author, by_author)  # the author
    comments.delete_comment(session, as_owner, by_owner)  # the image's owner
    assert session.scalars(select(Comment)).all() == []
    # An author who may no longer annotate (read-only group) may not delete theirs.
    frozen = _image(session, owner, ro)
    stale = Comment(text="old", owner_id=author, group_id=ro, image_id=frozen.key)
    session.add(stale)
    session.commit()
    with pytest.raises(HTTPException) as error:
        comments.delete_comment(session, as_author, stale.id)
    assert error.value.status_code == 403
    # Not visible (a private group's image of someone else): 404, as for no comment at all.
    hidden = _image(session, owner, private)
    unseen = Comment(text="x", owner_id=author, group_id=private, image_id=hidden.key)
    session.add(unseen)
    session.commit()
    with pytest.raises(HTTPException) as error:
        comments.delete_comment(session, as_other, unseen.id)
    assert (error.value.status_code, error.value.detail) == (404, f"no comment with id {unseen.id}")
    with pytest.raises(HTTPException) as error:
        comments.delete_comment(session, as_owner, 9999)
    assert (error.value.status_code, error.value.detail) == (404, "no comment with id 9999")
    assert session.get(Comment, stale.id) is not None and session.get(Comment, unseen.id)


def test_comments_of_containers_and_of_nothing(session: Session) -> None:
    group = add_group(session, "g", Permission.READ_WRITE)
    alice = add_user(session, "alice", {group: False})
    bob = add_user(session, "bob", {group: False})
    as_alice, as_bob = principal_of(session, alice), principal_of(session, bob)
    dataset = Dataset(name="d", description="", owner_id=alice, group_id=group)
    project = Project(name="p", description="", owner_id=alice, group_id=group)
    session.add_all([dataset, project])
    session.commit()
    on_dataset = comments.add_comment(session, as_alice, Target("dataset", dataset), "d")
    on_project = comments.add_comment(session, as_alice, Target("project", project), "p")
    target = comments.target_of(session, as_bob, session.get(Comment, on_project.id), "view")
    assert (target.kind, target.key) == ("project", project.id)
    target = comments.target_of(session, as_bob, session.get(Comment, on_dataset.id), "view")
    assert (target.kind, target.key) == ("dataset", dataset.id)
    # bob changes in a read-write group: he may delete alice's comment.
    comments.delete_comment(session, as_bob, on_dataset.id)
    assert session.get(Comment, on_dataset.id) is None
    with pytest.raises(HTTPException) as error:
        comments.target_of(session, as_bob, object(), "view")
    assert (error.value.status_code, error.value.detail) == (404, "no such annotation")


# ---------------------------------------------------------------------------- templates


def _template(name: str, title: str = "T") -> dict[str, object]:
    return {"name": name, "title": title, "sections": []}


def test_templates_shipped_then_ours(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shipped = templates.load_templates()
    assert "REMBI" in {t.upper() for t in shipped} or shipped
    first = next(iter(shipped))
    (tmp_path / "a-ours.json").write_text(json.dumps(_template(first, "ours")), "utf-8")
    (tmp_path / "b.json").write_text(json.dumps(_template("extra")), "utf-8")
    (tmp_path / "c.json").write_text("{not json", "utf-8")
    (tmp_path / "d.json").write_text(json.dumps(_template("bad name")), "utf-8")
    (tmp_path / "e.json").write_text(json.dumps({"name": "x"}), "utf-8")
    (tmp_path / "notes.txt").write_text(json.dumps(_template("txt")), "utf-8")
    big = _template("big") | {"description": "x" * templates.MAX_TEMPLATE_BYTES}
    (tmp_path / "f.json").write_text(json.dumps(big), "utf-8")
    exact = _template("exact") | {"description": ""}
    text = json.dumps(exact)
    exact["description"] = "x" * (templates.MAX_TEMPLATE_BYTES - len(text))
    (tmp_path / "g.json").write_text(json.dumps(exact), "utf-8")
    assert (tmp_path / "g.json").stat().st_size == templates.MAX_TEMPLATE_BYTES
    with caplog.at_level(logging.WARNING, logger=templates.__name__):
        found = templates.load_templates(tmp_path)
    assert set(found) == set(shipped) | {"extra", "exact"}
    assert found[first].title == "ours" and found["extra"].title == "T"
    messages = [r.getMessage() for r in caplog.records]
    assert f"{tmp_path / 'f.json'}: over {templates.MAX_TEMPLATE_BYTES} bytes, ignored" in messages
    assert any(
        m.startswith(f"{tmp_path / 'c.json'}: not a key-value template (Expecting property name")
        for m in messages
    )
    assert any(m.startswith(f"{tmp_path / 'e.json'}: not a key-value template (") for m in messages)
    assert (
        f"{tmp_path / 'd.json'}: template name 'bad name' is not a simple name, ignored" in messages
    )
    assert templates.load_templates(tmp_path / "missing") == shipped
    assert templates.load_templates(tmp_path / "b.json") == shipped


# ---------------------------------------------------------------------------- filing


def test_local_filing_makes_project_and_dataset_once(tmp_path: Path) -> None:
    from zstack_analyzer.service.annotations.filing import LocalFiler
    from zstack_analyzer.service.db.session import Database, make_engine

    shutil.copyfile(service_db._template(), tmp_path / "z.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'z.db'}")
    database = Database(engine)
    with database.sessions() as db:
        images = [str(add_image(db, f"{n}.tif")) for n in range(3)]
    filer = LocalFiler(database)
    filer.file(images[2], None, "Plate")
    filer.file(images[0], "Screen", "Plate")  # not the loose "Plate": the project's own
    filer.file(images[1], "Screen", "Plate")
    filer.file(images[2], "", "Loose")
    with database.sessions() as db:
        projects = db.scalars(select(Project.name)).all()
        datasets = db.execute(select(Dataset.id, Dataset.name).order_by(Dataset.id)).all()
        in_project = db.scalars(select(ProjectDataset.dataset_id)).all()
        links = db.execute(select(DatasetImage.dataset_id, DatasetImage.image_id)).all()
    assert projects == ["Screen"]
    assert [name for _, name in datasets] == ["Plate", "Plate", "Loose"]
    loose_plate, plate, loose = (dataset_id for dataset_id, _ in datasets)
    assert in_project == [plate]
    assert sorted((d, str(i)) for d, i in links) == sorted(
        [(plate, images[0]), (plate, images[1]), (loose_plate, images[2]), (loose, images[2])]
    )
    assert filer._ids == {
        ("Screen", "Plate"): plate,
        (None, "Plate"): loose_plate,
        ("", "Loose"): loose,
    }
    engine.dispose()


def test_pairs_are_listed_by_position_not_by_insertion(session: Session) -> None:
    """Writers other than the editor (the bulk table) may insert a later position first."""
    target = _image(session, None, None)
    for position, key in ((2, "c"), (0, "a"), (1, "b")):
        session.add(
            KeyValue(
                image_id=target.key,
                position=position,
                key=key,
                value="",
                key_key=key,
                value_key="",
            )
        )
    session.commit()
    assert [i.key for i in keyvalues.target_key_values(session, target)] == ["a", "b", "c"]


# ---------------------------------------------------------------------------- attachments


def test_attachments_rows_and_who_may_remove_them(session: Session) -> None:
    from zstack_analyzer.service.annotations import attachments

    ra = add_group(session, "ra", Permission.READ_ANNOTATE)
    ro = add_group(session, "ro", Permission.READ_ONLY)
    private = add_group(session, "private", Permission.PRIVATE)
    owner = add_user(session, "owner", {ra: False, ro: False, private: False})
    author = add_user(session, "author", {ra: False, ro: False, private: False})
    other = add_user(session, "other", {ra: False})
    as_owner, as_author, as_other = (principal_of(session, u) for u in (owner, author, other))
    image = _image(session, owner, ra)
    elsewhere = _image(session, owner, ra)

    def attach(who: Principal, target: Target, name: str, stored: str) -> int:
        shown = attachments.add_attachment(
            session, who, target, filename=name, stored_name=stored, size_bytes=5, sha256="a" * 64
        )
        assert (shown.filename, shown.size_bytes, shown.sha256) == (name, 5, "a" * 64)
        assert shown.created_at.tzinfo is not None and _recent(shown.created_at)
        return shown.id

    mine = attach(as_author, image, "protocol.pdf", "s1")
    theirs = attach(as_owner, image, "notes", "s2")
    attach(as_owner, elsewhere, "x.txt", "s3")
    listed = attachments.target_attachments(session, image)
    assert [(a.id, a.media_type, a.owner, a.owner_id) for a in listed] == [
        (mine, "application/pdf", "author", author),
        (theirs, "application/octet-stream", "owner", owner),
    ]
    row = session.get(attachments.Attachment, mine)
    assert row is not None and (row.group_id, row.image_id, row.dataset_id) == (ra, image.key, None)
    assert attachments.readable_attachment(session, as_other, mine).stored_name == "s1"
    with pytest.raises(HTTPException) as error:
        attachments.removable_attachment(session, as_other, mine)
    assert (error.value.status_code, error.value.detail) == (
        403,
        f"attachment {mine} is not yours to delete",
    )
    with pytest.raises(HTTPException) as error:
        attachments.removable_attachment(session, as_author, theirs)
    assert error.value.status_code == 403
    assert attachments.removable_attachment(session, as_author, mine) == "s1"
    assert attachments.removable_attachment(session, as_owner, theirs) == "s2"
    assert attachments.target_attachments(session, image) == []
    # The author in a read-only group may no longer remove it; unseen targets answer 404.
    frozen = _image(session, owner, ro)
    stale = attach(as_owner, frozen, "a.pdf", "s4")
    session.get(attachments.Attachment, stale).owner_id = author  # type: ignore[union-attr]
    session.commit()
    with pytest.raises(HTTPException) as error:
        attachments.removable_attachment(session, as_author, stale)
    assert error.value.status_code == 403
    hidden = _image(session, owner, private)
    unseen = attach(as_owner, hidden, "h.pdf", "s5")
    for call in (attachments.readable_attachment, attachments.removable_attachment):
        with pytest.raises(HTTPException) as error:
            call(session, as_other, unseen)
        assert (error.value.status_code, error.value.detail) == (
            404,
            f"no attachment with id {unseen}",
        )
        with pytest.raises(HTTPException) as error:
            call(session, as_owner, 9999)
        assert (error.value.status_code, error.value.detail) == (404, "no attachment with id 9999")
    assert attachments.media_type_of("plate.CSV") == "text/csv"
    # Strict types only: ".pict" is known to mimetypes as a common but non-standard type.
    assert attachments.media_type_of("scan.pict") == "application/octet-stream"


# ---------------------------------------------------------------------------- clean_text


def test_clean_text_keeps_spaces_tabs_and_newlines_and_counts_to_the_limit() -> None:
    from zstack_analyzer.service.annotations.schemas import clean_text

    assert clean_text(" a b\x00\x07\tc\nd \x1f", "name") == "a b\tc\nd"
    assert clean_text("x" * 255, "name") == "x" * 255
    with pytest.raises(ValueError, match=r"^name: at most 255 characters$"):
        clean_text("x" * 256, "name")
    assert clean_text("", "value", empty_ok=True) == ""
    with pytest.raises(ValueError, match=r"^key: must not be empty$"):
        clean_text("\x00 ", "key")
