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
            mode = session.execute(text("SHOW plan_cache_mode")).scalar_one()
            return len(rows) + 100 * total, f"{after} {mode}"

        counted, after = database.call(run)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert counted == 101
    assert after == "on auto"
    hints = [s for s in sent if "enable_seqscan" in s and not s.startswith("SHOW")]
    assert hints == [
        "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_custom_plan",
        "SET LOCAL enable_seqscan = on; SET LOCAL plan_cache_mode = auto",
    ]
    first, last = (sent.index(h) for h in hints)
    assert any(s.startswith("SELECT") and "images" in s for s in sent[first + 1 : last])


def test_a_repeated_search_is_planned_for_its_own_values(pg_client: TestClient) -> None:
    """From its sixth run a statement is prepared on the server; it must keep a custom plan.

    Why: a generic plan prices every bound ``tsquery`` or range at a default
    500 rows (issue #22: the page of ``q=dapi`` read and sorted all 27,846
    matches, a search cost 1.9x the bare query). ``auto_explain`` reports the
    plan the server ran: a custom plan has the words as constants, a generic
    one a parameter (``$1``) in their place.
    """
    database = _database(pg_client)
    for n in range(3):
        add_record(database, f"nuclei{n}.czi", channels=(("DAPI", None),))
    add_record(database, "cells.czi", channels=(("EGFP", None),))

    def plans(session: Any) -> list[str]:
        raw = session.connection().connection.dbapi_connection
        notices: list[str] = []
        raw.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
        for _ in range(15):  # psycopg prepares on the 5th run; the server may go generic 5 later
            _rows, total = search_images(session, SearchFilters(q="dapi"))
            assert total == 3
        for setting in (
            "LOAD 'auto_explain'",
            "SET LOCAL auto_explain.log_min_duration = 0",
            "SET LOCAL auto_explain.log_level = notice",
            "SET LOCAL client_min_messages = notice",
        ):
            session.execute(text(setting))
        _rows, total = search_images(session, SearchFilters(q="dapi"))
        assert total == 3
        return [n for n in notices if "images_fts" in n or "search_vector" in n]

    found = database.call(plans)
    conditions = [
        line.strip()
        for plan in found
        for line in plan.splitlines()
        if line.strip().startswith(("Recheck Cond:", "Index Cond:", "Filter:"))
        and "search_vector" in line
    ]
    assert conditions, f"auto_explain reported no plan of the search: {found}"
    for condition in conditions:
        assert "'dapi''" in condition, condition  # the words planned as a constant ...
        assert "to_tsquery(" not in condition, condition  # ... not a parameter to convert
