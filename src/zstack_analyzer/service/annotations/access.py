"""What an annotation is about (its *target*) and whether the caller may see, annotate or change it.

Why one module: every route of the room loads its image, dataset or project
here, and the answer follows ``auth.permissions.allows`` exactly as for
images: a target the caller may not see answers 404 (its existence is not
disclosed), one the caller may see but not annotate or change answers 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from fastapi import HTTPException
from sqlalchemy import select

from zstack_analyzer.service.annotations.models import Dataset, Project
from zstack_analyzer.service.auth.models import Group, User
from zstack_analyzer.service.auth.permissions import Action, Principal, allows
from zstack_analyzer.service.errors import ImageNotFoundError
from zstack_analyzer.service.images_service import require_image

if TYPE_CHECKING:
    import uuid
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

    from zstack_analyzer.service.db.models import Image

__all__ = [
    "KINDS",
    "Kind",
    "Names",
    "Target",
    "aware",
    "forbid",
    "load_container",
    "load_target",
    "names_for",
    "not_found",
]

Kind = Literal["image", "dataset", "project"]
#: The kinds of target, as their URL segment (``/api/{kind}s/{id}/...``).
KINDS: tuple[Kind, ...] = ("image", "dataset", "project")
#: Largest container id accepted (a 32-bit signed integer, like every index).
MAX_ID = 2**31 - 1


def aware(value: datetime) -> datetime:
    """``value`` with its zone: SQLite hands back naive datetimes, stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def not_found(kind: Kind, raw_id: object) -> Exception:
    """404 for ``kind`` ``raw_id`` (the same whether absent or invisible)."""
    if kind == "image":
        return ImageNotFoundError(f"no image with id {str(raw_id)[:64]!r}")
    return HTTPException(404, f"no {kind} with id {str(raw_id)[:64]!r}")


def forbid(kind: Kind, raw_id: object, action: Action) -> HTTPException:
    """403: the caller may see the target but not do ``action`` to it."""
    return HTTPException(403, f"you may see {kind} {str(raw_id)[:64]} but not {action.value} it")


def parse_container_id(kind: Kind, raw_id: object) -> int:
    """A container id as an int; anything else is an unknown container (404)."""
    try:
        value = int(str(raw_id))
    except ValueError:
        raise not_found(kind, raw_id) from None
    if not 0 < value <= MAX_ID:
        raise not_found(kind, raw_id)
    return value


def load_container(
    session: Session, principal: Principal, kind: Kind, raw_id: object, action: Action
) -> Project | Dataset:
    """The project or dataset ``raw_id`` if the caller may do ``action`` to it (else 404/403)."""
    key = parse_container_id(kind, raw_id)
    row: Project | Dataset | None = (
        session.get(Project, key) if kind == "project" else session.get(Dataset, key)
    )
    if row is None or not allows(principal, row, Action.VIEW):
        raise not_found(kind, raw_id)
    if not allows(principal, row, action):
        raise forbid(kind, raw_id, action)
    return row


@dataclass(frozen=True, slots=True)
class Target:
    """An image, dataset or project that annotations point at."""

    kind: Kind
    row: Image | Dataset | Project

    @property
    def column(self) -> str:
        """The annotation tables' column naming this target (``image_id``, ...)."""
        return f"{self.kind}_id"

    @property
    def key(self) -> uuid.UUID | int:
        """The target's primary key."""
        return self.row.id

    @property
    def group_id(self) -> int | None:
        """The group annotations of this target belong to."""
        return self.row.group_id

    def where(self, model: Any) -> Any:
        """``model.<kind>_id == id``: the condition selecting this target's annotations."""
        return getattr(model, self.column) == self.key

    def values(self) -> dict[str, Any]:
        """Column values that point a new annotation row at this target."""
        return {self.column: self.key}


def load_target(
    session: Session, principal: Principal, kind: Kind, raw_id: object, action: Action
) -> Target:
    """The target ``kind`` ``raw_id``, checked for ``action`` (404 when invisible, 403 when not allowed).

    Images are checked here too (besides the router's guard), so a route that
    is reached some other way (the bulk table, the CLI) still obeys the table.
    """
    if kind == "image":
        image = require_image(session, str(raw_id))
        if not allows(principal, image, Action.VIEW):
            raise not_found(kind, raw_id)
        if not allows(principal, image, action):
            raise forbid(kind, raw_id, action)
        return Target(kind, image)
    return Target(kind, load_container(session, principal, kind, raw_id, action))


@dataclass(frozen=True, slots=True)
class Names:
    """``id -> name`` of the users and groups some rows name."""

    users: dict[int, str]
    groups: dict[int, str]

    def user(self, user_id: int | None) -> str | None:
        """The username of ``user_id`` (``None`` for no owner)."""
        return self.users.get(user_id) if user_id is not None else None

    def group(self, group_id: int | None) -> str | None:
        """The name of ``group_id``."""
        return self.groups.get(group_id) if group_id is not None else None


def names_for(session: Session, rows: Iterable[Any]) -> Names:
    """Usernames and group names of the rows' ``owner_id``/``group_id`` (two queries at most)."""
    items = list(rows)
    user_ids = {r.owner_id for r in items if getattr(r, "owner_id", None) is not None}
    group_ids = {r.group_id for r in items if getattr(r, "group_id", None) is not None}
    users: dict[int, str] = {}
    groups: dict[int, str] = {}
    if user_ids:
        query = select(User.id, User.username).where(User.id.in_(user_ids))
        users = {int(key): str(name) for key, name in session.execute(query)}
    if group_ids:
        query = select(Group.id, Group.name).where(Group.id.in_(group_ids))
        groups = {int(key): str(name) for key, name in session.execute(query)}
    return Names(users, groups)
