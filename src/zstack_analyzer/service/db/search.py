"""Metadata search over image records: typed filters plus full text, on indexes.

Why in the database layer: it is a query over records. Free text goes to the
engine's full-text index (SQLite FTS5, PostgreSQL ``tsvector`` + GIN), typed
filters to B-tree indexed columns and the ``image_channels`` table. The user's
text is never part of the SQL: it is split into words (letters and digits
only), each word becomes a quoted prefix term, and the whole query string is a
bound parameter, so ``"`` or ``AND(`` are just characters.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, exists, func, or_, select, text
from sqlalchemy.orm import joinedload
from sqlalchemy.sql.elements import True_

from zstack_analyzer.service.db.models import Image, ImageChannel
from zstack_analyzer.service.db.search_fields import words

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime

    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import QueryableAttribute, Session
    from sqlalchemy.sql.elements import ColumnElement, TextClause
    from sqlalchemy.sql.selectable import ScalarSelect, Subquery

    from zstack_analyzer.service.auth.permissions import Principal

__all__ = [
    "FTS_TABLES",
    "SearchFilters",
    "ensure_search_index",
    "fts5_query",
    "include_in_schema_compare",
    "search_images",
    "search_rows",
    "tsquery",
]

logger = logging.getLogger(__name__)

#: SQLite FTS5 tables (and shadow tables) that the migration creates outside the models.
FTS_TABLES = ("images_fts",)
#: Most words of free text used (a longer query is cut, not refused).
MAX_QUERY_WORDS = 16


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """A validated search: free text and typed filters (``None`` = no filter)."""

    q: str | None = None
    format: str | None = None
    channel: str | None = None
    objective: str | None = None
    magnification: float | None = None
    immersion: str | None = None
    min_size_z: int | None = None
    max_size_z: int | None = None
    pixel_size_min_um: float | None = None
    pixel_size_max_um: float | None = None
    acquired_after: datetime | None = None
    acquired_before: datetime | None = None
    #: Quality (image_quality): any scene's worst channel saturated at least this share.
    saturated_min: float | None = None
    #: Best focus at a stack edge in some scene (True) or in none (False).
    focus_edge: bool | None = None
    #: Some scene's weakest channel has a signal-to-background at most this.
    snr_max: float | None = None
    #: Annotations (service/annotations/search.py): every tag named (AND) ...
    tags: tuple[str, ...] = ()
    #: ... every (key, value) pair (value ``None``: any value) ...
    kvs: tuple[tuple[str, str | None], ...] = ()
    #: ... in a project / dataset of this name (or id) the caller can see.
    project: str | None = None
    dataset: str | None = None


def fts5_query(q: str) -> str | None:
    """An FTS5 MATCH string: every word as a quoted prefix term, all required.

    Examples
    --------
    >>> fts5_query('dapi "63x AND(')
    '"dapi"* "63x"* "and"*'
    >>> fts5_query('"*()') is None
    True
    """
    terms = words(q)[:MAX_QUERY_WORDS]
    return " ".join(f'"{term}"*' for term in terms) or None


def tsquery(q: str) -> str | None:
    """A PostgreSQL ``to_tsquery('simple', ...)`` string with the same meaning as :func:`fts5_query`.

    Examples
    --------
    >>> tsquery("DAPI 63x/1.4")
    "'dapi':* & '63x':* & '1':* & '4':*"
    """
    terms = words(q)[:MAX_QUERY_WORDS]
    return " & ".join(f"'{term}':*" for term in terms) or None


def include_in_schema_compare(name: str | None, type_: str, _parents: Any = None) -> bool:
    """Alembic ``include_name`` hook: the FTS5 tables are not in the models on purpose."""
    return not (type_ == "table" and name is not None and name.startswith(FTS_TABLES))


def compare_schema_types(
    migration: Any, _inspected: Any, _declared: Any, inspected_type: Any, declared_type: Any
) -> bool | None:
    """Alembic ``compare_type`` hook: its comparison, except VARCHAR lengths on SQLite.

    Why: SQLite ignores the lengths, and widening a column there means rebuilding the
    table, which drops ``images``' FTS triggers, so revisions widen columns on PostgreSQL
    only (0015). Without this, ``alembic revision --autogenerate`` on SQLite proposed
    rebuilding ``images`` to widen ``format``. ``None`` leaves the decision to Alembic.
    Used by the migrations' ``env.py`` and by the schema test.
    """
    from sqlalchemy import String

    both_text = isinstance(inspected_type, String) and isinstance(declared_type, String)
    if migration.dialect.name == "sqlite" and both_text and type(declared_type) is String:
        return False
    return None


#: The SQLite triggers of migration 0004 (recreated when a table rebuild dropped them).
SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS images_fts_insert AFTER INSERT ON images BEGIN
        INSERT INTO images_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS images_fts_delete AFTER DELETE ON images BEGIN
        INSERT INTO images_fts (images_fts, rowid, search_text)
        VALUES ('delete', old.rowid, old.search_text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS images_fts_update AFTER UPDATE OF search_text ON images
    BEGIN
        INSERT INTO images_fts (images_fts, rowid, search_text)
        VALUES ('delete', old.rowid, old.search_text);
        INSERT INTO images_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
    END""",
)


def ensure_search_index(engine: Engine) -> bool:
    """Make the SQLite full-text index whole again if something rebuilt ``images``; ``True`` if it did.

    Why: a later migration that rebuilds the table in SQLite's "move and copy"
    way drops its triggers and renumbers its rowids, and so does a VACUUM for
    the rowids; the index would silently miss or mismatch records. The check
    (FTS5 ``integrity-check`` against the table) costs about a second per
    100,000 records; PostgreSQL needs none (its trigger and GIN index go with
    the table).
    """
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    if engine.dialect.name != "sqlite":
        return False
    with engine.begin() as connection:
        if "images_fts" not in inspect(connection).get_table_names():
            return False
        triggers = {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'images'"
            )
        }
        missing = {"images_fts_insert", "images_fts_delete", "images_fts_update"} - triggers
        for statement in SQLITE_TRIGGERS:
            connection.exec_driver_sql(statement)
    healthy = not missing
    if healthy:
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "INSERT INTO images_fts (images_fts, rank) VALUES ('integrity-check', 1)"
                )
        except DBAPIError:
            healthy = False
    if healthy:
        return False
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO images_fts (images_fts) VALUES ('rebuild')")
    logger.warning("the full-text search index was out of step with the images table: rebuilt")
    return True


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(
    session: Session, filters: SearchFilters, id_sets: list[Select[Any]]
) -> list[ColumnElement[bool] | TextClause]:
    """Every condition of ``filters`` on ``images``; ``id_sets``: its annotation id sets."""
    from zstack_analyzer.service.annotations.search import text_condition

    conditions: list[ColumnElement[bool] | TextClause] = []
    dialect = session.get_bind().dialect.name
    if filters.q:
        full_text: TextClause | None = None
        if dialect == "postgresql":
            query = tsquery(filters.q)
            if query:
                full_text = text(
                    "images.search_vector @@ to_tsquery('simple', :fts_query)"
                ).bindparams(fts_query=query)
        else:
            query = fts5_query(filters.q)
            if query:
                full_text = text(
                    "images.rowid IN (SELECT rowid FROM images_fts WHERE images_fts MATCH :fts_query)"
                ).bindparams(fts_query=query)
        # q also finds images by a tag name, a key or a value that starts with it.
        annotated = text_condition(filters.q, as_array=dialect == "postgresql")
        parts = [part for part in (full_text, annotated) if part is not None]
        if parts:
            conditions.append(or_(*parts) if len(parts) > 1 else parts[0])
    conditions.extend(Image.id.in_(ids) for ids in id_sets)
    if filters.format is not None:
        conditions.append(Image.format == filters.format)
    if filters.channel is not None:
        key = filters.channel.strip().lower()
        conditions.append(
            exists().where(
                and_(
                    ImageChannel.image_id == Image.id,
                    or_(ImageChannel.name_key == key, ImageChannel.fluorophore_key == key),
                )
            )
        )
    if filters.objective is not None:
        pattern = f"%{_like_escape(filters.objective.strip().lower())}%"
        conditions.append(Image.objective.like(pattern, escape="\\"))
    if filters.magnification is not None:
        conditions.append(Image.magnification == filters.magnification)
    if filters.immersion is not None:
        conditions.append(Image.immersion == filters.immersion.strip().lower())
    if filters.min_size_z is not None:
        conditions.append(Image.depth >= filters.min_size_z)
    if filters.max_size_z is not None:
        conditions.append(Image.depth <= filters.max_size_z)
    if filters.pixel_size_min_um is not None:
        conditions.append(Image.pixel_size_x >= filters.pixel_size_min_um)
    if filters.pixel_size_max_um is not None:
        conditions.append(Image.pixel_size_x <= filters.pixel_size_max_um)
    if filters.acquired_after is not None:
        conditions.append(Image.acquired_at >= filters.acquired_after)
    if filters.acquired_before is not None:
        conditions.append(Image.acquired_at < filters.acquired_before)
    conditions.extend(_quality_conditions(filters))
    return conditions


def _quality_conditions(filters: SearchFilters) -> list[ColumnElement[bool]]:
    """The quality filters, each an indexed ``EXISTS`` on ``image_quality``."""
    from zstack_analyzer.service.db.quality import ImageQuality

    def measured(condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return exists().where(and_(ImageQuality.image_id == Image.id, condition))

    conditions: list[ColumnElement[bool]] = []
    if filters.saturated_min is not None:
        conditions.append(measured(ImageQuality.max_saturated_fraction >= filters.saturated_min))
    if filters.focus_edge is True:
        conditions.append(measured(ImageQuality.focus_edge.is_(True)))
    elif filters.focus_edge is False:
        conditions.append(measured(ImageQuality.error.is_(None)))
        conditions.append(~measured(ImageQuality.focus_edge.is_(True)))
    if filters.snr_max is not None:
        conditions.append(measured(ImageQuality.min_snr <= filters.snr_max))
    return conditions


def search_images(
    session: Session,
    filters: SearchFilters,
    *,
    skip: int = 0,
    limit: int = 100,
    visible: ColumnElement[bool] | None = None,
    principal: Principal | None = None,
) -> tuple[list[Image], int]:
    """One page of matching images (whole records), newest first, and the total number matching.

    Each image comes with its metadata JSON (its own table since migration
    0006) joined by primary key. A list of results needs far less: see
    :func:`search_rows`, which the search route uses.
    """
    page, total, plain_walk = _page_and_total(session, filters, skip, limit, visible, principal)
    statement = (
        select(Image, total.label("total"))
        .join(page, Image.id == page.c.id)
        .options(joinedload(Image.details))
        .order_by(page.c.created_at.desc(), page.c.id)
    )
    with _index_scans(session, needed=not plain_walk):
        found = session.execute(statement).all()
        if found:
            return [row[0] for row in found], int(found[0][-1])
        return [], _total_past_the_end(session, total, skip, limit)


def search_rows(
    session: Session,
    filters: SearchFilters,
    columns: Sequence[ColumnElement[Any] | QueryableAttribute[Any]],
    *,
    skip: int = 0,
    limit: int = 100,
    visible: ColumnElement[bool] | None = None,
    principal: Principal | None = None,
) -> tuple[list[Sequence[Any]], int]:
    """One page of matching images as plain rows of ``columns``, newest first, and the total.

    ``columns`` are expressions over ``images`` (columns, or scalar subqueries
    correlated to it, such as a page's owner names or quality flags), so a
    page of results is one statement that reads only what it shows. Why not
    ORM objects: building 50 whole records (and decoding their metadata and
    scene JSON) cost more than the query itself on PostgreSQL.
    """
    from zstack_analyzer.service.db.prepared_search import prepared_search

    prepared = prepared_search(filters, columns, skip=skip, limit=limit, visible=visible)
    if prepared is not None:  # the same statement, built once for searches of its shape
        return prepared.run(session)
    page, total, plain_walk = _page_and_total(session, filters, skip, limit, visible, principal)
    statement = rows_statement(columns, page, total)
    with _index_scans(session, needed=not plain_walk):
        # Core, not the ORM: plain rows need none of its loading machinery.
        found: list[Sequence[Any]] = list(session.connection().execute(statement).all())
        if found:
            return found, int(found[0][-1])
        return [], _total_past_the_end(session, total, skip, limit)


def _page_and_total(
    session: Session,
    filters: SearchFilters,
    skip: int,
    limit: int,
    visible: ColumnElement[bool] | None,
    principal: Principal | None,
) -> tuple[Subquery, ScalarSelect[int], bool]:
    """The page's ``(id, created_at)``, the total, and whether the search is a plain walk.

    Why the page's ids in a subquery: the engine orders the matches by their
    narrow key alone (SQLite otherwise joined and sorted thousands of whole
    rows), then only the page's rows are read. The total is a scalar subquery
    of the same statement (computed once), so a search is one round trip; only
    a page past the end asks for the total on its own. ``visible``
    (``auth.permissions.visible_images_filter``) is one more condition, so the
    page and the total see only what the caller may.

    A plain walk is a search whose total comes from the annotation tables
    alone (:func:`_annotation_total`): its page walks the ``(created_at, id)``
    index with one annotation index probe per image, and nothing in it is a
    scan of ``images`` the planner could misprice, so it needs no
    :func:`_index_scans` (two round trips saved).
    """
    from zstack_analyzer.service.annotations.search import annotation_id_sets

    annotated = annotation_id_sets(
        tags=filters.tags,
        kvs=filters.kvs,
        project=filters.project,
        dataset=filters.dataset,
        principal=principal,
    )
    conditions = _conditions(session, filters, annotated)
    if visible is not None:
        conditions.append(visible)
    page = page_subquery(conditions, skip, limit)
    # correlate(None): the count has its own FROM images, not the page row's.
    counted_query = _annotation_total(filters, visible, annotated)
    plain_walk = counted_query is not None
    if counted_query is None:
        counted_query = select(func.count()).select_from(Image).where(*conditions)
    return page, counted_query.correlate(None).scalar_subquery(), plain_walk


def page_subquery(
    conditions: Sequence[ColumnElement[bool] | TextClause], skip: Any, limit: Any
) -> Subquery:
    """The page's ``(id, created_at)`` of the images meeting ``conditions``, newest first.

    ``skip`` and ``limit``: numbers, or bind parameters (``prepared_search``).
    """
    return (
        select(Image.id, Image.created_at)
        .where(*conditions)
        .order_by(Image.created_at.desc(), Image.id)
        .offset(skip)
        .limit(limit)
        .subquery("page")
    )


def rows_statement(
    columns: Sequence[ColumnElement[Any] | QueryableAttribute[Any]],
    page: Subquery,
    total: ScalarSelect[int],
) -> Select[Any]:
    """The page's rows of ``columns`` (expressions over ``images``) with the total in each, in page order."""
    return (
        select(*columns, total.label("total"))
        .select_from(Image)
        .join(page, Image.id == page.c.id)
        .order_by(page.c.created_at.desc(), page.c.id)
    )


def _total_past_the_end(session: Session, total: ScalarSelect[int], skip: int, limit: int) -> int:
    """The total when the page came back empty: 0 on the first page, else asked for alone."""
    counted = 0 if skip == 0 and limit > 0 else session.scalar(select(total))
    return int(counted or 0)


def _annotation_total(
    filters: SearchFilters, visible: ColumnElement[bool] | None, annotated: list[Select[Any]]
) -> Select[int] | None:
    """The total counted from the annotation tables alone, where that is the same number.

    That is a search of tags, key-value pairs and containers only (no text, no
    image column, no quality; ``annotated``: their id sets), by a caller who
    sees every image (no accounts, or an admin without a group narrowing).
    Anything else: ``None``, the count over ``images``. See
    :func:`~zstack_analyzer.service.annotations.search.count_in_all`.
    """
    if visible is not None and not isinstance(visible, True_):
        return None
    only_annotations = replace(filters, tags=(), kvs=(), project=None, dataset=None)
    if only_annotations != SearchFilters():
        return None
    from zstack_analyzer.service.annotations.search import count_in_all

    return count_in_all(annotated) if annotated else None


#: What :func:`_index_scans` sets (one round trip) and puts back (one more).
INDEX_SCANS_ON = "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_custom_plan"
INDEX_SCANS_OFF = "SET LOCAL enable_seqscan = on; SET LOCAL plan_cache_mode = auto"


@contextmanager
def _index_scans(session: Session, *, needed: bool = True) -> Iterator[None]:
    """On PostgreSQL, have the planner prefer index scans for the statements run inside.

    Why: PostgreSQL prices a full-text match or a ``LIKE`` at one operator
    cost per row, so on the narrow ``images`` rows it chose a sequential scan
    that evaluates ``@@`` on all 100,000 rows (138 ms to count 27,846 matches)
    over the GIN bitmap (34 ms). ``SET LOCAL`` lasts to the end of the
    transaction, so the setting is put back right after; SQLite has no such
    setting (its planner already uses the indexes). A ``kv=`` search needs it
    too when its total is counted over ``images`` (a group member's): priced
    by ``random_page_cost``, the count's 5,000 primary-key probes lost to a
    sequential scan of every image that took 3x as long. ``needed=False``
    (a plain walk, see :func:`_page_and_total`) runs the statements as they are.

    Custom plans only (``plan_cache_mode``), for the same reason: psycopg
    prepares a statement on the server from its fifth run, and PostgreSQL then
    switches to a generic plan that prices every bound ``tsquery`` or range at
    a default 500 rows. For ``q=dapi`` (27,846 matches) that plan read and
    sorted every match to find the page, where the custom plan walks the
    ``(created_at, id)`` index for 50 rows: the page cost as much as the count
    and a search twice the bare query (1.9x at 100,000 images). Planning
    each search again costs about half a millisecond.
    """
    if not needed or session.get_bind().dialect.name != "postgresql":
        yield
        return
    connection = session.connection()
    connection.exec_driver_sql(INDEX_SCANS_ON)
    try:
        yield
    finally:
        connection.exec_driver_sql(INDEX_SCANS_OFF)
