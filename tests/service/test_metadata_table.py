"""Migration 0006: the metadata JSON moves to ``image_metadata`` and back, nothing lost.

Why: inline in ``images`` it made every row a search or count reads several
times wider (issue #22). Both engines: rows stored before the migration keep
their metadata through the upgrade and the downgrade, stay searchable, and a
deleted image takes its metadata row with it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text

from zstack_analyzer.service.db import crud
from zstack_analyzer.service.db.migrations import alembic_config, upgrade_database
from zstack_analyzer.service.db.models import Image, ImageMetadataRecord
from zstack_analyzer.service.db.search import SearchFilters, search_images
from zstack_analyzer.service.db.session import Database, make_engine
from zstack_analyzer.service.images_service import full_metadata

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Engine


def _metadata(n: int) -> dict[str, Any]:
    return {
        "filename": f"old{n}.czi",
        "file_format": "CZI",
        "size_x": 4,
        "size_y": 4,
        "channels": [{"index": 0, "name": f"Hoechst {n}", "fluorophore": None}],
        "objective": {"name": "Plan-Apochromat 63x/1.40 Oil", "magnification": 63},
        "vendor_metadata": {"Experiment": {"Operator": "ana", "Note": "ünïcode ✓"}},
    }


def _insert_old_rows(engine: Engine, count: int) -> dict[str, dict[str, Any]]:
    """Rows as revision 0004 stored them (metadata inline); returns id (hex) -> metadata."""
    rows = {}
    with engine.begin() as connection:
        for n in range(count):
            image_id = uuid.uuid4()
            metadata = _metadata(n)
            connection.execute(
                text(
                    "INSERT INTO images (id, filename, stored_name, format, size_bytes, sha256,"
                    " width, height, depth, channels, timepoints, samples_per_pixel, bit_depth,"
                    " dtype, metadata, scenes, thumbnail_ready, created_at, stored_in_place,"
                    " search_text) VALUES (:id, :name, :stored, 'CZI', 1, :sha, 4, 4, 1, 1, 1, 1,"
                    " 8, 'uint8', :meta, '[]', false, :now, false, :words)"
                ),
                {
                    "id": image_id.hex if engine.dialect.name == "sqlite" else str(image_id),
                    "name": f"old{n}.czi",
                    "stored": f"{image_id.hex}.czi",
                    "sha": f"{n:064x}",
                    "meta": json.dumps(metadata),
                    "now": datetime.now(UTC),
                    "words": f"old{n} czi hoechst {n}",
                },
            )
            rows[image_id.hex] = metadata
    return rows


def _columns(engine: Engine, table: str) -> set[str]:
    with engine.connect() as connection:
        return {c["name"] for c in inspect(connection).get_columns(table)}


def test_metadata_moves_to_its_own_table_and_back(tmp_path: Path, database_url: str | None) -> None:
    from alembic import command

    url = database_url or f"sqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    try:
        upgrade_database(engine, "0004")
        before = _insert_old_rows(engine, 3)
        upgrade_database(engine)
        assert "metadata" not in _columns(engine, "images")
        assert _columns(engine, "image_metadata") == {"image_id", "metadata"}
        database = Database(engine)
        with database.sessions() as session:
            images = session.query(Image).all()
            assert {image.id.hex: image.image_metadata for image in images} == before
            assert all(full_metadata(image)["scenes"] == [] for image in images)
        # Still searchable (SQLite: the FTS5 triggers and rowids survived the column drop).
        found, total = database.call(search_images, SearchFilters(q="hoechst"))
        assert total == 3
        assert {image.image_metadata["filename"] for image in found} == {
            "old0.czi",
            "old1.czi",
            "old2.czi",
        }
        # A deleted image takes its metadata row along.
        gone = uuid.UUID(next(iter(before)))
        assert database.call(crud.delete_image, gone)
        with database.sessions() as session:
            assert session.get(ImageMetadataRecord, gone) is None
            assert session.query(ImageMetadataRecord).count() == 2
        del before[gone.hex]

        command.downgrade(alembic_config(engine), "0004")
        assert "image_metadata" not in set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            back = {
                uuid.UUID(str(row[0])).hex: row[1]
                if isinstance(row[1], dict)
                else json.loads(row[1])
                for row in connection.execute(text("SELECT id, metadata FROM images"))
            }
        assert back == before
        upgrade_database(engine)  # and up again
        with database.sessions() as session:
            assert {i.id.hex: i.image_metadata for i in session.query(Image).all()} == before
    finally:
        engine.dispose()


def test_new_records_store_their_metadata_in_the_table(
    tmp_path: Path, database_url: str | None
) -> None:
    """The ORM path (upload, register, ingest) writes the metadata row; updates replace it."""
    url = database_url or f"sqlite:///{tmp_path / 'n.db'}"
    engine = make_engine(url)
    try:
        upgrade_database(engine)
        database = Database(engine)
        image = Image(
            id=uuid.uuid4(),
            filename="new.czi",
            stored_name="new.czi",
            format="CZI",
            size_bytes=1,
            sha256="1" * 64,
            width=4,
            height=4,
            depth=1,
            channels=1,
            timepoints=1,
            samples_per_pixel=1,
            bit_depth=8,
            dtype="uint8",
            image_metadata=_metadata(7),
            scenes=[],
        )
        database.call(crud.add_image, image)
        with database.sessions() as session:
            stored = session.get(ImageMetadataRecord, image.id)
            assert stored is not None and stored.data == _metadata(7)
            row = session.get(Image, image.id)
            assert row is not None
            row.image_metadata = {**_metadata(7), "filename": "renamed.czi"}
            session.commit()
        with database.sessions() as session:
            row = session.get(Image, image.id)
            assert row is not None and row.image_metadata["filename"] == "renamed.czi"
            assert session.query(ImageMetadataRecord).count() == 1
        _, total = database.call(search_images, SearchFilters(q="hoechst 7"))
        assert total == 1
    finally:
        engine.dispose()
