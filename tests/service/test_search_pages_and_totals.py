"""Search pages and totals against a brute-force answer: annotations, full text, visibility, paging.

Why: ``search_images`` answers in one statement (the page's ids, its rows and
the total as a scalar subquery), and ``q`` ORs the full-text match with an id
array of tag/key/value matches on PostgreSQL. A wrong lean query (a count
correlated to the page row, a semi-join that counts pairs instead of images,
a visibility condition left out of the count, a page past the end without
its total) answers differently from the rule written out here in Python:
every image the caller may see (``can_view``) that meets every condition,
newest first. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import insert, update

from tests.service.test_search import add_record
from zstack_analyzer.service.annotations.models import (
    Dataset,
    DatasetImage,
    KeyValue,
    Tag,
    TagLink,
    index_key,
)
from zstack_analyzer.service.auth.models import Group, Permission, User
from zstack_analyzer.service.auth.permissions import (
    SINGLE_USER,
    GroupRole,
    Principal,
    can_view,
    visible_images_filter,
)
from zstack_analyzer.service.db.migrations import upgrade_database
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.search import SearchFilters, search_images
from zstack_analyzer.service.db.session import Database, make_engine
from zstack_analyzer.service.image_summaries import search_summaries

if TYPE_CHECKING:
    from collections.abc import Iterator

SHARED, PRIVATE = 1001, 1002  # group ids
MEMBER, OTHER = 2001, 2002  # user ids
# Eight images, oldest first: (filename, group, owner, pairs, tags, in the dataset)
IMAGES: list[tuple[str, int, int | None, list[tuple[str, str]], list[str], bool]] = [
    ("embryo_0.czi", SHARED, None, [("strain", "N2"), ("treatment", "DMSO")], ["mitosis"], True),
    ("embryo_1.czi", SHARED, OTHER, [("strain", "CB4856"), ("treatment", "dmso")], [], True),
    # The same pair twice: one image, counted once.
    (
        "embryo_2.czi",
        SHARED,
        None,
        [("Strain", "n2"), ("strain", "N2"), ("treatment", "DMSO")],
        ["mitosis"],
        True,
    ),
    ("embryo_3.czi", SHARED, OTHER, [("strain", "CB4856"), ("treatment", "taxol")], [], False),
    ("embryo_4.czi", SHARED, None, [("strain", "N2")], ["mitosis"], True),
    ("zygote_5.czi", PRIVATE, OTHER, [("strain", "CB4856")], ["mitosis"], False),
    ("embryo_6.czi", PRIVATE, MEMBER, [("strain", "N2"), ("treatment", "DMSO")], [], True),
    ("embryo_7.czi", PRIVATE, OTHER, [("strain", "N2")], ["zygote"], False),
]

#: A member of the shared (read-only) group who owns one image of the private group.
MEMBER_PRINCIPAL = Principal(
    user_id=MEMBER,
    username="member",
    groups={SHARED: GroupRole(group_id=SHARED, name="shared", level=Permission.READ_ONLY)},
    via="api-token",
)
PRINCIPALS = {"admin": SINGLE_USER, "member": MEMBER_PRINCIPAL}


@pytest.fixture(scope="module")
def world(
    module_database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Database, list[str]]]:
    """A migrated database with :data:`IMAGES`, their pairs, tags and one dataset."""
    url = (
        module_database_url or f"sqlite:///{tmp_path_factory.mktemp('search-pages') / 'search.db'}"
    )
    engine = make_engine(url)
    try:
        upgrade_database(engine)
        yield _populate(Database(engine)), _ids(engine)
    finally:
        engine.dispose()


def _ids(engine: Any) -> list[str]:
    from sqlalchemy import select

    with engine.connect() as connection:
        rows = connection.execute(select(Image.id).order_by(Image.created_at)).all()
    return [str(row[0]) for row in rows]


def _populate(database: Database) -> Database:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [
        add_record(database, name, created_at=start + timedelta(hours=n))
        for n, (name, *_rest) in enumerate(IMAGES)
    ]
    now = datetime(2026, 2, 1, tzinfo=UTC)
    with database.sessions() as session:
        session.execute(
            insert(Group),
            [
                {"id": SHARED, "name": "shared", "permissions": Permission.READ_ONLY.value},
                {"id": PRIVATE, "name": "private", "permissions": Permission.PRIVATE.value},
            ],
        )
        session.execute(
            insert(User),
            [{"id": MEMBER, "username": "member"}, {"id": OTHER, "username": "other"}],
        )
        dataset = Dataset(name="Plate", group_id=SHARED)
        tags = {
            name: Tag(group_id=SHARED, name=name, name_key=name) for name in ("mitosis", "zygote")
        }
        session.add_all([dataset, *tags.values()])
        session.flush()
        for image_id, (_name, group, owner, pairs, image_tags, in_dataset) in zip(
            ids, IMAGES, strict=True
        ):
            key = _uuid(image_id)
            session.execute(
                update(Image).where(Image.id == key).values(group_id=group, owner_id=owner)
            )
            for position, (k, v) in enumerate(pairs):
                session.add(
                    KeyValue(
                        image_id=key,
                        position=position,
                        key=k,
                        value=v,
                        key_key=index_key(k),
                        value_key=index_key(v),
                        group_id=group,
                        created_at=now,
                    )
                )
            for name in image_tags:
                session.add(TagLink(tag_id=tags[name].id, image_id=key, group_id=group))
            if in_dataset:
                session.add(DatasetImage(dataset_id=dataset.id, image_id=key))
        # A pair on the dataset itself (no image): never an image match, never counted.
        session.add(
            KeyValue(
                dataset_id=dataset.id,
                position=0,
                key="strain",
                value="N2",
                key_key="strain",
                value_key="n2",
                group_id=SHARED,
                created_at=now,
            )
        )
        session.commit()
    return database


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)


class _Row:
    """What ``can_view`` reads of an image."""

    def __init__(self, owner_id: int | None, group_id: int | None) -> None:
        self.owner_id = owner_id
        self.group_id = group_id


def _expected(ids: list[str], principal: Principal, keep: Any) -> list[str]:
    """The rule in Python: visible, meets ``keep``, newest first."""
    return [
        image_id
        for image_id, spec in reversed(list(zip(ids, IMAGES, strict=True)))
        if can_view(principal, _Row(spec[2], spec[1])) and keep(spec)
    ]


def _pairs(spec: Any) -> set[tuple[str, str]]:
    return {(index_key(k), index_key(v)) for k, v in spec[3]}


CASES: list[tuple[str, SearchFilters, Any]] = [
    (
        "kv=strain:N2",
        SearchFilters(kvs=(("strain", "N2"),)),
        lambda s: ("strain", "n2") in _pairs(s),
    ),
    (
        "kv=strain (any value)",
        SearchFilters(kvs=(("strain", None),)),
        lambda s: any(k == "strain" for k, _ in _pairs(s)),
    ),
    (
        "kv=strain:N2 & kv=treatment:dmso",
        SearchFilters(kvs=(("strain", "N2"), ("treatment", "dmso"))),
        lambda s: {("strain", "n2"), ("treatment", "dmso")} <= _pairs(s),
    ),
    (
        "kv=strain:N2 & tag=mitosis",
        SearchFilters(kvs=(("strain", "N2"),), tags=("mitosis",)),
        lambda s: ("strain", "n2") in _pairs(s) and "mitosis" in s[4],
    ),
    (
        "kv=strain:N2 & dataset=Plate",
        SearchFilters(kvs=(("strain", "N2"),), dataset="plate"),
        lambda s: ("strain", "n2") in _pairs(s) and s[5],
    ),
    (
        "kv=treatment:taxol & format=CZI",
        SearchFilters(kvs=(("treatment", "taxol"),), format="CZI"),
        lambda s: ("treatment", "taxol") in _pairs(s),
    ),
    # Full text (the filename) or an annotation (a tag name): both kinds of match.
    ("q=zygote", SearchFilters(q="zygote"), lambda s: "zygote" in s[0] or "zygote" in s[4]),
    # A key prefix: every image with a "strain" pair (none has the word in its filename).
    ("q=strai", SearchFilters(q="strai"), lambda s: any(k == "strain" for k, _ in _pairs(s))),
    (
        "q=zygote & kv=strain:N2",
        SearchFilters(q="zygote", kvs=(("strain", "N2"),)),
        lambda s: ("zygote" in s[0] or "zygote" in s[4]) and ("strain", "n2") in _pairs(s),
    ),
    ("kv=strain:nope", SearchFilters(kvs=(("strain", "nope"),)), lambda _s: False),
    # Annotations only: for a caller who sees everything the total is counted from the
    # annotation tables alone (db/search.py _annotation_total); it must be the same number.
    ("tag=mitosis", SearchFilters(tags=("mitosis",)), lambda s: "mitosis" in s[4]),
    ("dataset=Plate", SearchFilters(dataset="plate"), lambda s: s[5]),
    (
        "tag=mitosis & dataset=Plate & kv=strain",
        SearchFilters(tags=("mitosis",), dataset="plate", kvs=(("strain", None),)),
        lambda s: "mitosis" in s[4] and s[5] and any(k == "strain" for k, _ in _pairs(s)),
    ),
]


@pytest.mark.parametrize("path", ["records", "summaries"])
@pytest.mark.parametrize("who", sorted(PRINCIPALS))
@pytest.mark.parametrize(("label", "filters", "keep"), CASES, ids=[c[0] for c in CASES])
def test_pages_and_totals_match_the_rule(
    world: tuple[Database, list[str]],
    who: str,
    label: str,
    filters: SearchFilters,
    keep: Any,
    path: str,
) -> None:
    """``records``: ``search_images`` (whole records); ``summaries``: the search route's page."""
    database, ids = world
    principal = PRINCIPALS[who]
    expected = _expected(ids, principal, keep)
    run = search_images if path == "records" else search_summaries

    def search(skip: int, limit: int) -> tuple[list[str], int]:
        rows, total = database.call(
            lambda session: run(
                session,
                filters,
                skip=skip,
                limit=limit,
                visible=visible_images_filter(principal),
                principal=principal,
            )
        )
        return [str(row.id) for row in rows], total

    assert search(0, 100) == (expected, len(expected)), label
    # One row a page: the total is still every match (not the page's, not the pairs').
    for skip in range(len(expected)):
        assert search(skip, 1) == ([expected[skip]], len(expected)), (label, skip)
    assert search(1, 2) == (expected[1:3], len(expected)), label
    # Past the end: no rows, the total all the same.
    assert search(len(expected), 5) == ([], len(expected)), label
    assert search(len(expected) + 3, 5) == ([], len(expected)), label


def test_the_rule_sees_what_the_fixture_says(world: tuple[Database, list[str]]) -> None:
    """The data above makes the cases tell apart what they should (guards the test itself)."""
    _database, ids = world
    everyone = _expected(ids, MEMBER_PRINCIPAL, lambda _s: True)
    assert len(everyone) == 6  # five shared images and the member's own private one
    n2 = _expected(ids, MEMBER_PRINCIPAL, CASES[0][2])
    assert len(n2) == 4 and ids[2] in n2  # embryo_2 has the pair twice
    admin_n2 = _expected(ids, SINGLE_USER, CASES[0][2])
    assert len(admin_n2) == 5  # embryo_7 is hidden from the member only
    assert _expected(ids, SINGLE_USER, CASES[6][2]) == [ids[7], ids[5]]
