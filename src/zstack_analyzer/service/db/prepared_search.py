"""Annotation searches (``tag=``, ``kv=``) as statements built once per shape, run with their values.

Why: a ``kv=KEY:VALUE`` search by a caller who sees every image is a fast
statement (an index walk and an index-only count, 2.5 ms on PostgreSQL at
100,000 images), and building it anew for each request (the page, the
count, the summary columns) and having SQLAlchemy derive its cache key cost
another 0.45 ms in Python, a fifth of the bare SQL's time. The statement
depends only on the search's shape (how many tags, which kind of pair
condition each ``kv=`` is), so it is built once per shape with bind
parameters and its cache key is computed once; a search then only binds its
values. It is the statement ``search_rows`` builds for the same search
(the same page, total and columns; see ``tests/service/test_search_pages_and_totals.py``).

Other searches (free text, image columns, containers, a caller whose
visibility is a condition) are built per request as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, String, bindparam, select
from sqlalchemy.sql.elements import True_

from zstack_analyzer.service.annotations.models import KEY_INDEX_CHARS, index_key
from zstack_analyzer.service.annotations.search import count_in_all, kv_ids_of, tag_ids_of
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.search import SearchFilters, page_subquery, rows_statement

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Select
    from sqlalchemy.orm import QueryableAttribute, Session
    from sqlalchemy.sql.elements import ColumnElement

__all__ = ["PreparedSearch", "prepared_search"]

#: Kinds of a ``kv=`` condition: any value, a value within the indexed prefix, a longer one.
ANY, EXACT, WHOLE = "kv-any", "kv", "kv-whole"
#: Statements kept (shapes x column lists; a service uses a handful).
CACHED_SHAPES = 64


@dataclass(frozen=True, slots=True)
class PreparedSearch:
    """A built search statement and this search's values for it."""

    statement: Select[Any]
    #: The total alone, for a page past the end.
    total: Select[Any]
    params: dict[str, Any]
    skip: int
    limit: int

    def run(self, session: Session) -> tuple[list[Sequence[Any]], int]:
        """The page's rows (the total last in each) and the total, as ``search_rows`` answers."""
        connection = session.connection()
        found: list[Sequence[Any]] = list(connection.execute(self.statement, self.params).all())
        if found:
            return found, int(found[0][-1])
        if self.skip == 0 and self.limit > 0:
            return [], 0
        return [], int(connection.execute(self.total, self.params).scalar() or 0)


def prepared_search(
    filters: SearchFilters,
    columns: Sequence[ColumnElement[Any] | QueryableAttribute[Any]],
    *,
    skip: int,
    limit: int,
    visible: ColumnElement[bool] | None,
) -> PreparedSearch | None:
    """The search as a statement built for its shape, or ``None`` when it is not of such a shape.

    Such a search has ``tag=`` and ``kv=`` conditions only, by a caller who
    sees every image (``visible`` ``None`` or ``true``): its total is counted
    from the annotation tables alone (``search._annotation_total``).
    """
    if visible is not None and not isinstance(visible, True_):
        return None
    if replace(filters, tags=(), kvs=()) != SearchFilters():
        return None
    shape: list[str] = []
    params: dict[str, Any] = {"page_skip": skip, "page_limit": limit}
    for name in filters.tags:
        name_key = index_key(name)
        if name_key:  # an empty name is no condition (annotation_id_sets)
            params[f"tag_{len(shape)}"] = name_key
            shape.append("tag")
    for key, value in filters.kvs:
        n = len(shape)
        params[f"kv_key_{n}"] = index_key(key)
        if value is None:
            shape.append(ANY)
            continue
        params[f"kv_value_{n}"] = index_key(value)
        if len(value.strip()) > KEY_INDEX_CHARS:
            params[f"kv_whole_{n}"] = value.strip()
            shape.append(WHOLE)
        else:
            shape.append(EXACT)
    if not shape:
        return None
    statement, total = _built(tuple(columns), tuple(shape))
    return PreparedSearch(statement, total, params, skip, limit)


@lru_cache(maxsize=CACHED_SHAPES)
def _built(
    columns: tuple[ColumnElement[Any] | QueryableAttribute[Any], ...], shape: tuple[str, ...]
) -> tuple[Select[Any], Select[Any]]:
    """The statement (and the total alone) of searches of ``shape``, with bind parameters for the values.

    Parameters are named by position in :func:`prepared_search`. The
    statements are immutable and shared between threads, as SQLAlchemy
    allows; each computes its cache key once.
    """
    sets: list[Select[Any]] = []
    for n, kind in enumerate(shape):
        if kind == "tag":
            sets.append(tag_ids_of(bindparam(f"tag_{n}", type_=String())))
            continue
        key_key = bindparam(f"kv_key_{n}", type_=String())
        value_key = None if kind == ANY else bindparam(f"kv_value_{n}", type_=String())
        whole = bindparam(f"kv_whole_{n}", type_=String()) if kind == WHOLE else None
        sets.append(kv_ids_of(key_key, value_key, whole))
    page = page_subquery(
        [Image.id.in_(ids) for ids in sets],
        bindparam("page_skip", type_=Integer()),
        bindparam("page_limit", type_=Integer()),
    )
    total = count_in_all(sets).correlate(None).scalar_subquery()
    return rows_statement(columns, page, total), select(total)
