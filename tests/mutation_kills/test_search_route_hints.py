"""The search route's planner hints on PostgreSQL (``db/search.py`` ``search_rows``).

Why: ``test_search_engines.py`` checks the hints around ``search_images``; the route
pages through ``search_rows`` (summaries in one statement), which must set them around
a free-text page as well (the generic-plan and sequential-scan costs of issue #22), and
leave a plain walk (a container search by a caller who sees every image) without them:
two round trips saved where nothing could be mispriced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event

from tests.mutation_kills.test_search_engines import (
    _database,
    _found,
    pg_client,  # noqa: F401 - a fixture used by name
)
from tests.service.conftest import (
    postgres_admin,  # noqa: F401 - a fixture used by name
    postgres_template,  # noqa: F401 - a fixture used by name
)
from tests.service.test_search import add_record

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.postgres

HINTS = [
    "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_custom_plan",
    "SET LOCAL enable_seqscan = on; SET LOCAL plan_cache_mode = auto",
]


def _hints_of(client: TestClient, **params: Any) -> tuple[tuple[list[str], int], list[str]]:
    database = _database(client)
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        found = _found(client, **params)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    return found, [s for s in sent if "enable_seqscan" in s and not s.startswith("SHOW")]


def test_the_routes_free_text_page_is_run_with_the_hints(
    pg_client: TestClient,  # noqa: F811 - the fixture imported above
) -> None:
    one = add_record(_database(pg_client), "one.czi")
    add_record(_database(pg_client), "two.czi")
    found, hints = _hints_of(pg_client, q="one")
    assert found == ([one], 1)
    assert hints == HINTS


def test_a_plain_walk_runs_without_them(
    pg_client: TestClient,  # noqa: F811 - the fixture imported above
) -> None:
    """``dataset=`` by a caller who sees every image: counted from the links, no hint."""
    one = add_record(_database(pg_client), "one.czi")
    add_record(_database(pg_client), "two.czi")
    made = pg_client.post("/api/datasets", json={"name": "Plate"})
    assert made.status_code == 201, made.text
    linked = pg_client.post(f"/api/datasets/{made.json()['id']}/images", json={"image_ids": [one]})
    assert linked.status_code == 200, linked.text
    found, hints = _hints_of(pg_client, dataset="Plate")
    assert found == ([one], 1)
    assert hints == []
