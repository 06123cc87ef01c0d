"""Prepared tag/kv searches (``service/db/prepared_search.py``) on a migrated SQLite database.

What the page-and-total tests leave open: which searches take the prepared path at all
(the fallback answers the same rows, so only ``prepared_search``'s own answer and the
statements run tell them apart), an any-value pair followed by another pair, a page past
the end of a single match, a page of no rows (``limit=0``) that still reports the total,
and the one statement an empty first page costs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, true

from tests.mutation_kills.service_db import (
    add_group,
    add_image,
    session,  # noqa: F401 - a fixture used by name
)
from zstack_analyzer.service.annotations.models import KeyValue, Tag, TagLink, index_key
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.prepared_search import PreparedSearch, prepared_search
from zstack_analyzer.service.db.search import SearchFilters, search_rows

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.orm import Session

COLUMNS = (Image.id,)


def _images(db: Session) -> list[uuid.UUID]:
    """Three images, oldest first: (strain N2, DMSO, tag a), (strain CB, taxol), (strain N2)."""
    group = add_group(db, "lab", Permission.READ_ONLY)
    tag = Tag(group_id=group, name="a", name_key="a")
    db.add(tag)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [
        add_image(db, f"img{n}.czi", group_id=group, created_at=start + timedelta(hours=n))
        for n in range(3)
    ]
    pairs = [
        [("strain", "N2"), ("treatment", "DMSO")],
        [("strain", "CB4856"), ("treatment", "taxol")],
        [("strain", "N2")],
    ]
    for image_id, image_pairs in zip(ids, pairs, strict=True):
        for position, (key, value) in enumerate(image_pairs):
            db.add(
                KeyValue(
                    image_id=image_id,
                    position=position,
                    key=key,
                    value=value,
                    key_key=index_key(key),
                    value_key=index_key(value),
                    group_id=group,
                )
            )
    db.flush()
    db.add(TagLink(tag_id=tag.id, image_id=ids[0], group_id=group))
    db.commit()
    return ids


def _search(db: Session, filters: SearchFilters, skip: int = 0, limit: int = 10) -> Any:
    rows, total = search_rows(db, filters, COLUMNS, skip=skip, limit=limit)
    return [row[0] for row in rows], total


def test_only_tag_and_pair_searches_by_a_caller_who_sees_all_are_prepared() -> None:
    kv = SearchFilters(kvs=(("strain", "N2"),))
    for filters in (kv, SearchFilters(tags=("a",)), SearchFilters(kvs=(("strain", None),))):
        for visible in (None, true()):
            found = prepared_search(filters, COLUMNS, skip=0, limit=5, visible=visible)
            assert isinstance(found, PreparedSearch), (filters, visible)
            assert (found.skip, found.limit) == (0, 5)
    both = prepared_search(
        SearchFilters(tags=("A ",), kvs=(("Strain", "N2"),)), COLUMNS, skip=3, limit=7, visible=None
    )
    assert both is not None
    assert both.params == {
        "page_skip": 3,
        "page_limit": 7,
        "tag_0": "a",
        "kv_key_1": "strain",
        "kv_value_1": "n2",
    }
    # A condition on the images, a container, text, or a caller who sees only some: built per request.
    for filters in (
        SearchFilters(kvs=(("strain", "N2"),), format="CZI"),
        SearchFilters(kvs=(("strain", "N2"),), dataset="plate"),
        SearchFilters(tags=("a",), q="x"),
        SearchFilters(tags=("",)),  # an empty tag name is no condition at all
        SearchFilters(),
    ):
        assert prepared_search(filters, COLUMNS, skip=0, limit=5, visible=None) is None, filters
    assert prepared_search(kv, COLUMNS, skip=0, limit=5, visible=Image.owner_id == 1) is None


def test_any_value_pair_then_another_pair(session: Session) -> None:  # noqa: F811
    ids = _images(session)
    assert _search(session, SearchFilters(kvs=(("strain", None), ("treatment", "taxol")))) == (
        [ids[1]],
        1,
    )
    assert _search(session, SearchFilters(kvs=(("treatment", None), ("strain", "n2")))) == (
        [ids[0]],
        1,
    )


def test_totals_of_empty_pages(session: Session) -> None:  # noqa: F811
    ids = _images(session)
    one = SearchFilters(kvs=(("treatment", "taxol"),))
    assert _search(session, one) == ([ids[1]], 1)
    assert _search(session, one, skip=1) == ([], 1)  # past the end of a single match
    two = SearchFilters(kvs=(("strain", "n2"),))
    assert _search(session, two, limit=0) == ([], 2)  # no rows asked for: the total all the same
    assert _search(session, two, skip=1, limit=0) == ([], 2)
    assert _search(session, SearchFilters(tags=("a",)), skip=1, limit=1) == ([], 1)


def test_an_empty_first_page_is_one_statement(session: Session) -> None:  # noqa: F811
    _images(session)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        for limit in (1, 2, 10):
            statements.clear()
            assert _search(session, SearchFilters(kvs=(("strain", "nope"),)), limit=limit) == (
                [],
                0,
            )
            assert len(statements) == 1, (limit, statements)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
