"""The ``rois`` and ``roi_shapes`` tables (migration 0011).

Why two tables: an ROI is what a person names, owns and deletes; its shapes
(one per plane, as in the OME model) are read and written with it, in order
(``position``). Geometry is JSON (the kind's own fields: ``x``/``y``/``width``/
``height``, ``points``, ...) since no query filters on it. The ROI's owner is
its author (``NULL`` without accounts), its group the image's, so the image's
group level decides who sees and annotates it; rows go with their image
(``ON DELETE CASCADE``).
"""

from __future__ import annotations

import uuid  # noqa: TC003  (SQLAlchemy resolves Mapped[...] at run time)
from datetime import datetime  # noqa: TC003
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from zstack_analyzer.service.db.models import Base, JSONVariant, utcnow

__all__ = ["Roi", "RoiShape"]


class Roi(Base):
    """One region of interest of one image (scene), made of one or more shapes."""

    __tablename__ = "rois"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    scene: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str | None] = mapped_column(String(255))
    owner_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("groups.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    shapes: Mapped[list[RoiShape]] = relationship(
        lazy="selectin",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="RoiShape.position",
    )


class RoiShape(Base):
    """One shape of an ROI: kind, plane (z, t, optionally c), geometry, name and colour."""

    __tablename__ = "roi_shapes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    roi_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("rois.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(16))
    z: Mapped[int] = mapped_column(Integer, default=0)
    t: Mapped[int] = mapped_column(Integer, default=0)
    c: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(255))
    colour: Mapped[str | None] = mapped_column(String(9))
    geometry: Mapped[dict[str, Any]] = mapped_column(JSONVariant)
