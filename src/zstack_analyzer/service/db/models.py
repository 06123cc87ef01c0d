"""SQLAlchemy 2 typed models.

Why typed ``Mapped[...]`` columns: mypy checks every query and the Alembic
revision is compared against these in a test. Metadata JSON uses JSONB on
PostgreSQL (indexable, compact) and plain JSON elsewhere; it lives in its own
table (``image_metadata``, migration 0006) so that the ``images`` rows every
list and search scans stay narrow.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    event,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Image",
    "ImageChannel",
    "ImageMetadataRecord",
    "JSONVariant",
    "SearchVector",
    "utcnow",
]

#: JSON everywhere, JSONB on PostgreSQL.
JSONVariant = JSON().with_variant(JSONB(), "postgresql")
#: PostgreSQL's full-text vector; elsewhere an unused text column (SQLite searches via FTS5).
SearchVector = Text().with_variant(TSVECTOR(), "postgresql")


def utcnow() -> datetime:
    """Now, UTC-aware (the database stores it with its zone)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base; its ``metadata`` is Alembic's target."""


class Image(Base):
    """One uploaded file: display name, stored file, summary of scene 0 and full metadata.

    The summary columns (width, height, ...) duplicate ``image_metadata`` on
    purpose: they make listing cheap and filterable without parsing JSON.
    ``image_metadata`` reads and writes the row's :class:`ImageMetadataRecord`
    (loaded with the image in one extra ``SELECT ... IN`` per query).
    """

    __tablename__ = "images"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    filename: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[str] = mapped_column(String(128))  # Bio-Formats names are long (0015)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    depth: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    timepoints: Mapped[int] = mapped_column(Integer)
    samples_per_pixel: Mapped[int] = mapped_column(Integer)
    bit_depth: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    pixel_size_x: Mapped[float | None] = mapped_column(Float)
    pixel_size_y: Mapped[float | None] = mapped_column(Float)
    pixel_size_z: Mapped[float | None] = mapped_column(Float)
    #: The full metadata JSON, in its own table (see :attr:`image_metadata`).
    details: Mapped[ImageMetadataRecord | None] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True
    )
    scenes: Mapped[list[dict[str, Any]]] = mapped_column(JSONVariant)
    thumbnail_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    # Indexed with the id (ix_images_created_at_id, migration 0016): every page is
    # "newest first, then by id".
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # In-place records (migration 0003): the original stays where it is, outside our
    # storage; size and mtime as registered tell a changed original (409) from the one
    # we read. Copies keep their source too, so a re-run of an ingest skips them cheaply.
    stored_in_place: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    source_path: Mapped[str | None] = mapped_column(String(4096), index=True)
    source_size: Mapped[int | None] = mapped_column(BigInteger)
    source_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    # Which file was registered (migration 0005): device and inode, as signed 64-bit
    # values; NULL on older rows means "size and mtime only".
    source_dev: Mapped[int | None] = mapped_column(BigInteger)
    source_ino: Mapped[int | None] = mapped_column(BigInteger)
    # Search columns (migration 0004), derived from ``image_metadata`` on every insert by
    # ``db/search.py`` so no code path can store a record the search does not see.
    # Deferred: only the database reads them (the index); a page of results never needs them.
    # On PostgreSQL the insert trigger turns the text into the vector (lexemes only, no
    # positions) and stores NULL in its place (migration 0017): a count reads every
    # matching row, and the text made it a fifth wider for nothing. SQLite keeps the text
    # (its FTS5 index reads it from here).
    search_text: Mapped[str | None] = mapped_column(Text, deferred=True)
    search_vector: Mapped[str | None] = mapped_column(SearchVector, deferred=True)
    objective: Mapped[str | None] = mapped_column(String(255))
    magnification: Mapped[float | None] = mapped_column(Float, index=True)
    immersion: Mapped[str | None] = mapped_column(String(64), index=True)
    acquired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # Owner and group (migration 0007, service/auth/): who may see and change the image.
    # NULL owner: made before accounts existed, or in none/token mode (admins and the
    # group's members by its level see it).
    owner_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("users.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("groups.id"), index=True)

    __table_args__ = (
        Index("ix_images_format", "format"),
        Index("ix_images_depth", "depth"),
        Index("ix_images_pixel_size_x", "pixel_size_x"),
        # GIN on PostgreSQL; on SQLite a B-tree over an always-NULL column (costs nothing),
        # kept so models and migrations agree on both engines. No pending list (0014):
        # rows inserted one by one would otherwise be scanned linearly by every search.
        Index(
            "ix_images_search_vector",
            "search_vector",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
        # Migration 0010: answers "which of these ids may the caller see, and when were they
        # made" from the index alone (an annotation search gives ids; a row read was ~10x).
        Index("ix_images_id_visibility", "id", "created_at", "owner_id", "group_id"),
        # Migration 0016: a page's order (created_at DESC, id) read from the index alone.
        # A search walks it newest first, probing each id against its conditions until the
        # page is full; with only created_at indexed, each step read the wide image row
        # from the heap (the page of a kv= search: 8.3 ms -> 2.2 ms at 100,000 images).
        Index("ix_images_created_at_id", "created_at", "id"),
        # One in-place record per original (migration 0005): the database settles races.
        Index(
            "ux_images_in_place_source_path",
            "source_path",
            unique=True,
            sqlite_where=text("stored_in_place"),
            postgresql_where=text("stored_in_place"),
        ),
    )

    @property
    def image_metadata(self) -> dict[str, Any]:
        """Scene 0's metadata JSON (without the scene list, which has its own column)."""
        return self.details.data if self.details is not None else {}

    @image_metadata.setter
    def image_metadata(self, value: dict[str, Any]) -> None:
        if self.details is None:
            self.details = ImageMetadataRecord(data=value)
        else:
            self.details.data = value


class ImageMetadataRecord(Base):
    """The metadata JSON of one image (about 1 kB each, more with vendor metadata).

    Why a table of its own: inline in ``images`` it made every row several
    times wider, and a search or count reads every matching row, so PostgreSQL
    searched at twice the cost of a bare indexed table at 100,000 records. Only
    the image view and the search-text derivation read it; rows go with their
    image (``ON DELETE CASCADE``).
    """

    __tablename__ = "image_metadata"

    image_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    # "metadata" is reserved on declarative classes: the attribute is renamed, the column is not.
    data: Mapped[dict[str, Any]] = mapped_column("metadata", JSONVariant)


class ImageChannel(Base):
    """One channel of an image's scene 0, lower-cased, for the indexed ``channel`` filter.

    Why a table and not JSON: a B-tree on the name answers "images with a DAPI
    channel" on SQLite and PostgreSQL alike; rows go with their image
    (``ON DELETE CASCADE``).
    """

    __tablename__ = "image_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name_key: Mapped[str | None] = mapped_column(String(255), index=True)
    fluorophore_key: Mapped[str | None] = mapped_column(String(255), index=True)


def _fill_search_columns(_mapper: Any, _connection: Any, image: Image) -> None:
    """Derive the search columns from the metadata before the row is written.

    Why a mapper event: every code path that stores a record through the ORM
    (upload, register, ingest) gets indexed without remembering to; the
    database itself then keeps the full-text index in step (FTS5 triggers on
    SQLite, a trigger that derives the vector on PostgreSQL; migrations 0004, 0017).
    Migration 0019 derives the text of stored records again with the same function.
    """
    from zstack_analyzer.service.db.search_fields import derive_record_fields

    # The scene list lives in its own column (stored once), not in the metadata JSON.
    derived = derive_record_fields(image.image_metadata, image.scenes, image.filename)
    image.search_text = derived.search_text
    image.objective = derived.objective
    image.magnification = derived.magnification
    image.immersion = derived.immersion
    image.acquired_at = derived.acquired_at


def _insert_channel_rows(_mapper: Any, connection: Any, image: Image) -> None:
    """Write the channel rows of a new image in the same transaction."""
    from sqlalchemy import insert

    from zstack_analyzer.service.db.search_fields import derive_fields

    channels = derive_fields(image.image_metadata or {}, image.filename or "").channels
    if channels:
        connection.execute(
            insert(ImageChannel),
            [
                {"image_id": image.id, "position": p, "name_key": n, "fluorophore_key": f}
                for p, n, f in channels
            ],
        )


event.listen(Image, "before_insert", _fill_search_columns)
event.listen(Image, "after_insert", _insert_channel_rows)

# The account tables live in service/auth/ but on this metadata (the images' foreign keys
# name them, and Alembic compares one metadata with the migrations).
import zstack_analyzer.service.auth.models  # noqa: E402, F401
from zstack_analyzer.service.annotations import models as _annotation_tables  # noqa: E402, F401  (0010)
from zstack_analyzer.service.annotations import roi_models as _roi_tables  # noqa: E402, F401  (0011)
from zstack_analyzer.service.auth import audit as _audit_table  # noqa: E402, F401  (0008)
from zstack_analyzer.service.db import quality as _quality_table  # noqa: E402, F401  (0009)
