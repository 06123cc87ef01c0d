"""Migration 0017: PostgreSQL keeps the full-text vector (lexemes only), not the search text.

Why: a count reads every matching ``images`` row, and the text (stored only for
a trigger to derive the vector) and the vector's word positions (used by no
search here) made each row about 270 bytes wider (issue #22). Both engines:
records stored before the migration stay searchable through the upgrade and the
downgrade, records stored after it are indexed by the new trigger, and the
downgrade gives back the text the insert hook derives. SQLite keeps its text
(the FTS5 index reads it).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from zstack_analyzer.service.db import crud
from zstack_analyzer.service.db.migrations import alembic_config, upgrade_database
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.search import SearchFilters, search_images
from zstack_analyzer.service.db.search_fields import derive_fields
from zstack_analyzer.service.db.session import Database, make_engine

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Engine


def _metadata(n: int, channel: str) -> dict[str, Any]:
    return {
        "filename": f"cells{n}.czi",
        "file_format": "CZI",
        "size_x": 4,
        "size_y": 4,
        "channels": [{"index": 0, "name": channel, "fluorophore": None}],
        "objective": {"name": "Plan-Apochromat 63x/1.40 Oil", "magnification": 63},
        "vendor_metadata": {"Experiment": {"Operator": "ana"}},
    }


def _add(database: Database, n: int, channel: str) -> Image:
    """A record through crud.add_image, the path every creator of records uses."""
    image = Image(
        id=uuid.uuid4(),
        filename=f"cells{n}.czi",
        stored_name=f"{uuid.uuid4().hex}.czi",
        format="CZI",
        size_bytes=1,
        sha256=f"{n:064x}",
        width=4,
        height=4,
        depth=1,
        channels=1,
        timepoints=1,
        samples_per_pixel=1,
        bit_depth=8,
        dtype="uint8",
        image_metadata=_metadata(n, channel),
        scenes=[{"name": f"Scene {n}"}],
    )
    database.call(crud.add_image, image)
    return image


def _stored(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    """id (hex) -> (search text, search vector as text) as the database holds them."""
    with engine.connect() as connection:
        return {
            uuid.UUID(str(row[0])).hex: (row[1], None if row[2] is None else str(row[2]))
            for row in connection.execute(text("SELECT id, search_text, search_vector FROM images"))
        }


def _found(database: Database, q: str) -> set[str]:
    images, total = database.call(search_images, SearchFilters(q=q))
    assert total == len(images)
    return {image.id.hex for image in images}


def _expected_text(image: Image) -> str:
    metadata = {**image.image_metadata, "scenes": image.scenes}
    return derive_fields(metadata, image.filename).search_text


def test_postgresql_keeps_only_the_vector_and_the_downgrade_brings_the_text_back(
    tmp_path: Path, database_url: str | None
) -> None:
    from alembic import command

    url = database_url or f"sqlite:///{tmp_path / 'v.db'}"
    engine = make_engine(url)
    pg = engine.dialect.name == "postgresql"
    try:
        upgrade_database(engine, "0016")
        database = Database(engine)
        old = [_add(database, n, "DAPI") for n in range(2)]
        before = _stored(engine)
        assert {key: value[0] for key, value in before.items()} == {
            image.id.hex: _expected_text(image) for image in old
        }
        if pg:  # 0004's trigger: the vector with positions
            assert all(":" in str(vector) for _, vector in before.values())

        upgrade_database(engine)
        new = _add(database, 9, "EGFP")
        after = _stored(engine)
        if pg:
            # No text; the vector has every word, without positions ('dapi' not 'dapi':5).
            assert all(search_text is None for search_text, _ in after.values())
            for image in [*old, new]:
                vector = after[image.id.hex][1]
                assert vector is not None and ":" not in vector
                words = set(_expected_text(image).split())
                assert {w.strip("'") for w in vector.split()} == words
        else:  # SQLite: unchanged (FTS5 reads the text from images)
            assert after == {**before, new.id.hex: (_expected_text(new), None)}
        assert _found(database, "dapi") == {image.id.hex for image in old}
        assert _found(database, "dap cells1") == {old[1].id.hex}
        assert _found(database, "egfp 63x") == {new.id.hex}
        assert _found(database, "scene 9") == {new.id.hex}  # the scene list is indexed too

        # An update of other columns leaves the vector alone; a new text replaces it.
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE images SET filename = 'renamed.czi' WHERE id = :id"),
                {"id": new.id if pg else new.id.hex},
            )
        assert _found(database, "egfp") == {new.id.hex}
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE images SET search_text = 'renamed czi mcherry' WHERE id = :id"),
                {"id": new.id if pg else new.id.hex},
            )
        assert _found(database, "egfp") == set()
        assert _found(database, "mcherry renamed") == {new.id.hex}

        command.downgrade(alembic_config(engine), "0016")
        back = _stored(engine)
        assert {key: value[0] for key, value in back.items()} == {
            **{image.id.hex: _expected_text(image) for image in old},
            # The text the insert hook derives from the record (the filename as stored).
            new.id.hex: _expected_text(new).replace("cells9", "renamed")
            if pg
            else "renamed czi mcherry",
        }
        if pg:
            assert all(":" in str(vector) for _, vector in back.values())
        assert _found(database, "dapi") == {image.id.hex for image in old}
        assert _found(database, "egfp") == ({new.id.hex} if pg else set())

        upgrade_database(engine)  # and up again
        assert _found(database, "dapi 63x") == {image.id.hex for image in old}
        if pg:
            assert all(search_text is None for search_text, _ in _stored(engine).values())
            # The rebuilt table: the search columns first, every column kept.
            with engine.connect() as connection:
                order = list(connection.execute(text("SELECT * FROM images LIMIT 0")).keys())
            assert tuple(order[:3]) == ("id", "created_at", "depth")
            assert order.index("search_vector") < order.index("filename")
            assert set(order) == {column.name for column in Image.__table__.columns}
        # The foreign keys naming images came back with their cascade.
        gone = old[0].id
        assert database.call(crud.delete_image, gone)
        with engine.connect() as connection:
            for table in ("image_metadata", "image_channels"):
                left = connection.execute(
                    text(f"SELECT count(*) FROM {table} WHERE image_id = :id"),  # noqa: S608
                    {"id": gone if pg else gone.hex},
                ).scalar_one()
                assert left == 0, table
        assert _found(database, "dapi") == {old[1].id.hex}
    finally:
        engine.dispose()
