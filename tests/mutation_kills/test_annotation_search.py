"""Search conditions over annotations (``annotations/search.py``) on a migrated SQLite database.

Found by mutation testing: the search tests go through the whole service and a large
corpus; they did not check ``parse_kv``'s message, values at the indexed prefix's length,
pairs and tags of datasets (not images), a container named by a number (or by digits that
are not ASCII, or too long to be an id), the prefix's three id sets separately, or counts
of ids that repeat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_group, add_image, add_user, principal_of
from tests.service.conftest import (
    create_pg_database,
    drop_pg_database,
    postgres_admin,  # noqa: F401 - a fixture used by name
    postgres_template,  # noqa: F401 - a fixture used by name
)
from zstack_analyzer.service.annotations import search
from zstack_analyzer.service.annotations.models import (
    KEY_INDEX_CHARS,
    Dataset,
    DatasetImage,
    KeyValue,
    Project,
    ProjectDataset,
    Tag,
    TagLink,
    index_key,
)
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import BadParameterError

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    import uuid

    from sqlalchemy import Select
    from sqlalchemy.orm import Session


def _ids(session: Session, query: Select[object]) -> list[uuid.UUID]:
    return sorted(session.scalars(query))  # type: ignore[arg-type]


def _images(session: Session, n: int, **owner: int | None) -> list[uuid.UUID]:
    return sorted(add_image(session, f"{i}.tif", **owner) for i in range(n))  # type: ignore[arg-type]


def _tag(session: Session, group: int, name: str, **target: object) -> None:
    tag = session.scalar(select(Tag).where(Tag.group_id == group, Tag.name_key == index_key(name)))
    if tag is None:
        tag = Tag(group_id=group, name=name, name_key=index_key(name), description="")
        session.add(tag)
        session.flush()
    session.add(TagLink(tag_id=tag.id, **target))
    session.commit()


def _kv(session: Session, key: str, value: str, **target: object) -> None:
    session.add(
        KeyValue(
            position=0,
            key=key,
            value=value,
            key_key=index_key(key),
            value_key=index_key(value),
            **target,
        )
    )
    session.commit()


def _count(session: Session, sets: list[Select[object]]) -> int:
    return int(session.scalar(search.count_in_all(sets)))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- parse_kv


def test_parse_kv() -> None:
    assert search.parse_kv(" strain : N2 ") == ("strain", "N2")
    assert search.parse_kv("time:12:30") == ("time", "12:30")
    assert search.parse_kv("antibody") == ("antibody", None)
    assert search.parse_kv("empty:") == ("empty", "")
    with pytest.raises(BadParameterError) as error:
        search.parse_kv(" :" + "v" * 200)
    assert str(error.value) == f"kv: expected KEY:VALUE (or KEY), got {(' :' + 'v' * 200)[:100]!r}"


# ---------------------------------------------------------------------------- tags and pairs


def test_tag_ids_are_images_carrying_the_name_in_any_group(session: Session) -> None:
    first = add_group(session, "a", Permission.READ_ONLY)
    second = add_group(session, "b", Permission.READ_ONLY)
    x, y, z = _images(session, 3)
    dataset = Dataset(name="d", description="")
    session.add(dataset)
    session.commit()
    _tag(session, first, "DAPI", image_id=x)
    _tag(session, second, "dapi", image_id=x)
    _tag(session, second, "dapi", image_id=y)
    _tag(session, first, "dapi", dataset_id=dataset.id)
    _tag(session, first, "gfp", image_id=z)
    assert sorted(set(_ids(session, search.tag_ids(" Dapi ")))) == sorted([x, y])
    assert _count(session, [search.tag_ids("dapi")]) == 2
    assert _ids(session, search.tag_ids("dap")) == []


def test_kv_ids_by_value_any_value_and_past_the_prefix(session: Session) -> None:
    a, b, c, d = _images(session, 4)
    dataset = Dataset(name="d", description="")
    session.add(dataset)
    session.commit()
    prefix = "x" * KEY_INDEX_CHARS
    _kv(session, "Strain", "N2", image_id=a)
    _kv(session, "strain", "n2", image_id=a)
    _kv(session, "strain", "CB4856", image_id=b)
    _kv(session, "strain", "N2", dataset_id=dataset.id)
    _kv(session, "other", "n2", image_id=b)
    _kv(session, "long", prefix, image_id=c)
    _kv(session, "long", prefix + "y", image_id=d)
    assert _ids(session, search.kv_ids("STRAIN", " n2 ")) == [a]
    assert _count(session, [search.kv_ids("strain", "n2")]) == 1
    assert sorted(set(_ids(session, search.kv_ids("strain", None)))) == sorted([a, b])
    assert _count(session, [search.kv_ids("strain", None)]) == 2
    assert _ids(session, search.kv_ids("strain", "n")) == []
    # Within the indexed prefix: both (their indexed copies are equal); past it: exact.
    assert _ids(session, search.kv_ids("long", prefix)) == sorted([c, d])
    assert _ids(session, search.kv_ids("long", f" {prefix}y ")) == [d]
    assert _ids(session, search.kv_ids("long", prefix + "Y")) == []
    # An exact value within the prefix reads the distinct triples: counted as they are.
    exact = search.kv_ids("strain", "n2")
    assert exact.get_execution_options().get(search._DISTINCT) is True
    assert "GROUP BY" not in str(search.count_in_all([exact]))
    for other in (search.kv_ids("strain", None), search.kv_ids("long", prefix + "y")):
        assert not other.get_execution_options().get(search._DISTINCT)
        assert "GROUP BY" in str(search.count_in_all([other]))


# ---------------------------------------------------------------------------- containers


def test_containers_by_name_or_id_among_the_visible(session: Session) -> None:
    shared = add_group(session, "shared", Permission.READ_ONLY)
    private = add_group(session, "private", Permission.PRIVATE)
    alice = add_user(session, "alice", {shared: False, private: False})
    bob = add_user(session, "bob", {shared: False, private: False})
    x, y, z, w = _images(session, 4)
    named = {}
    for name, group, images, dataset_id in (
        ("Plate", shared, [x], None),
        ("12", shared, [y], None),
        ("hidden", private, [z], None),
        ("big", shared, [w], 1_000_000_000),
    ):
        dataset = Dataset(id=dataset_id, name=name, description="", owner_id=alice, group_id=group)
        session.add(dataset)
        session.flush()
        session.add_all(DatasetImage(dataset_id=dataset.id, image_id=i) for i in images)
        named[name] = dataset.id
    project = Project(name="Screen", description="", owner_id=alice, group_id=shared)
    hidden_project = Project(name="Secret", description="", owner_id=alice, group_id=private)
    session.add_all([project, hidden_project])
    session.flush()
    session.add(ProjectDataset(project_id=project.id, dataset_id=named["Plate"]))
    session.add(ProjectDataset(project_id=project.id, dataset_id=named["12"]))
    session.add(ProjectDataset(project_id=hidden_project.id, dataset_id=named["hidden"]))
    session.commit()
    as_bob = principal_of(session, bob)
    as_alice = principal_of(session, alice)

    def find(kind: str, name: str, who: object = as_bob) -> list[uuid.UUID]:
        return _ids(session, search.container_ids(kind, name, who))  # type: ignore[arg-type]

    assert find("dataset", " plate ") == [x]
    assert find("dataset", str(named["Plate"])) == [x]
    assert find("dataset", "12") == [y]
    assert find("dataset", "hidden") == [] and find("dataset", "hidden", as_alice) == [z]
    assert find("dataset", str(named["hidden"])) == []
    # Ten digits are a name (no id is that long... but one may be 1,000,000,000).
    assert find("dataset", "1000000000") == [] and find("dataset", "BIG") == [w]
    # Digits that are not ASCII are a name, not the id they would parse to.
    assert named["Plate"] == 1 and find("dataset", "\u0661") == []
    assert find("project", "screen") == sorted([x, y])
    assert find("project", str(project.id)) == sorted([x, y])
    assert find("project", "secret") == [] and find("project", "Secret", as_alice) == [z]
    sets = search.annotation_id_sets(project="Secret")  # no principal: sees everything
    assert len(sets) == 1 and _ids(session, sets[0]) == [z]
    sets = search.annotation_id_sets(dataset="Plate", principal=as_bob)
    assert len(sets) == 1 and _ids(session, sets[0]) == [x]
    sets = search.annotation_id_sets(dataset="hidden", principal=as_bob)
    assert _ids(session, sets[0]) == []


# ---------------------------------------------------------------------------- q and sets


def test_text_condition_matches_tag_key_or_value_prefixes(session: Session) -> None:
    group = add_group(session, "g", Permission.READ_ONLY)
    by_tag, by_key, by_value, none = _images(session, 4)
    dataset = Dataset(name="d", description="")
    session.add(dataset)
    session.commit()
    _tag(session, group, "Nucleus", image_id=by_tag)
    _tag(session, group, "actin", image_id=none)
    _tag(session, group, "nuke", dataset_id=dataset.id)
    _kv(session, "NUCLEAR", "yes", image_id=by_key)
    _kv(session, "stain", "nucleolin", image_id=by_value)
    _kv(session, "nuclear", "x", dataset_id=dataset.id)
    _kv(session, "other", "nu", image_id=none)

    def matching(q: str) -> list[uuid.UUID]:
        condition = search.text_condition(q)
        assert condition is not None
        return _ids(session, select(Image.id).where(condition))

    assert matching(" NUC ") == sorted([by_tag, by_key, by_value])
    assert matching("nucleu") == [by_tag]
    assert matching("nuclea") == [by_key]
    assert matching("nucleol") == [by_value]
    assert matching("nuc\x00lear") == [by_key]
    assert matching("nub") == []
    # A prefix that is the whole name, key or value matches it (the range starts there).
    assert matching("nucleus") == [by_tag]
    assert matching("nucleolin") == [by_value]
    assert matching("nuclear") == [by_key]
    assert matching("nu") == sorted([by_tag, by_key, by_value, none])
    assert search.text_condition(" \x00 ") is None


def test_annotation_id_sets_and_their_count(session: Session) -> None:
    group = add_group(session, "g", Permission.READ_ONLY)
    a, b, c = _images(session, 3)
    for image in (a, b):
        _tag(session, group, "t", image_id=image)
        _kv(session, "k", "v", image_id=image)
    _tag(session, group, "u", image_id=a)
    _kv(session, "k", "w", image_id=c)
    sets = search.annotation_id_sets(tags=("t", " ", "u"), kvs=(("k", "v"),))
    assert len(sets) == 3
    assert _count(session, sets) == 1
    assert _count(session, search.annotation_id_sets(tags=("t",), kvs=(("k", None),))) == 2
    assert _count(session, search.annotation_id_sets(kvs=(("k", None),))) == 3
    assert _count(session, search.annotation_id_sets(kvs=(("k", "v"),))) == 2
    assert search.annotation_id_sets() == []
    assert search.annotation_id_sets(tags=("\x00",)) == []


@pytest.mark.postgres
def test_text_condition_as_an_array_on_postgresql(
    postgres_admin: str,  # noqa: F811 - the fixture imported above
    postgres_template: str,  # noqa: F811 - the fixture imported above
) -> None:
    """PostgreSQL's form (``images.id = ANY(ARRAY(...))``) admits the same images."""
    from zstack_analyzer.service.db.session import make_engine, make_session_factory

    url = create_pg_database(postgres_admin, postgres_template)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as db:
            group = add_group(db, "g", Permission.READ_ONLY)
            tagged, valued, other = _images(db, 3)
            _tag(db, group, "Nucleus", image_id=tagged)
            _kv(db, "stain", "nucleolin", image_id=valued)
            _kv(db, "other", "x", image_id=other)
            for q, expected in (("NUC", [tagged, valued]), ("nucleol", [valued]), ("zz", [])):
                condition = search.text_condition(q, as_array=True)
                assert condition is not None
                assert _ids(db, select(Image.id).where(condition)) == sorted(expected)
    finally:
        engine.dispose()
        drop_pg_database(postgres_admin, url)
