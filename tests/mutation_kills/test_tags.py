"""Tags (``annotations/tags.py``) on a migrated SQLite database, called directly.

Found by mutation testing: the service tests did not check the limit of tags per target
and its message, which spelling of a repeated name wins, the group of a target without
one, the owner, group and time of a new link, counts per kind that leave out what the
caller cannot see, the prefix search's bounds, paging defaults, who may rename or merge
(and the 403/404/409 messages), merging a tag onto targets that carry both, or a tag made
by another writer between ``ensure_tags``' look and its write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from fastapi import HTTPException
from sqlalchemy import event, select

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_group, add_image, add_user, principal_of
from zstack_analyzer.service.annotations import tags
from zstack_analyzer.service.annotations.access import Target
from zstack_analyzer.service.annotations.models import Dataset, Project, Tag, TagLink
from zstack_analyzer.service.auth.accounts import default_group_id
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import SINGLE_USER, Principal
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import BadParameterError

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class Lab:
    """A read-annotate and a private group; alice and bob in both, carol owns the first."""

    ra: int
    private: int
    alice_id: int
    bob_id: int
    carol_id: int
    alice: Principal
    bob: Principal
    carol: Principal


@pytest.fixture
def lab(session: Session) -> Lab:
    ra = add_group(session, "g-ra", Permission.READ_ANNOTATE)
    private = add_group(session, "g-private", Permission.PRIVATE)
    alice = add_user(session, "alice", {ra: False, private: False})
    bob = add_user(session, "bob", {ra: False, private: False})
    carol = add_user(session, "carol", {ra: True})
    return Lab(
        ra,
        private,
        alice,
        bob,
        carol,
        principal_of(session, alice),
        principal_of(session, bob),
        principal_of(session, carol),
    )


def _image(session: Session, owner: int | None, group: int | None) -> Target:
    row = session.get(Image, add_image(session, "i.tif", owner_id=owner, group_id=group))
    assert row is not None
    return Target("image", row)


def _container(session: Session, model: type[Dataset | Project], owner: int, group: int) -> Target:
    row = model(name="c", description="", owner_id=owner, group_id=group)
    session.add(row)
    session.commit()
    return Target("dataset" if model is Dataset else "project", row)


def _status(error: pytest.ExceptionInfo[HTTPException]) -> tuple[int, str]:
    return error.value.status_code, str(error.value.detail)


def _links(session: Session, tag_id: int) -> set[tuple[str | None, int | None, int | None]]:
    query = select(TagLink.image_id, TagLink.dataset_id, TagLink.project_id).where(
        TagLink.tag_id == tag_id
    )
    rows = [(str(i) if i else None, d, p) for i, d, p in session.execute(query)]
    assert len(rows) == len(set(rows))
    return set(rows)


# ---------------------------------------------------------------------------- replace


def test_replace_tags_cleans_dedupes_and_links(session: Session, lab: Lab) -> None:
    target = _image(session, lab.alice_id, lab.ra)
    refs = tags.replace_tags(session, lab.bob, target, [" DAPI\x07 ", "dapi", "Actin"])
    assert [(r.name, r.group_id, r.owner_id) for r in refs] == [
        ("Actin", lab.ra, lab.bob_id),
        ("DAPI", lab.ra, lab.bob_id),
    ]
    links = session.scalars(select(TagLink)).all()
    assert {(link.owner_id, link.group_id, link.image_id) for link in links} == {
        (lab.bob_id, lab.ra, target.key)
    }
    now = datetime.now(UTC)
    assert all(
        abs(link.created_at.replace(tzinfo=UTC) - now) < timedelta(minutes=5) for link in links
    )
    made = session.scalars(select(Tag)).all()
    assert all(abs(tag.created_at.replace(tzinfo=UTC) - now) < timedelta(minutes=5) for tag in made)
    assert {(tag.description, tag.name_key) for tag in made} == {("", "actin"), ("", "dapi")}
    # alice's replacement keeps DAPI (its link stays bob's) and drops Actin.
    refs = tags.replace_tags(session, lab.alice, target, ["dapi", "GFP"])
    assert [(r.name, r.owner_id) for r in refs] == [("DAPI", lab.bob_id), ("GFP", lab.alice_id)]
    query = select(Tag.name, TagLink.owner_id).join(TagLink, TagLink.tag_id == Tag.id)
    owners = dict(session.execute(query).all())
    assert owners == {"DAPI": lab.bob_id, "GFP": lab.alice_id}
    assert tags.replace_tags(session, lab.alice, target, []) == []
    assert session.scalars(select(TagLink)).all() == []
    assert len(session.scalars(select(Tag)).all()) == 3  # tags stay


def test_replace_tags_only_touches_its_target(session: Session, lab: Lab) -> None:
    first = _image(session, lab.alice_id, lab.ra)
    second = _image(session, lab.alice_id, lab.ra)
    dataset = _container(session, Dataset, lab.alice_id, lab.ra)
    tags.replace_tags(session, lab.alice, first, ["a", "b"])
    tags.replace_tags(session, lab.alice, second, ["a", "b"])
    tags.replace_tags(session, lab.alice, dataset, ["a"])
    tags.replace_tags(session, lab.alice, first, ["b"])
    assert [r.name for r in tags.target_tags(session, second)] == ["a", "b"]
    assert [r.name for r in tags.target_tags(session, first)] == ["b"]
    assert [r.name for r in tags.target_tags(session, dataset)] == ["a"]
    row = session.scalars(select(TagLink).where(TagLink.dataset_id == dataset.key)).one()
    assert (row.image_id, row.project_id, row.group_id) == (None, None, lab.ra)


def test_tags_of_a_target_without_group_go_to_default(session: Session) -> None:
    target = _image(session, None, None)
    [ref] = tags.replace_tags(session, SINGLE_USER, target, ["x"])
    assert ref.group_id == default_group_id(session) and ref.owner_id is None
    assert tags.group_for_tags(session, 7) == 7
    loose = Dataset(name="loose", description="")
    session.add(loose)
    session.commit()
    assert loose.group_id is None
    [ref] = tags.replace_tags(session, SINGLE_USER, Target("dataset", loose), ["y"])
    assert ref.group_id == default_group_id(session)
    assert tags.group_for_tags(session, None) == default_group_id(session)


def test_the_limit_of_tags_per_target(session: Session, lab: Lab) -> None:
    target = _image(session, lab.alice_id, lab.ra)
    names = [f"t{n}" for n in range(tags.MAX_TAGS)]
    assert len(tags.replace_tags(session, lab.alice, target, [*names, "T0"])) == tags.MAX_TAGS
    with pytest.raises(BadParameterError) as error:
        tags.replace_tags(session, lab.alice, target, [*names, "one more"])
    assert str(error.value) == f"at most {tags.MAX_TAGS} tags per target, got {tags.MAX_TAGS + 1}"
    with pytest.raises(BadParameterError) as error:
        tags.replace_tags(session, lab.alice, target, ["ok", " \x00 "])
    assert str(error.value) == "tag: must not be empty"


def test_ensure_tags_reuses_case_insensitively(session: Session, lab: Lab) -> None:
    tags.ensure_tags(session, lab.ra, ["unrelated"], lab.alice_id)
    first = tags.ensure_tags(session, lab.ra, ["Nucleus", "Cyto"], lab.alice_id)
    assert set(first) == {"nucleus", "cyto"}
    session.commit()
    again = tags.ensure_tags(session, lab.ra, ["NUCLEUS", "cyto"], lab.bob_id)
    assert set(again) == {"nucleus", "cyto"}
    assert again["nucleus"].id == first["nucleus"].id and again["nucleus"].name == "Nucleus"
    other = tags.ensure_tags(session, lab.private, ["nucleus", "new"], lab.bob_id)
    assert other["nucleus"].id != first["nucleus"].id and other["new"].owner_id == lab.bob_id
    assert other["nucleus"].group_id == lab.private


def test_ensure_tags_finds_a_tag_another_writer_made_meanwhile(session: Session, lab: Lab) -> None:
    """The unique constraint lets the other writer win; the second look finds its tag."""
    bind = session.get_bind()
    made: list[int] = []

    @event.listens_for(session, "before_flush")
    def other_writer(*_: object) -> None:
        if made:
            return
        with bind.connect() as other:  # type: ignore[union-attr]
            other.execute(
                Tag.__table__.insert().values(
                    group_id=lab.ra, name="Race", name_key="race", description="theirs"
                )
            )
            other.commit()
        made.append(1)

    found = tags.ensure_tags(session, lab.ra, ["race"], lab.alice_id)
    event.remove(session, "before_flush", other_writer)
    assert found["race"].description == "theirs" and found["race"].name == "Race"
    assert len(session.scalars(select(Tag)).all()) == 1


# ---------------------------------------------------------------------------- list


def test_counts_per_kind_are_of_what_the_caller_sees(session: Session, lab: Lab) -> None:
    seen = _image(session, lab.alice_id, lab.ra)
    unseen = _image(session, lab.alice_id, lab.private)
    dataset = _container(session, Dataset, lab.alice_id, lab.ra)
    hidden_dataset = _container(session, Dataset, lab.alice_id, lab.private)
    project = _container(session, Project, lab.alice_id, lab.ra)
    other_project = _container(session, Project, lab.alice_id, lab.ra)
    for target in (seen, dataset, project, other_project):
        tags.replace_tags(session, lab.alice, target, ["x"])
    tags.replace_tags(session, lab.alice, unseen, ["x"])
    tags.replace_tags(session, lab.alice, hidden_dataset, ["x"])
    private_project = _container(session, Project, lab.alice_id, lab.private)
    tags.replace_tags(session, lab.alice, private_project, ["x"])
    # bob's own tag of the private group, also on alice's image there (which he cannot see).
    bobs = _image(session, lab.bob_id, lab.private)
    tags.replace_tags(session, lab.bob, bobs, ["p"])
    tags.replace_tags(session, lab.alice, unseen, ["x", "p"])
    listed = tags.list_tags(session, lab.bob)
    shown = {(t.name, t.group): (t.count, t.dataset_count, t.project_count) for t in listed.data}
    assert shown == {("x", "g-ra"): (1, 1, 2), ("p", "g-private"): (1, 0, 0)}
    assert listed.count == 2
    [tag] = [t for t in listed.data if t.name == "x"]
    assert (tag.owner, tag.owner_id, tag.description) == ("alice", lab.alice_id, "")
    mine = tags.list_tags(session, lab.alice)
    assert {(t.group, t.count, t.dataset_count, t.project_count) for t in mine.data} == {
        ("g-ra", 1, 1, 2),
        ("g-private", 1, 1, 1),
    }
    assert tags.list_tags(session, lab.bob, q="nothing").data == []


def test_list_by_prefix_group_and_page(session: Session, lab: Lab) -> None:
    names = ["alpha", "Alphabet", "alp", "beta", "al", "alpi"]
    tags.ensure_tags(session, lab.ra, names, lab.alice_id)
    tags.ensure_tags(session, lab.private, ["alpine"], lab.alice_id)
    session.commit()
    found = tags.list_tags(session, lab.alice, q=" ALP ")
    assert [t.name for t in found.data] == ["alp", "alpha", "Alphabet", "alpi", "alpine"]
    assert found.count == 5
    assert {(t.count, t.dataset_count, t.project_count) for t in found.data} == {(0, 0, 0)}
    assert [t.name for t in tags.list_tags(session, lab.alice, q="alp", group="g-ra").data] == [
        "alp",
        "alpha",
        "Alphabet",
        "alpi",
    ]
    assert tags.list_tags(session, lab.alice, q="\x00").count == 7
    assert tags.list_tags(session, lab.alice, q="", group="g-private").count == 1
    assert tags.list_tags(session, lab.alice, group="nope").count == 0
    page = tags.list_tags(session, lab.alice, skip=1, limit=2)
    assert [t.name for t in page.data] == ["alp", "alpha"] and page.count == 7
    # bob sees the read-annotate group's tags only (the private one is alice's).
    assert tags.list_tags(session, lab.bob).count == 6


def test_list_pages_of_100_by_default(session: Session, lab: Lab) -> None:
    tags.ensure_tags(session, lab.ra, [f"t{n:03}" for n in range(102)], lab.alice_id)
    session.commit()
    page = tags.list_tags(session, lab.alice)
    assert len(page.data) == 100 and page.count == 102
    assert page.data[0].name == "t000" and page.data[-1].name == "t099"


# ---------------------------------------------------------------------------- rename/merge


def test_rename_by_owner_group_owner_or_admin(session: Session, lab: Lab) -> None:
    made = tags.ensure_tags(session, lab.ra, ["Old", "Other"], lab.alice_id)
    session.commit()
    tag_id = made["old"].id
    renamed = tags.update_tag(session, lab.alice, tag_id, name="New", description=None)
    assert (renamed.name, renamed.description, renamed.id) == ("New", "", tag_id)
    assert session.get(Tag, tag_id).name_key == "new"  # type: ignore[union-attr]
    described = tags.update_tag(session, lab.carol, tag_id, name=None, description="d")
    assert (described.name, described.description) == ("New", "d")
    recased = tags.update_tag(session, SINGLE_USER, tag_id, name="NEW", description=None)
    assert recased.name == "NEW"
    tags.ensure_tags(session, lab.private, ["elsewhere"], lab.alice_id)
    session.commit()
    moved = tags.update_tag(session, lab.alice, tag_id, name="Elsewhere", description=None)
    assert moved.name == "Elsewhere"
    tags.update_tag(session, lab.alice, tag_id, name="NEW", description=None)
    with pytest.raises(HTTPException) as error:
        tags.update_tag(session, lab.bob, tag_id, name="x", description=None)
    assert _status(error) == (
        403,
        f"only the tag's owner or an owner of its group may rename or merge tag {tag_id}",
    )
    frozen = Principal(
        user_id=lab.alice_id, username="alice", groups=lab.alice.groups, read_only=True
    )
    with pytest.raises(HTTPException) as error:
        tags.update_tag(session, frozen, tag_id, name="x", description=None)
    assert error.value.status_code == 403
    admin_frozen = Principal(user_id=None, username="t", is_admin=True, read_only=True)
    with pytest.raises(HTTPException) as error:
        tags.update_tag(session, admin_frozen, tag_id, name="x", description=None)
    assert error.value.status_code == 403
    with pytest.raises(HTTPException) as error:
        tags.update_tag(session, lab.alice, tag_id, name=" other", description=None)
    other = made["other"].id
    assert _status(error) == (
        409,
        f"the group already has a tag ' other' (id {other}); merge into it instead",
    )
    with pytest.raises(HTTPException) as error:
        tags.update_tag(session, lab.alice, 9999, name="x", description=None)
    assert _status(error) == (404, "no tag with id 9999")
    assert session.get(Tag, tag_id).name == "NEW"  # type: ignore[union-attr]


def test_a_private_groups_tag_is_not_found_by_others(session: Session, lab: Lab) -> None:
    made = tags.ensure_tags(session, lab.private, ["mine"], lab.alice_id)
    tags.ensure_tags(session, lab.ra, ["seen", "also seen"], lab.alice_id)
    session.commit()
    tag_id = made["mine"].id
    with pytest.raises(HTTPException) as error:
        tags.update_tag(session, lab.bob, tag_id, name="x", description=None)
    assert _status(error) == (404, f"no tag with id {tag_id}")
    outsider = Principal(user_id=lab.carol_id, username="carol", groups=lab.carol.groups)
    with pytest.raises(HTTPException) as error:
        tags.merge_tag(session, outsider, tag_id, tag_id)
    assert error.value.status_code == 404


def test_merge_moves_links_and_keeps_one_per_target(session: Session, lab: Lab) -> None:
    both = _image(session, lab.alice_id, lab.ra)
    only_source = _image(session, lab.alice_id, lab.ra)
    dataset = _container(session, Dataset, lab.alice_id, lab.ra)
    project = _container(session, Project, lab.alice_id, lab.ra)
    tags.replace_tags(session, lab.alice, both, ["src", "dst", "keep"])
    tags.replace_tags(session, lab.alice, only_source, ["src"])
    tags.replace_tags(session, lab.alice, dataset, ["src", "dst"])
    tags.replace_tags(session, lab.alice, project, ["src", "dst"])
    ids = {t.name: t.id for t in session.scalars(select(Tag))}
    merged = tags.merge_tag(session, lab.alice, ids["src"], ids["dst"])
    assert (merged.id, merged.name, merged.count) == (ids["dst"], "dst", 2)
    assert (merged.dataset_count, merged.project_count) == (1, 1)
    assert session.get(Tag, ids["src"]) is None
    assert [r.name for r in tags.target_tags(session, both)] == ["dst", "keep"]
    assert _links(session, ids["dst"]) == {
        (str(both.key), None, None),
        (str(only_source.key), None, None),
        (None, dataset.key, None),
        (None, None, project.key),
    }


def test_merge_refusals(session: Session, lab: Lab) -> None:
    here = tags.ensure_tags(session, lab.ra, ["a", "b"], lab.alice_id)
    there = tags.ensure_tags(session, lab.private, ["c"], lab.alice_id)
    session.commit()
    a, b, c = here["a"].id, here["b"].id, there["c"].id
    with pytest.raises(BadParameterError) as bad:
        tags.merge_tag(session, lab.alice, a, a)
    assert str(bad.value) == "a tag cannot be merged into itself"
    with pytest.raises(HTTPException) as error:
        tags.merge_tag(session, lab.alice, a, c)
    assert _status(error) == (409, "tags of different groups cannot be merged")
    with pytest.raises(HTTPException) as error:
        tags.merge_tag(session, lab.bob, a, b)
    assert error.value.status_code == 403
    # bob may merge his own tag into alice's (the target needs only to be seen).
    mine = tags.ensure_tags(session, lab.ra, ["d"], lab.bob_id)["d"].id
    session.commit()
    assert tags.merge_tag(session, lab.bob, mine, b).id == b
    with pytest.raises(HTTPException) as error:
        tags.merge_tag(session, lab.bob, b, c)
    assert error.value.status_code == 403
    assert {t.id for t in session.scalars(select(Tag))} == {a, b, c}


def test_target_tags_are_by_name(session: Session, lab: Lab) -> None:
    target = _image(session, lab.alice_id, lab.ra)
    tags.replace_tags(session, lab.alice, target, ["b", "C", "a"])
    refs = tags.target_tags(session, target)
    assert [r.name for r in refs] == ["a", "b", "C"]
    assert {r.group_id for r in refs} == {lab.ra} and {r.owner_id for r in refs} == {lab.alice_id}
    assert uuid.UUID(str(target.key))


def test_a_rename_that_loses_a_race_is_a_conflict(session: Session, lab: Lab) -> None:
    """Another writer makes the name between the clash check and the commit: 409, not 500."""
    tag_id = tags.ensure_tags(session, lab.ra, ["old"], lab.alice_id)["old"].id
    session.commit()
    bind = session.get_bind()

    made: list[int] = []

    @event.listens_for(session, "before_flush")
    def other_writer(*_: object) -> None:
        if made:
            return
        made.append(1)
        with bind.connect() as other:  # type: ignore[union-attr]
            other.execute(
                Tag.__table__.insert().values(
                    group_id=lab.ra, name="race", name_key="race", description=""
                )
            )
            other.commit()

    with pytest.raises(HTTPException) as error:
        tags.update_tag(session, lab.alice, tag_id, name="Race", description=None)
    event.remove(session, "before_flush", other_writer)
    assert _status(error) == (409, "the group already has a tag 'Race'")
    assert session.get(Tag, tag_id).name == "old"  # type: ignore[union-attr]
