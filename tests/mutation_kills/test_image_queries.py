"""Image queries (``db/crud.py``), the engines (``db/session.py``) and the model's hooks (``db/models.py``).

What the service tests leave open: the list's filename filter with LIKE's wildcards and a
NUL, the oldest duplicate (ties by id, one excluded), deletes that find nothing, the stored
names of attachments, the SQLite connection's settings (WAL, foreign keys, busy timeout,
use from another thread) and the PostgreSQL pool's size, sessions that keep their values
after commit, and the search columns and channel rows an insert derives. SQLite, except
the PostgreSQL engine's pool, which is read without connecting.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select, text

from tests.mutation_kills.service_db import (
    add_image,
    image_row,
    session,  # noqa: F401 - a fixture used by name
)
from zstack_analyzer.service.annotations.models import Attachment
from zstack_analyzer.service.db import crud
from zstack_analyzer.service.db.models import Image, ImageChannel, ImageMetadataRecord, utcnow
from zstack_analyzer.service.db.session import Database, make_engine, make_session_factory

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

START = datetime(2026, 1, 1, tzinfo=UTC)


def _listed(db: Session, q: str | None, visible: Any = None) -> set[str]:
    conditions = crud.image_list_conditions(q, visible)
    return set(db.scalars(select(Image.filename).where(*conditions)).all())


def test_the_list_filter_is_a_literal_case_insensitive_substring(
    session: Session,  # noqa: F811
) -> None:
    for name in ("50%_done.TIF", "500_done.tif", "a\\b.tif", "plain.tif"):
        add_image(session, name)
    everything = {"50%_done.TIF", "500_done.tif", "a\\b.tif", "plain.tif"}
    assert _listed(session, None) == everything
    assert _listed(session, "") == everything
    assert _listed(session, "\x00") == everything  # only a NUL: no filter
    assert _listed(session, "%") == {"50%_done.TIF"}
    assert _listed(session, "0%_D") == {"50%_done.TIF"}
    assert _listed(session, "_done") == {"50%_done.TIF", "500_done.tif"}
    assert _listed(session, "0_") == {"500_done.tif"}
    assert _listed(session, "a\\b") == {"a\\b.tif"}
    assert _listed(session, "pla\x00in") == {"plain.tif"}
    assert _listed(session, "PLAIN", Image.filename != "plain.tif") == set()
    assert _listed(session, None, Image.filename == "plain.tif") == {"plain.tif"}
    assert crud.like_literal("50%_a\\b") == "50\\%\\_a\\\\b"


def test_duplicates_counts_deletes_and_thumbnails(session: Session) -> None:  # noqa: F811
    same = "a" * 64
    # The newest has the smallest id; of the two of the same age, the larger id is written first.
    newer = add_image(
        session,
        "newer.tif",
        sha256=same,
        created_at=START + timedelta(hours=1),
        id=uuid.UUID(int=1),
    )
    tied = [uuid.UUID(int=3), uuid.UUID(int=5)]
    for n, image_id in enumerate(reversed(tied)):
        add_image(session, f"tied{n}.tif", sha256=same, created_at=START, id=image_id)
    tied.sort()
    other = add_image(session, "other.tif", sha256="b" * 64)
    found = crud.find_duplicate(session, same)
    assert found is not None and found.id == tied[0]
    found = crud.find_duplicate(session, same, exclude=tied[0])
    assert found is not None and found.id == tied[1]
    assert crud.find_duplicate(session, "c" * 64) is None
    assert crud.find_duplicate(session, "b" * 64, exclude=other) is None
    assert crud.count_sha256(session, same) == 3
    assert crud.count_sha256(session, "c" * 64) == 0

    image = crud.get_image(session, newer)
    assert image is not None and image.filename == "newer.tif"
    assert image.thumbnail_ready is False
    crud.mark_thumbnail_ready(session, newer)
    session.expire_all()
    image = crud.get_image(session, newer)
    assert image is not None and image.thumbnail_ready is True
    other_row = crud.get_image(session, other)
    assert other_row is not None and other_row.thumbnail_ready is False

    assert crud.delete_image(session, newer) is True
    assert crud.delete_image(session, newer) is False
    session.expire_all()
    assert crud.get_image(session, newer) is None
    assert crud.count_sha256(session, same) == 2


def test_stored_names_are_originals_and_attachments(session: Session) -> None:  # noqa: F811
    assert crud.stored_names(session) == set()
    image = add_image(session, "x.tif", stored_name="original-1")
    add_image(session, "y.tif", stored_name="original-2")
    session.add(
        Attachment(
            image_id=image,
            filename="notes.pdf",
            stored_name="attachment-1",
            media_type="application/pdf",
            size_bytes=3,
            sha256="d" * 64,
        )
    )
    session.commit()
    assert crud.stored_names(session) == {"original-1", "original-2", "attachment-1"}


def test_add_image_commits_and_derives_the_search_columns(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        from zstack_analyzer.service.db.migrations import upgrade_database

        upgrade_database(engine)
        database = Database(engine)
        metadata = {
            "objective": {"name": " Plan 63x ", "magnification": 63, "immersion": "Oil"},
            "channels": [{"name": "DAPI", "fluorophore": "Hoechst"}, {"name": "GFP"}],
            "acquired_at": "2026-02-03T04:05:06+01:00",
            "file_format": "CZI",
        }
        image = image_row(
            "Embryo.czi", stored_name="e1", format="CZI", scenes=[{"name": "Well B2"}]
        )
        image.image_metadata = metadata
        assert image.image_metadata == metadata
        stored = database.call(crud.add_image, image)
        assert stored is image
        # A new session: what was committed.
        with database.sessions() as db:
            row = db.get(Image, image.id)
            assert row is not None
            assert row.image_metadata == metadata
            assert (row.objective, row.magnification, row.immersion) == ("plan 63x", 63.0, "oil")
            assert row.acquired_at is not None
            assert row.acquired_at.replace(tzinfo=UTC) == datetime(2026, 2, 3, 3, 5, 6, tzinfo=UTC)
            searched = db.scalar(text("SELECT search_text FROM images"))
            assert searched == "embryo czi dapi hoechst gfp plan 63x 63 oil czi well b2"
            channels = db.execute(
                select(ImageChannel.position, ImageChannel.name_key, ImageChannel.fluorophore_key)
                .where(ImageChannel.image_id == image.id)
                .order_by(ImageChannel.position)
            ).all()
            assert [tuple(c) for c in channels] == [(0, "dapi", "hoechst"), (1, "gfp", None)]
            # Replacing the metadata keeps its one row.
            row.image_metadata = {"file_format": "TIFF"}
            db.commit()
        with database.sessions() as db:
            assert db.scalar(select(ImageMetadataRecord.data)) == {"file_format": "TIFF"}
            assert len(db.scalars(select(ImageMetadataRecord)).all()) == 1
        # A record without metadata or channels: none of either.
        bare = image_row("bare.tif", stored_name="b1", format="TIFF", sha256="1" * 64, channels=1)
        assert bare.image_metadata == {}
        database.call(crud.add_image, bare)
        with database.sessions() as db:
            assert (
                db.scalars(select(ImageChannel).where(ImageChannel.image_id == bare.id)).all() == []
            )
            assert db.scalar(
                text("SELECT search_text FROM images WHERE filename = 'bare.tif'")
            ) == ("bare tif")
        # No filename at all: nothing stands in for it in the text.
        nameless = image_row("", stored_name="n1", format="TIFF", sha256="1" * 64, channels=1)
        database.call(crud.add_image, nameless)
        with database.sessions() as db:
            assert db.scalar(text("SELECT search_text FROM images WHERE stored_name = 'n1'")) == ""
    finally:
        engine.dispose()


def test_utcnow_is_aware() -> None:
    before = datetime.now(UTC)
    now = utcnow()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)


def test_sqlite_connections_are_set_up_for_concurrent_writers(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert engine.pool._pre_ping is True  # type: ignore[attr-defined]
        # A connection made in one thread serves another (the worker threads share a pool).
        with engine.connect() as connection:
            errors: list[BaseException] = []

            def use() -> None:
                try:
                    connection.exec_driver_sql("SELECT 1").scalar()
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=use)
            thread.start()
            thread.join()
            assert errors == []
    finally:
        engine.dispose()


def test_postgresql_engines_pool_and_ping() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        assert engine.pool.size() == 10  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 20  # type: ignore[attr-defined]
        assert engine.pool._pre_ping is True  # type: ignore[attr-defined]
        assert engine.dialect.name == "postgresql"
    finally:
        engine.dispose()


def test_sessions_keep_values_after_commit_and_run_in_a_thread(
    session: Session,  # noqa: F811
) -> None:
    engine = session.get_bind()
    image_id = add_image(session, "kept.tif")
    factory = make_session_factory(engine)  # type: ignore[arg-type]
    with factory() as db:
        row = db.get(Image, image_id)
        assert row is not None
        db.commit()
        assert "filename" in row.__dict__  # not expired: readable after commit, no query
    database = Database(engine)  # type: ignore[arg-type]
    assert database.engine is engine

    def name_of(db: Session, wanted: uuid.UUID, suffix: str) -> tuple[str, int]:
        row = db.get(Image, wanted)
        assert row is not None
        return row.filename + suffix, threading.get_ident()

    assert database.call(name_of, image_id, "!")[0] == "kept.tif!"
    caller = threading.get_ident()
    name, thread = anyio.run(database.run, name_of, image_id, "?")
    assert name == "kept.tif?"
    assert thread != caller
