"""``key_value_images`` follows ``key_values`` through every write, and 0018 fills it from what is there.

Why: a ``kv=KEY:VALUE`` search reads its ids and its total from
``key_value_images`` (each image's ``(key_key, value_key, image_id)`` once,
with how many pairs have it), which the database's triggers keep (migration
0018). A writer the triggers missed (an update of a pair's columns, the cascade
from a deleted image, the bulk table's delete-then-insert, the same pair twice
on one image) would leave the search finding images that no longer carry a
pair, missing new ones, or counting an image twice. Each step below writes
through the service (over HTTP) or by plain SQL, then checks the table against
the pairs themselves (grouped here) and the search's answers against the
pairs. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import delete, insert, inspect, text

from tests.service.conftest import upload, write_ome_tiff
from tests.service.live import make_settings
from tests.service.test_search import add_record
from zstack_analyzer.service.annotations.models import Dataset, KeyValue, index_key
from zstack_analyzer.service.db.migrations import alembic_config, upgrade_database
from zstack_analyzer.service.db.session import Database, make_engine

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient
    from sqlalchemy.engine import Engine

DERIVED = (
    "SELECT key_key, value_key, image_id, count(*) FROM key_values"
    " WHERE image_id IS NOT NULL GROUP BY key_key, value_key, image_id"
)
KEPT = "SELECT key_key, value_key, image_id, pairs FROM key_value_images"


@pytest.fixture
def api(tmp_path: Path, database_url: str | None, make_client: Callable[..., TestClient]) -> Any:
    settings = make_settings(tmp_path / "data", database_url=database_url)
    settings.render.thumbnail_on_upload = False
    client = make_client(settings)
    stack = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 2, 8, 10))
    ids = [upload(client, stack, f"cell{n}.ome.tif").json()["id"] for n in range(4)]
    return client, ids


def _engine(client: TestClient) -> Engine:
    return client.app.state.database.engine  # type: ignore[attr-defined,no-any-return]


def _rows(engine: Engine, sql: str) -> set[tuple[str, str, str, int]]:
    with engine.connect() as connection:
        return {
            (k, v, str(uuid.UUID(str(i))), int(n)) for k, v, i, n in connection.execute(text(sql))
        }


def _kept_right(client: TestClient) -> set[tuple[str, str, str, int]]:
    """The table, after checking it holds exactly the pairs' triples with their counts."""
    engine = _engine(client)
    kept = _rows(engine, KEPT)
    assert kept == _rows(engine, DERIVED)
    return kept


def _found(client: TestClient, kv: str) -> tuple[set[str], int]:
    answer = client.get("/api/images/search", params={"kv": kv, "limit": 50})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {item["id"] for item in body["data"]}, body["total"]


def _put(client: TestClient, image_id: str, pairs: list[tuple[str, str]]) -> None:
    body = [{"key": k, "value": v} for k, v in pairs]
    answer = client.put(f"/api/images/{image_id}/key-values", json=body)
    assert answer.status_code == 200, answer.text


def test_every_write_keeps_the_search_index(api: Any) -> None:
    client, (a, b, c, d) = api
    # The editor's PUT (and a template's form, which sends the same list): one image
    # with the same pair twice (case differs) is one image, its row counts two pairs.
    _put(client, a, [("Strain", "N2"), ("strain", "n2"), ("treatment", "DMSO")])
    _put(client, b, [("strain", "N2")])
    _put(client, c, [("strain", "CB4856")])
    assert (("strain", "n2", str(uuid.UUID(a)), 2)) in _kept_right(client)
    assert _found(client, "strain:N2") == ({a, b}, 2)

    # Replacing the list: one of the two pairs goes, the image stays found.
    _put(client, a, [("strain", "N2"), ("treatment", "taxol")])
    assert (("strain", "n2", str(uuid.UUID(a)), 1)) in _kept_right(client)
    assert _found(client, "treatment:DMSO") == (set(), 0)
    assert _found(client, "treatment:taxol") == ({a}, 1)
    # Emptying the list: no pair, no row.
    _put(client, b, [])
    assert not any(row[2] == str(uuid.UUID(b)) for row in _kept_right(client))
    assert _found(client, "strain:N2") == ({a}, 1)

    # The bulk table: new pairs, and an existing key replaced (its old pair deleted).
    table = f"id,strain,plate\n{c},N2,P1\n{d},N2,P1\n{a},CB4856,P2\n"
    answer = client.post("/api/annotations/bulk", json={"csv": table})
    assert answer.status_code == 200, answer.text
    _kept_right(client)
    assert _found(client, "strain:N2") == ({c, d}, 2)
    assert _found(client, "strain:CB4856") == ({a}, 1)
    assert _found(client, "plate:p1") == ({c, d}, 2)

    # A dataset's pairs are no image's.
    dataset = client.post("/api/datasets", json={"name": "Plate"}).json()
    answer = client.put(
        f"/api/datasets/{dataset['id']}/key-values", json=[{"key": "strain", "value": "N2"}]
    )
    assert answer.status_code == 200, answer.text
    _kept_right(client)
    assert _found(client, "strain:N2") == ({c, d}, 2)

    # Plain SQL: an update of a pair's value and of its image, then a delete.
    engine = _engine(client)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE key_values SET value = 'PD1074', value_key = 'pd1074' WHERE value_key = 'p1'"
            )
        )
    _kept_right(client)
    assert _found(client, "plate:PD1074") == ({c, d}, 2)
    assert _found(client, "plate:P1") == (set(), 0)
    with engine.begin() as connection:
        target = connection.execute(
            text("SELECT image_id FROM key_values WHERE key_key = 'plate' AND value_key = 'p2'")
        ).scalar_one()
        connection.execute(
            text(
                "UPDATE key_values SET image_id = :target WHERE key_key = 'strain' AND value_key = 'n2'"
            ),
            {"target": target},
        )
    _kept_right(client)
    assert _found(client, "strain:N2") == ({a}, 1)  # both pairs now on a: counted once
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM key_values WHERE key_key = 'treatment'"))
    _kept_right(client)
    assert _found(client, "treatment:taxol") == (set(), 0)

    # Deleting an image takes its pairs (the cascade) and its rows here.
    assert client.delete(f"/api/images/{a}").status_code == 204
    assert not any(row[2] == str(uuid.UUID(a)) for row in _kept_right(client))
    assert _found(client, "strain:N2") == (set(), 0)
    assert _found(client, "plate:pd1074") == ({c, d}, 2)


@pytest.fixture
def empty_url(tmp_path: Path, database_url: str | None) -> str:
    return database_url or f"sqlite:///{tmp_path / 'm.db'}"


def test_the_migration_fills_the_table_and_its_downgrade_removes_it(empty_url: str) -> None:
    """Pairs written before 0018 (one image with a pair twice, a dataset's pair) are in the table after it."""
    from alembic import command

    engine = make_engine(empty_url)
    try:
        upgrade_database(engine, "0016")
        database = Database(engine)
        first, second = (uuid.UUID(add_record(database, f"i{n}.czi")) for n in range(2))
        with database.sessions() as session:
            dataset = Dataset(name="D")
            session.add(dataset)
            session.flush()
            pairs = [
                (first, None, "strain", "N2"),
                (first, None, "Strain", "n2"),
                (first, None, "treatment", "DMSO"),
                (second, None, "strain", "N2"),
                (None, dataset.id, "strain", "N2"),
            ]
            session.execute(
                insert(KeyValue),
                [
                    {
                        "image_id": image_id,
                        "dataset_id": dataset_id,
                        "position": n,
                        "key": key,
                        "value": value,
                        "key_key": index_key(key),
                        "value_key": index_key(value),
                    }
                    for n, (image_id, dataset_id, key, value) in enumerate(pairs)
                ],
            )
            session.commit()
        upgrade_database(engine, "0018")
        assert _rows(engine, KEPT) == {
            ("strain", "n2", str(first), 2),
            ("treatment", "dmso", str(first), 1),
            ("strain", "n2", str(second), 1),
        }
        # And the triggers run from here on.
        with database.sessions() as session:
            session.execute(delete(KeyValue).where(KeyValue.image_id == second))
            session.commit()
        assert _rows(engine, KEPT) == _rows(engine, DERIVED)
        assert len(_rows(engine, KEPT)) == 2

        command.downgrade(alembic_config(engine), "0016")
        assert "key_value_images" not in inspect(engine).get_table_names()
        with database.sessions() as session:  # no trigger left behind to write a missing table
            session.execute(delete(KeyValue).where(KeyValue.image_id == first))
            session.commit()
        upgrade_database(engine)  # and up again, on what is left
        assert _rows(engine, KEPT) == _rows(engine, DERIVED) == set()
    finally:
        engine.dispose()


def test_values_past_the_indexed_prefix_and_tags_by_shape(api: Any) -> None:
    """Values alike in their first 200 characters differ by the rest; searches of one shape keep their values.

    Why: searches of tags and pairs are built once per shape with bind
    parameters (``db/prepared_search.py``); a value past the indexed prefix is
    a shape of its own (the whole value compared too), and a second search of
    a shape must answer with its own values, not the first one's.
    """
    client, (a, b, c, _d) = api
    prefix = "x" * 200
    _put(client, a, [("note", prefix + " first"), ("note", prefix + " first"), ("strain", "N2")])
    _put(client, b, [("note", prefix + " second"), ("strain", "CB4856")])
    _put(client, c, [("note", prefix), ("strain", "N2")])
    _kept_right(client)
    assert _found(client, f"note:{prefix} first") == ({a}, 1)
    assert _found(client, f"note:{prefix} second") == ({b}, 1)
    assert _found(client, f"note:{prefix}") == ({a, b, c}, 3)  # the indexed prefix alone
    assert _found(client, "strain:N2") == ({a, c}, 2)
    assert _found(client, "strain:cb4856") == ({b}, 1)
    for image_id, tags in ((a, ["mitosis"]), (b, ["mitosis", "bright"]), (c, ["bright"])):
        assert client.put(f"/api/images/{image_id}/tags", json=tags).status_code == 200

    def tagged(*params: tuple[str, str], skip: int = 0) -> tuple[set[str], int]:
        answer = client.get("/api/images/search", params=[*params, ("skip", str(skip))])
        assert answer.status_code == 200, answer.text
        return {item["id"] for item in answer.json()["data"]}, answer.json()["total"]

    assert tagged(("tag", "mitosis")) == ({a, b}, 2)
    assert tagged(("tag", "bright")) == ({b, c}, 2)
    assert tagged(("tag", "bright"), ("kv", "strain:N2")) == ({c}, 1)
    assert tagged(("tag", "mitosis"), ("kv", "strain:N2")) == ({a}, 1)
    assert tagged(("tag", "mitosis"), ("kv", "strain")) == ({a, b}, 2)
    assert tagged(("tag", "bright"), skip=5) == (set(), 2)  # past the end: the total still
