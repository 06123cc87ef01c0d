"""PostgreSQL: records inserted one by one leave nothing in the full-text index's pending list.

Why (issue 22): with GIN's default ``fastupdate`` each insert went to a pending
list that every search scanned linearly until a VACUUM merged it; right after
an ingest of 100,000 records PostgreSQL searched at 1.3-1.4x a bare table's
cost. Migration 0014 turns ``fastupdate`` off, so the index is whole after
every insert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from tests.service.test_search import OIL_63, add_record
from zstack_analyzer.service.db.migrations import upgrade_database
from zstack_analyzer.service.db.search import SearchFilters, search_images
from zstack_analyzer.service.db.session import Database, make_engine

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_admin: str) -> Iterator[str]:
    from tests.service.conftest import create_pg_database, drop_pg_database

    url = create_pg_database(postgres_admin)
    try:
        yield url
    finally:
        drop_pg_database(postgres_admin, url)


def _pending_pages(engine: object, index: str) -> int:
    with engine.begin() as connection:  # type: ignore[attr-defined]
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pgstattuple"))
        pages = connection.execute(
            text("SELECT pending_pages FROM pgstatginindex(CAST(:index AS regclass))"),
            {"index": index},
        ).scalar_one()
    return int(pages)


def test_inserted_records_leave_no_pending_list(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        upgrade_database(engine)
        database = Database(engine)
        for i in range(40):
            add_record(database, f"embryo_{i:03d}.czi", objective=OIL_63)
        assert _pending_pages(engine, "ix_images_search_vector") == 0
        _, total = database.call(search_images, SearchFilters(q="embryo apochromat"))
        assert total == 40
    finally:
        engine.dispose()


def test_the_migration_merges_an_existing_pending_list(pg_url: str) -> None:
    """An index filled before 0014 (fastupdate on) is merged by the upgrade, and reset by the downgrade."""
    engine = make_engine(pg_url)
    try:
        upgrade_database(engine, "0009")
        database = Database(engine)
        with engine.begin() as connection:
            connection.execute(text("ALTER INDEX ix_images_search_vector RESET (fastupdate)"))
        for i in range(40):
            add_record(database, f"liver_{i:03d}.czi")
        assert _pending_pages(engine, "ix_images_search_vector") > 0
        upgrade_database(engine, "0014")
        assert _pending_pages(engine, "ix_images_search_vector") == 0
    finally:
        engine.dispose()
