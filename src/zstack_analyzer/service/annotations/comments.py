"""Comments (text, author, time) on images, datasets and projects.

Who may delete one: its author, or whoever may change the target (the
image's owner, a group owner, an admin, members of a read-write group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException
from sqlalchemy import select

from zstack_analyzer.service.annotations.access import aware, names_for
from zstack_analyzer.service.annotations.models import Comment
from zstack_analyzer.service.annotations.schemas import CommentPublic
from zstack_analyzer.service.db.models import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.annotations.access import Target
    from zstack_analyzer.service.auth.permissions import Principal

__all__ = ["add_comment", "comment_public", "delete_comment", "target_comments"]


def comment_public(session: Session, rows: list[Comment]) -> list[CommentPublic]:
    """The API view of some comments (author names in one query)."""
    names = names_for(session, rows)
    return [
        CommentPublic(
            id=r.id,
            text=r.text,
            owner_id=r.owner_id,
            owner=names.user(r.owner_id),
            created_at=aware(r.created_at),
        )
        for r in rows
    ]


def target_comments(session: Session, target: Target) -> list[CommentPublic]:
    """The target's comments, oldest first."""
    rows = list(
        session.scalars(
            select(Comment).where(target.where(Comment)).order_by(Comment.created_at, Comment.id)
        )
    )
    return comment_public(session, rows)


def add_comment(session: Session, principal: Principal, target: Target, text: str) -> CommentPublic:
    """A new comment by the caller (the route checked they may annotate the target)."""
    row = Comment(
        text=text,
        owner_id=principal.user_id,
        group_id=target.group_id,
        created_at=utcnow(),
        **target.values(),
    )
    session.add(row)
    session.commit()
    return comment_public(session, [row])[0]


def target_of(
    session: Session, principal: Principal, row: Comment | object, action: object
) -> Target:
    """The target an annotation row points at, checked for ``action`` (404/403)."""
    from zstack_analyzer.service.annotations.access import load_target

    for kind in ("image", "dataset", "project"):
        value = getattr(row, f"{kind}_id", None)
        if value is not None:
            return load_target(session, principal, kind, value, action)  # type: ignore[arg-type]
    raise HTTPException(404, "no such annotation")


def delete_comment(session: Session, principal: Principal, comment_id: int) -> None:
    """Delete a comment: its author (who may still annotate the target) or whoever may change the target."""
    from zstack_analyzer.service.auth.permissions import Action, allows

    row = session.get(Comment, comment_id)
    if row is None:
        raise HTTPException(404, f"no comment with id {comment_id}")
    try:
        target = target_of(session, principal, row, Action.VIEW)
    except (HTTPException, LookupError):
        raise HTTPException(404, f"no comment with id {comment_id}") from None
    own = principal.user_id is not None and row.owner_id == principal.user_id
    may = allows(principal, target.row, Action.CHANGE) or (
        own and allows(principal, target.row, Action.ANNOTATE)
    )
    if not may:
        raise HTTPException(403, f"comment {comment_id} is not yours to delete")
    session.delete(row)
    session.commit()
