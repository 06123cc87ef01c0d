"""SQLAlchemy 2 typed models.

Why typed ``Mapped[...]`` columns: mypy checks every query and the Alembic
revision is compared against these in a test. Metadata JSON uses JSONB on
PostgreSQL (indexable, compact) and plain JSON elsewhere.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Integer, String, Uuid, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Image", "JSONVariant", "utcnow"]

#: JSON everywhere, JSONB on PostgreSQL.
JSONVariant = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """Now, UTC-aware (the database stores it with its zone)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base; its ``metadata`` is Alembic's target."""


class Image(Base):
    """One uploaded file: display name, stored file, summary of scene 0 and full metadata.

    The summary columns (width, height, ...) duplicate ``image_metadata`` on
    purpose: they make listing cheap and filterable without parsing JSON.
    """

    __tablename__ = "images"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    filename: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[str] = mapped_column(String(32))
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
    # "metadata" is reserved on declarative classes: the attribute is renamed, the column is not.
    image_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONVariant)
    scenes: Mapped[list[dict[str, Any]]] = mapped_column(JSONVariant)
    thumbnail_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    # In-place records (migration 0003): the original stays where it is, outside our
    # storage; size and mtime as registered tell a changed original (409) from the one
    # we read. Copies keep their source too, so a re-run of an ingest skips them cheaply.
    stored_in_place: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    source_path: Mapped[str | None] = mapped_column(String(4096), index=True)
    source_size: Mapped[int | None] = mapped_column(BigInteger)
    source_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
