"""Queries on images; each takes the session it runs in (no hidden globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update

from zstack_analyzer.service.db.models import Image

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "add_image",
    "count_sha256",
    "delete_image",
    "find_duplicate",
    "get_image",
    "image_list_conditions",
    "like_literal",
    "mark_thumbnail_ready",
    "stored_names",
]


def get_image(session: Session, image_id: uuid.UUID) -> Image | None:
    """The image with ``image_id`` or ``None``."""
    return session.get(Image, image_id)


def image_list_conditions(
    q: str | None = None, visible: ColumnElement[bool] | None = None
) -> list[ColumnElement[bool]]:
    """The conditions of the image list: a filename substring ``q`` and what the caller may see.

    ``visible`` (``auth.permissions.visible_images_filter``) restricts page and
    count alike to what the caller may see.
    """
    conditions = [] if visible is None else [visible]
    text = (q or "").replace("\x00", "")  # PostgreSQL text cannot hold NUL
    if text:
        pattern = f"%{like_literal(text.lower())}%"
        conditions.append(func.lower(Image.filename).like(pattern, escape="\\"))
    return conditions


def like_literal(text: str) -> str:
    r"""``text`` with LIKE's wildcards escaped (escape character ``\``), matched literally.

    Examples
    --------
    >>> like_literal("50%_a\\b")
    '50\\%\\_a\\\\b'
    """
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def add_image(session: Session, image: Image) -> Image:
    """Insert and commit ``image``."""
    session.add(image)
    session.commit()
    return image


def find_duplicate(
    session: Session, sha256: str, *, exclude: uuid.UUID | None = None
) -> Image | None:
    """The oldest image with the same content hash, other than ``exclude``."""
    query = select(Image).where(Image.sha256 == sha256)
    if exclude is not None:
        query = query.where(Image.id != exclude)
    return session.scalars(query.order_by(Image.created_at, Image.id).limit(1)).first()


def count_sha256(session: Session, sha256: str) -> int:
    """How many images share this content hash (their renders share one cache identity)."""
    return int(session.scalar(select(func.count()).where(Image.sha256 == sha256)) or 0)


def delete_image(session: Session, image_id: uuid.UUID) -> bool:
    """Delete the row and commit; ``False`` when there was none."""
    result = session.execute(delete(Image).where(Image.id == image_id))
    session.commit()
    return bool(getattr(result, "rowcount", 0))


def mark_thumbnail_ready(session: Session, image_id: uuid.UUID) -> None:
    """Record that the default thumbnail is in the cache."""
    session.execute(update(Image).where(Image.id == image_id).values(thumbnail_ready=True))
    session.commit()


def stored_names(session: Session) -> set[str]:
    """Every stored file name with a row (the start-up sweep keeps exactly these).

    Attachments (``service/annotations/``) are stored beside the originals.
    """
    from zstack_analyzer.service.annotations.models import Attachment

    names = set(session.scalars(select(Image.stored_name)).all())
    names.update(session.scalars(select(Attachment.stored_name)).all())
    return names
