"""The ``image_quality`` table (migration 0009) and its queries.

Why a table of its own, one row per image and scene: the measures arrive
after the image row (a background job), some images never get them (failed
reads) and ``zstack quality --missing`` finds those by an anti-join. The
three values that search filters on (the worst saturated fraction, whether
best focus sits at a stack edge, the weakest signal-to-background) are
indexed columns; the per-channel summaries (focus per Z, intensity per T) are
JSON, read only by the image's quality view.
"""

from __future__ import annotations

import logging
import uuid  # noqa: TC003  (SQLAlchemy resolves Mapped[...] at run time)
from datetime import datetime  # noqa: TC003
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Uuid,
    case,
    delete,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from zstack_analyzer.quality.stack import finite
from zstack_analyzer.service.db.models import Base, Image, JSONVariant, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.selectable import ScalarSelect

    from zstack_analyzer.quality import SceneQuality

__all__ = [
    "FLAG_BITS",
    "QUALITY_VERSION",
    "ImageQuality",
    "flags_of_mask",
    "get_quality",
    "images_without_quality",
    "quality_flag_mask",
    "quality_flags_for",
    "store_quality",
    "store_quality_error",
]

logger = logging.getLogger(__name__)

#: Bumped when a measure's definition changes (rows of older versions are recomputed).
QUALITY_VERSION = 1


class ImageQuality(Base):
    """The quality of one scene of one image (rows go with their image)."""

    __tablename__ = "image_quality"

    image_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    scene: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=QUALITY_VERSION)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    max_saturated_fraction: Mapped[float | None] = mapped_column(Float, index=True)
    focus_edge: Mapped[bool] = mapped_column(Boolean, index=True, default=False)
    min_snr: Mapped[float | None] = mapped_column(Float, index=True)
    #: Why the measures are missing (a read that failed); ``None`` when measured.
    error: Mapped[str | None] = mapped_column(String(1000))
    data: Mapped[dict[str, Any]] = mapped_column(JSONVariant)


def store_quality(session: Session, image_id: uuid.UUID, qualities: list[SceneQuality]) -> bool:
    """Replace the quality rows of ``image_id`` by ``qualities`` (one per scene).

    An image deleted meanwhile stores nothing, quietly, and answers ``False``
    (:func:`_replace_rows`).
    """
    return _replace_rows(
        session,
        image_id,
        [
            ImageQuality(
                image_id=image_id,
                scene=quality.scene,
                version=QUALITY_VERSION,
                max_saturated_fraction=finite(quality.max_saturated_fraction),
                focus_edge=quality.focus_edge,
                min_snr=finite(quality.min_snr),
                error=None,
                data=finite(quality.as_dict(planes=False)),
            )
            for quality in qualities
        ],
    )


def store_quality_error(session: Session, image_id: uuid.UUID, error: str) -> bool:
    """Record that measuring ``image_id`` failed (``--missing`` then skips it); ``False``: deleted."""
    return _replace_rows(
        session, image_id, [ImageQuality(image_id=image_id, scene=0, error=error[:1000], data={})]
    )


def _replace_rows(session: Session, image_id: uuid.UUID, rows: list[ImageQuality]) -> bool:
    """Replace the quality rows of ``image_id`` by ``rows``, in one commit.

    Why the image may be gone: quality is measured in the background after an
    upload or ingest, and its owner may delete the image before the measure
    ends. The rows then break the foreign key to ``images`` (SQLite and
    PostgreSQL both refuse them); that is no fault, there is simply nothing
    left to describe, so it is a DEBUG line and nothing stored. Any other
    refusal (the image still exists: two rows for one scene, a broken
    database) is raised as before.
    """
    try:
        session.execute(delete(ImageQuality).where(ImageQuality.image_id == image_id))
        session.add_all(rows)
        session.commit()
    except IntegrityError:
        session.rollback()
        if session.scalar(select(Image.id).where(Image.id == image_id)) is not None:
            raise
        logger.debug("quality of image %s not stored: the image was deleted meanwhile", image_id)
        return False
    return True


def get_quality(session: Session, image_id: uuid.UUID, scene: int) -> ImageQuality | None:
    """The quality row of one scene, or ``None`` when it was never measured."""
    return session.get(ImageQuality, (image_id, scene))


def images_without_quality(session: Session, *, limit: int = 100) -> list[Image]:
    """Images with no quality row of the current version, oldest first (resumable batches)."""
    measured = select(ImageQuality.image_id).where(ImageQuality.version >= QUALITY_VERSION)
    query = (
        select(Image)
        .where(Image.id.not_in(measured))
        .order_by(Image.created_at, Image.id)
        .limit(limit)
    )
    return list(session.scalars(query).all())


#: Thresholds of the gallery's "suspect" badge (the filter row offers the same).
SATURATED_FLAG = 0.01
SNR_FLAG = 3.0


#: The flags in the order a page shows them, with their bit in :func:`quality_flag_mask`.
FLAG_BITS = (("saturated", 1), ("focus at edge", 2), ("weak signal", 4))


def quality_flag_mask() -> ScalarSelect[int]:
    """A column expression for a query over ``images``: the image's flags as a bit mask.

    Why: a page of search results gets its flags in its own statement (one
    index probe per row) instead of a second round trip; the rules are those of
    :func:`quality_flags_for` (any measured scene, errors left out), the bits
    those of :data:`FLAG_BITS`. ``NULL`` when the image has no quality row.
    """
    return (
        select(
            func.max(case((ImageQuality.max_saturated_fraction >= SATURATED_FLAG, 1), else_=0))
            + func.max(case((ImageQuality.focus_edge.is_(True), 2), else_=0))
            + func.max(case((ImageQuality.min_snr <= SNR_FLAG, 4), else_=0))
        )
        .where(ImageQuality.image_id == Image.id, ImageQuality.error.is_(None))
        .scalar_subquery()
    )


def flags_of_mask(mask: int | None) -> list[str]:
    """The flag names of a :func:`quality_flag_mask` value, in :data:`FLAG_BITS` order.

    >>> flags_of_mask(5), flags_of_mask(None)
    (['saturated', 'weak signal'], [])
    """
    return [name for name, bit in FLAG_BITS if mask and mask & bit]


def quality_flags_for(session: Session, image_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """Why each of ``image_ids`` is suspect ("saturated", "focus at edge", "weak signal").

    One query for a whole page (no query per image); images without a problem
    (or not measured yet) are left out.
    """
    if not image_ids:
        return {}
    rows = session.execute(
        select(
            ImageQuality.image_id,
            ImageQuality.max_saturated_fraction,
            ImageQuality.focus_edge,
            ImageQuality.min_snr,
        ).where(ImageQuality.image_id.in_(image_ids), ImageQuality.error.is_(None))
    )
    flags: dict[uuid.UUID, list[str]] = {}
    for image_id, saturated, edge, snr in rows:
        found = flags.setdefault(image_id, [])
        if saturated is not None and saturated >= SATURATED_FLAG and "saturated" not in found:
            found.append("saturated")
        if edge and "focus at edge" not in found:
            found.append("focus at edge")
        if snr is not None and snr <= SNR_FLAG and "weak signal" not in found:
            found.append("weak signal")
    return {k: v for k, v in flags.items() if v}
