"""Attachments: small files (a protocol PDF, a plate map) on images, datasets and projects.

Why stored like originals: the bytes go through the same storage (local
folder or bucket) under a ``<uuid><suffix>`` name, written to a temp file
first and committed before the row, so a crash leaves at worst a file
without a row, which the start-up sweep removes (``crud.stored_names`` keeps
attachments too). The size cap is ``annotations.max_attachment_bytes``.
"""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING

from fastapi import HTTPException
from sqlalchemy import select

from zstack_analyzer.service.annotations.access import aware, names_for
from zstack_analyzer.service.annotations.comments import target_of
from zstack_analyzer.service.annotations.models import Attachment
from zstack_analyzer.service.annotations.schemas import AttachmentPublic
from zstack_analyzer.service.auth.permissions import Action, allows
from zstack_analyzer.service.db.models import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.annotations.access import Target
    from zstack_analyzer.service.auth.permissions import Principal

__all__ = [
    "add_attachment",
    "attachment_public",
    "media_type_of",
    "readable_attachment",
    "removable_attachment",
    "target_attachments",
]


def media_type_of(filename: str) -> str:
    """The media type a download is labelled with, from the (sanitised) name only.

    Examples
    --------
    >>> media_type_of("protocol.pdf"), media_type_of("notes")
    ('application/pdf', 'application/octet-stream')
    """
    guessed, _ = mimetypes.guess_type(filename, strict=True)
    return guessed or "application/octet-stream"


def attachment_public(session: Session, rows: list[Attachment]) -> list[AttachmentPublic]:
    """The API view of some attachments."""
    names = names_for(session, rows)
    return [
        AttachmentPublic(
            id=r.id,
            filename=r.filename,
            media_type=r.media_type,
            size_bytes=r.size_bytes,
            sha256=r.sha256,
            owner_id=r.owner_id,
            owner=names.user(r.owner_id),
            created_at=aware(r.created_at),
        )
        for r in rows
    ]


def target_attachments(session: Session, target: Target) -> list[AttachmentPublic]:
    """The target's attachments, oldest first."""
    rows = list(
        session.scalars(select(Attachment).where(target.where(Attachment)).order_by(Attachment.id))
    )
    return attachment_public(session, rows)


def add_attachment(
    session: Session,
    principal: Principal,
    target: Target,
    *,
    filename: str,
    stored_name: str,
    size_bytes: int,
    sha256: str,
) -> AttachmentPublic:
    """The row of a file already committed to storage under ``stored_name``."""
    row = Attachment(
        filename=filename,
        stored_name=stored_name,
        media_type=media_type_of(filename),
        size_bytes=size_bytes,
        sha256=sha256,
        owner_id=principal.user_id,
        group_id=target.group_id,
        created_at=utcnow(),
        **target.values(),
    )
    session.add(row)
    session.commit()
    return attachment_public(session, [row])[0]


def _load(session: Session, principal: Principal, attachment_id: int) -> tuple[Attachment, Target]:
    row = session.get(Attachment, attachment_id)
    if row is None:
        raise HTTPException(404, f"no attachment with id {attachment_id}")
    try:
        target = target_of(session, principal, row, Action.VIEW)
    except (HTTPException, LookupError):
        raise HTTPException(404, f"no attachment with id {attachment_id}") from None
    return row, target


def readable_attachment(session: Session, principal: Principal, attachment_id: int) -> Attachment:
    """The attachment, if the caller may see its target (else 404)."""
    return _load(session, principal, attachment_id)[0]


def removable_attachment(session: Session, principal: Principal, attachment_id: int) -> str:
    """Delete the row (its author who may annotate, or whoever may change the target); its stored name."""
    row, target = _load(session, principal, attachment_id)
    own = principal.user_id is not None and row.owner_id == principal.user_id
    if not (
        allows(principal, target.row, Action.CHANGE)
        or (own and allows(principal, target.row, Action.ANNOTATE))
    ):
        raise HTTPException(403, f"attachment {attachment_id} is not yours to delete")
    stored_name = row.stored_name
    session.delete(row)
    session.commit()
    return stored_name
