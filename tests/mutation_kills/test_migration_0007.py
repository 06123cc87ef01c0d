"""Revision 0007 (accounts) beyond its schema: when the group ``default`` it makes was created.

Why: the one-step test (``test_migration_steps.py``) compares the schema 0007 builds and the rows
it moves, and checks that ``default``'s ``created_at`` is not older than the upgrade. On a
machine whose local zone is UTC that cannot tell the upgrade's instant (``datetime.now(UTC)``,
as the models' ``utcnow`` stamps a group the service makes) from the local wall clock taken for
UTC (``datetime.now()``): on SQLite both are stored as the same text. Elsewhere the second is
hours off, on SQLite (wall-clock text) and on PostgreSQL (a naive value is read in the server's
zone), so the upgrade is run here with the process in Tokyo (UTC+9).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

# The one-step test's fixtures: a copy of the database at 0006, built by the revisions as written.
from tests.mutation_kills.test_migration_steps import (  # noqa: F401 (fixtures used by name)
    Step,
    _add_image,
    clean,
    clean_databases,
    step,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def tokyo() -> Iterator[None]:
    """The process's local zone set to Asia/Tokyo (UTC+9, no daylight saving), then restored."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.usefixtures("tokyo")
@pytest.mark.parametrize("revision", ["0007"])
def test_the_default_group_is_dated_at_the_upgrade_whatever_the_local_zone(
    step: Step,  # noqa: F811 (the fixture imported above, asked for by name)
    revision: str,
) -> None:
    assert datetime.now().utcoffset() is None  # a naive local clock, nine hours ahead of UTC
    assert abs(datetime.now() - datetime.now(UTC).replace(tzinfo=None)) > timedelta(hours=8)
    with step.engine.begin() as connection:
        _add_image(connection, filename="before accounts")
    before = datetime.now(UTC)
    step.up()
    after = datetime.now(UTC)
    groups = sa.table(
        "groups", sa.column("name", sa.String()), sa.column("created_at", sa.DateTime(True))
    )
    with step.engine.connect() as connection:
        rows = connection.execute(sa.select(groups.c.name, groups.c.created_at)).all()
    assert [name for name, _ in rows] == ["default"]
    created = rows[0][1]
    # SQLite keeps the UTC wall clock without an offset (as the models' columns do).
    created = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
    step.down()
