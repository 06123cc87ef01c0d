"""Owner and group names for a page of images (two small queries, by primary key).

Why not a join in every image query: the list and search queries stay as they
are (their plans were measured); the names of a page's few owners and groups
are looked up once per page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from zstack_analyzer.service.auth.models import Group, User

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

    from zstack_analyzer.service.db.models import Image

__all__ = ["Labels", "labels_for"]


@dataclass(frozen=True, slots=True)
class Labels:
    """``id -> name`` of the users and groups a page of images names."""

    users: dict[int, str]
    groups: dict[int, str]

    def of(self, image: Image) -> tuple[str | None, str | None]:
        """(owner's username, group's name) of ``image``."""
        owner = self.users.get(image.owner_id) if image.owner_id is not None else None
        group = self.groups.get(image.group_id) if image.group_id is not None else None
        return owner, group


def labels_for(session: Session, images: Iterable[Image]) -> Labels:
    """The names of the owners and groups of ``images``."""
    rows = list(images)
    user_ids = {row.owner_id for row in rows if row.owner_id is not None}
    group_ids = {row.group_id for row in rows if row.group_id is not None}
    users: dict[int, str] = {}
    groups: dict[int, str] = {}
    if user_ids:
        query = select(User.id, User.username).where(User.id.in_(user_ids))
        users = {user_id: name for user_id, name in session.execute(query)}  # noqa: C416
    if group_ids:
        query = select(Group.id, Group.name).where(Group.id.in_(group_ids))
        groups = {group_id: name for group_id, name in session.execute(query)}  # noqa: C416
    return Labels(users, groups)
