"""Alembic's type comparison as the migrations use it (``db/search.py`` ``compare_schema_types``).

Why: SQLite ignores VARCHAR lengths and widening a column there rebuilds the table (and
drops the FTS triggers), so revisions widen on PostgreSQL only; the hook keeps
``alembic revision --autogenerate`` on SQLite from proposing that rebuild. It must hide
*only* a length change of a plain VARCHAR on SQLite: a real change of type (a number
become text, text become TEXT, a length on PostgreSQL) is still reported. Real
databases, real autogenerate: a table made by DDL against declared models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.service.conftest import (
    database_url,  # noqa: F401 - a fixture used by name
    postgres_admin,  # noqa: F401 - a fixture used by name
)
from zstack_analyzer.service.db.search import compare_schema_types
from zstack_analyzer.service.db.session import make_engine

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy.engine import Engine

#: What the database has (made by DDL), column by column.
CREATED = """CREATE TABLE widths (
    id INTEGER PRIMARY KEY,
    narrow VARCHAR(32),
    coded VARCHAR(10),
    counted INTEGER,
    numbered VARCHAR(8)
)"""


def _declared() -> sa.MetaData:
    """What the models would declare for the same table."""
    metadata = sa.MetaData()
    sa.Table(
        "widths",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("narrow", sa.String(64)),  # only wider
        sa.Column("coded", sa.Text),  # VARCHAR become TEXT
        sa.Column("counted", sa.String(20)),  # a number become text
        sa.Column("numbered", sa.Integer),  # text become a number
    )
    return metadata


@pytest.fixture
def engine(tmp_path: Path, database_url: str | None) -> Iterator[Engine]:  # noqa: F811
    made = make_engine(database_url or f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with made.begin() as connection:
            connection.exec_driver_sql(CREATED)
        yield made
    finally:
        made.dispose()


def _changed_types(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": compare_schema_types}
        )
        diffs = compare_metadata(context, _declared())
    changed = set()
    for diff in diffs:
        for step in diff if isinstance(diff, list) else [diff]:
            if step[0] == "modify_type":  # (op, schema, table, column, info, old, new)
                changed.add(step[3])
    return changed


def test_only_a_wider_varchar_on_sqlite_is_hidden(engine: Engine) -> None:
    changed = _changed_types(engine)
    if engine.dialect.name == "sqlite":
        assert changed == {"coded", "counted", "numbered"}
    else:
        assert changed == {"narrow", "coded", "counted", "numbered"}


def test_the_hooks_answers_column_by_column(engine: Engine) -> None:
    """``False``: no difference; ``None``: Alembic decides (it reports each of these)."""
    declared = _declared().tables["widths"]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        found = {c["name"]: c["type"] for c in sa.inspect(connection).get_columns("widths")}
        answers = {
            name: compare_schema_types(
                context, None, declared.c[name], found[name], declared.c[name].type
            )
            for name in ("narrow", "coded", "counted", "numbered")
        }
    sqlite = engine.dialect.name == "sqlite"
    assert answers == {
        "narrow": False if sqlite else None,
        "coded": None,
        "counted": None,
        "numbered": None,
    }
