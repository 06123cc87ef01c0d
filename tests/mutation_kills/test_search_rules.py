"""Metadata search (``service/db/search.py``) through the real app on SQLite.

What the broader search tests leave open: free text is cut at 16 words (not refused), ``_``
and ``\\`` in an objective filter are characters, the page and the total agree for every
offset and limit with ties in ``created_at`` broken by id, quality filters at their bounds
(a failed measurement is neither an edge nor a non-edge), the FTS5 index repaired only when
it is broken, and the FTS tables kept out of the schema comparison.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text

from tests.service.test_search import add_record
from zstack_analyzer.metadata import ObjectiveInfo
from zstack_analyzer.service.db.search import (
    ensure_search_index,
    fts5_query,
    include_in_schema_compare,
    tsquery,
)

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from zstack_analyzer.service.db.session import Database


@pytest.fixture
def client(sqlite_client: TestClient) -> TestClient:
    """The service on SQLite (FTS5); the PostgreSQL branch is left to tests/service/test_search.py."""
    return sqlite_client


def _found(client: TestClient, **params: Any) -> tuple[list[str], int]:
    response = client.get("/api/images/search", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return [item["id"] for item in body["data"]], body["total"]


def _database(client: TestClient) -> Database:
    return client.app.state.database  # type: ignore[attr-defined,no-any-return]


def test_free_text_is_cut_at_16_words(client: TestClient) -> None:
    database = _database(client)
    words = [f"w{i}" for i in range(16)]
    image = add_record(database, " ".join(words) + ".czi")
    assert _found(client, q=" ".join(words))[0] == [image]
    assert _found(client, q=" ".join([*words, "absent"]))[0] == [image]  # the 17th is dropped
    assert _found(client, q=" ".join([*words[:15], "absent"]))[0] == []  # the 16th is not
    assert fts5_query(" ".join([*words, "x"])) == " ".join(f'"{w}"*' for w in words)
    assert tsquery(" ".join([*words, "x"])) == " & ".join(f"'{w}':*" for w in words)
    assert fts5_query("+-*") is None
    assert tsquery("+-*") is None


def test_objective_text_is_literal(client: TestClient) -> None:
    database = _database(client)
    under = add_record(database, "a.czi", objective=ObjectiveInfo(name="Lens x_ray 20x"))
    other = add_record(database, "b.czi", objective=ObjectiveInfo(name="Lens xAray 20x"))
    slash = add_record(database, "c.czi", objective=ObjectiveInfo(name="Lens a\\b 10x"))
    percent = add_record(database, "d.czi", objective=ObjectiveInfo(name="Lens 5%x"))
    assert _found(client, objective="x_r")[0] == [under]
    assert _found(client, objective="xar")[0] == [other]
    assert _found(client, objective="a\\b")[0] == [slash]
    assert _found(client, objective="  LENS X_RAY ")[0] == [under]
    assert _found(client, objective="5%x")[0] == [percent]
    assert _found(client, objective="%")[0] == [percent]  # a character, not "anything"
    assert sorted(_found(client, objective="lens")[0]) == sorted([under, other, slash, percent])


def test_pages_and_totals_with_tied_creation_times(client: TestClient) -> None:
    database = _database(client)
    when = datetime(2025, 6, 1, tzinfo=UTC)
    made = [add_record(database, f"tie{i}.czi", created_at=when) for i in range(5)]
    newer = add_record(database, "newer.czi", created_at=datetime(2025, 7, 1, tzinfo=UTC))
    everything, total = _found(client, q="tie")
    assert total == 5
    assert everything == sorted(made)  # ties by id
    assert _found(client)[0][0] == newer  # newest first
    for skip in range(6):
        for limit in (1, 2, 5):
            page, page_total = _found(client, q="tie", skip=skip, limit=limit)
            assert page == everything[skip : skip + limit], (skip, limit)
            assert page_total == 5


def _quality(database: Database, image: str, **fields: Any) -> None:
    from zstack_analyzer.service.db.quality import ImageQuality

    def add(session: Any) -> None:
        session.add(ImageQuality(image_id=uuid.UUID(image), scene=0, data={}, **fields))
        session.commit()

    database.call(add)


def test_quality_filters_at_their_bounds(client: TestClient) -> None:
    database = _database(client)
    edge = add_record(database, "edge.czi")
    _quality(database, edge, max_saturated_fraction=0.5, focus_edge=True, min_snr=2.0)
    middle = add_record(database, "middle.czi")
    _quality(database, middle, max_saturated_fraction=0.1, focus_edge=False, min_snr=8.0)
    failed = add_record(database, "failed.czi")
    _quality(database, failed, focus_edge=False, error="could not read")
    unmeasured = add_record(database, "unmeasured.czi")

    def found(**params: Any) -> set[str]:
        return set(_found(client, **params)[0])

    assert found(saturated_min=0.5) == {edge}
    assert found(saturated_min=0.1) == {edge, middle}
    assert found(focus_edge="true") == {edge}
    assert found(focus_edge="false") == {middle}  # not the failed one, not the unmeasured
    assert found(snr_max=2.0) == {edge}
    assert found(snr_max=8.0) == {edge, middle}
    assert found(snr_max=1.0) == set()
    assert found() == {edge, middle, failed, unmeasured}


def test_the_index_is_rebuilt_only_when_broken(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    database = _database(client)
    engine = database.engine
    first = add_record(database, "first.czi", channels=(("DAPI", None),))
    assert ensure_search_index(engine) is False  # healthy
    with engine.begin() as connection:  # renumbered rowids, triggers kept
        connection.execute(text("UPDATE images SET rowid = rowid + 1000"))
    assert _found(client, q="dapi")[0] == []
    with caplog.at_level("WARNING"):
        assert ensure_search_index(engine) is True
    assert caplog.messages == [
        "the full-text search index was out of step with the images table: rebuilt"
    ]
    assert _found(client, q="dapi")[0] == [first]
    assert ensure_search_index(engine) is False
    for trigger in ("images_fts_insert", "images_fts_delete", "images_fts_update"):
        with engine.begin() as connection:  # one trigger gone: recreated, index rebuilt
            connection.execute(text(f"DROP TRIGGER {trigger}"))
        assert ensure_search_index(engine) is True, trigger
        second = add_record(database, f"after-{trigger}.czi", channels=(("DAPI", None),))
        assert second in _found(client, q="dapi")[0]
        assert client.delete(f"/api/images/{second}").status_code == 204
        assert _found(client, q="dapi")[0] == [first]
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE images_fts"))
    assert ensure_search_index(engine) is False  # no index table: nothing to repair


def test_postgresql_needs_no_repair() -> None:
    """PostgreSQL keeps its trigger and GIN index with the table: nothing to check or rebuild."""
    from sqlalchemy import create_engine

    from tests.service.conftest import PG_ADMIN_URL

    engine = create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert ensure_search_index(engine) is False
    finally:
        engine.dispose()


def test_fts_tables_are_left_out_of_the_schema_comparison() -> None:
    assert include_in_schema_compare("images_fts", "table") is False
    assert include_in_schema_compare("images_fts_docsize", "table") is False
    assert include_in_schema_compare("images", "table") is True
    assert include_in_schema_compare("images_fts", "index") is True
    assert include_in_schema_compare(None, "table") is True


def test_free_text_without_a_word_matches_by_annotations_only(client: TestClient) -> None:
    """``q`` of punctuation only has no full-text term: only a tag, key or value can match it."""
    database = _database(client)
    add_record(database, "plain.czi")
    assert _found(client, q="*()") == ([], 0)
    assert _found(client, q="+-") == ([], 0)
    assert len(_found(client)[0]) == 1


def test_a_direct_search_defaults_to_the_first_100(client: TestClient) -> None:
    """``search_images(session, filters)`` as the CLI calls it (no skip): the newest 100 of 101."""
    from datetime import timedelta

    from zstack_analyzer.service.db.search import SearchFilters, search_images

    database = _database(client)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    made = [
        add_record(database, f"n{i}.czi", created_at=start + timedelta(minutes=i))
        for i in range(101)
    ]

    def run(session: Any) -> tuple[list[str], int]:
        rows, total = search_images(session, SearchFilters())
        return [str(row.id) for row in rows], total

    found, total = database.call(run)
    assert total == 101
    assert found == made[::-1][:100]
    # limit=0 reads no page, so the total is asked for on its own (it is not "no match").
    assert database.call(lambda session: search_images(session, SearchFilters(), limit=0)) == (
        [],
        101,
    )


def test_typed_filters_at_their_exact_bounds(client: TestClient) -> None:
    """Z, pixel size and magnification bounds hold at equality; ``acquired_before`` does not."""
    from zstack_analyzer.service.db.search import SearchFilters, search_images

    database = _database(client)
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    lens = ObjectiveInfo(name="Plan 63x/1.4 Oil", magnification=63, immersion="Oil")
    exact = add_record(
        database,
        "exact.czi",
        size_z=5,
        pixel_um=0.5,
        acquired_at=when,
        objective=lens,
        channels=(("DAPI", "Hoechst 33342"),),
    )
    other = add_record(database, "other.czi", size_z=9, pixel_um=2.0, file_format="OME-TIFF")

    def found(**fields: Any) -> set[str]:
        rows, total = database.call(lambda session: search_images(session, SearchFilters(**fields)))
        assert total == len(rows)
        return {str(row.id) for row in rows}

    assert found(min_size_z=5) == {exact, other}
    assert found(min_size_z=6) == {other}
    assert found(max_size_z=5) == {exact}
    assert found(max_size_z=4) == set()
    assert found(pixel_size_min_um=0.5) == {exact, other}
    assert found(pixel_size_min_um=0.6) == {other}
    assert found(pixel_size_max_um=0.5) == {exact}
    assert found(pixel_size_max_um=0.4) == set()
    assert found(acquired_after=when) == {exact}
    assert found(acquired_before=when) == set()
    assert found(acquired_before=when.replace(second=8)) == {exact}
    assert found(magnification=63.0) == {exact}
    assert found(magnification=40.0) == set()
    assert found(immersion=" OIL ") == {exact}
    assert found(immersion="water") == set()
    assert found(format="CZI") == {exact}
    assert found(format="OME-TIFF") == {other}
    assert found(channel=" DAPI ") == {exact}
    assert found(channel="hoechst 33342") == {exact}
    assert found(channel="egfp") == set()
