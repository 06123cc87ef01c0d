"""Metadata search (``service/db/search.py``) on PostgreSQL: the ``tsquery`` branch, the seqscan hint.

The SQLite cases are in ``test_search_rules.py``; these run the same service on a
PostgreSQL database of their own (copied from the migrated template, so no DDL per
test): free text through ``to_tsquery``, text without a word, and the planner hint
(``SET LOCAL enable_seqscan``) that the search sets around its statements and puts back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event, text

from tests.service.conftest import (
    _testclient_class,
    create_pg_database,
    drop_pg_database,
    postgres_admin,  # noqa: F401 - a fixture used by name
    postgres_template,  # noqa: F401 - a fixture used by name
)
from tests.service.live import make_settings
from tests.service.test_search import add_record
from zstack_analyzer.metadata import ObjectiveInfo
from zstack_analyzer.service.db.search import SearchFilters, search_images

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.db.session import Database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_client(
    tmp_path: Path,
    postgres_admin: str,  # noqa: F811 - the fixture imported above
    postgres_template: str,  # noqa: F811 - the fixture imported above
) -> Iterator[TestClient]:
    from zstack_analyzer.service.app import create_app

    url = create_pg_database(postgres_admin, postgres_template)
    try:
        settings = make_settings(tmp_path / "data", database_url=url)
        with _testclient_class()(create_app(settings)) as client:
            yield client
    finally:
        drop_pg_database(postgres_admin, url)


def _database(client: TestClient) -> Database:
    return client.app.state.database  # type: ignore[attr-defined,no-any-return]


def _found(client: TestClient, **params: Any) -> tuple[list[str], int]:
    response = client.get("/api/images/search", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return [item["id"] for item in body["data"]], body["total"]


def test_free_text_on_postgresql_is_every_word_as_a_prefix(pg_client: TestClient) -> None:
    database = _database(pg_client)
    lens = ObjectiveInfo(name="Plan-Apochromat 63x/1.40 Oil")
    dapi = add_record(database, "nuclei.czi", channels=(("DAPI", None),), objective=lens)
    gfp = add_record(database, "cells.czi", channels=(("EGFP", None),))
    assert _found(pg_client, q="dap") == ([dapi], 1)
    assert _found(pg_client, q="DAPI 63x") == ([dapi], 1)
    assert _found(pg_client, q="dapi egfp") == ([], 0)  # every word, not any
    assert _found(pg_client, q="egf") == ([gfp], 1)
    assert _found(pg_client, q="'&|!") == ([], 0)  # no word: annotations only, none here
    assert sorted(_found(pg_client)[0]) == sorted([dapi, gfp])


def test_a_search_on_postgresql_turns_seqscans_off_for_its_statements(
    pg_client: TestClient,
) -> None:
    """The hint is set before the page query and put back after it, in the same transaction."""
    database = _database(pg_client)
    add_record(database, "one.czi")
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(database.engine, "before_cursor_execute", record)
    try:

        def run(session: Any) -> tuple[int, str]:
            rows, total = search_images(session, SearchFilters(q="one"))
            after = session.execute(text("SHOW enable_seqscan")).scalar_one()
            return len(rows) + 100 * total, str(after)

        counted, after = database.call(run)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert counted == 101
    assert after == "on"
    hints = [s for s in sent if "enable_seqscan" in s and not s.startswith("SHOW")]
    assert hints == ["SET LOCAL enable_seqscan = off", "SET LOCAL enable_seqscan = on"]
    first, last = (sent.index(h) for h in hints)
    assert any(s.startswith("SELECT") and "images" in s for s in sent[first + 1 : last])
