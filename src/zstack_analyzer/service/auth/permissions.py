"""Who may see, annotate and change an image: OMERO's four group levels, in one module.

Why one module: every route and query asks here (the image guard for
``/api/images/{id}...``, :func:`visible_images_filter` for list, search and
their totals), so the table below is implemented exactly once.

| group level   | members see others' | annotate others' | change/delete others' |
|---------------|---------------------|------------------|-----------------------|
| private       | no                  | no               | no                    |
| read-only     | yes                 | no               | no                    |
| read-annotate | yes                 | yes              | no                    |
| read-write    | yes                 | yes              | yes                   |

The image's owner can always do everything to it; a group owner (leader) and
an admin can do everything to every image of the group. A read-only API token
can only look, whatever its user may do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import and_, false, or_, select, true

from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.db.models import Image

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import QueryableAttribute
    from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "ANONYMOUS",
    "SINGLE_USER",
    "Action",
    "GroupRole",
    "ImageLike",
    "Principal",
    "allows",
    "can_annotate",
    "can_change",
    "can_view",
    "visible_filter",
    "visible_images_filter",
    "visible_in_group",
]


class Action(StrEnum):
    """What a request does to an image (the guard derives it from the route)."""

    VIEW = "view"
    ANNOTATE = "annotate"
    CHANGE = "change"


@dataclass(frozen=True, slots=True)
class GroupRole:
    """One of the caller's groups: its level and whether the caller owns (leads) it."""

    group_id: int
    name: str
    level: Permission
    is_owner: bool = False

    @property
    def role(self) -> str:
        """``"owner"`` or ``"member"`` (what ``GET /api/auth/me`` shows)."""
        return "owner" if self.is_owner else "member"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, as the permission checks need it.

    ``user_id`` is ``None`` for the single all-powerful principal of the
    none/token modes (``is_admin`` true) and for :data:`ANONYMOUS`. ``via`` says
    how the caller proved who they are (``"none"``, ``"token"`` for
    ``ZSTACK_API_TOKEN``, ``"session"``, ``"api-token"``), ``csrf_token`` is set
    for a session (a cookie request must echo it), ``token_id`` for a personal token.
    ``auth_source`` says where the user's password is checked (``"local"``: this
    server, which can change it; ``"ldap"``: the directory); ``None`` without a
    user. No permission check reads it: ``GET /api/auth/me`` shows it so the
    viewer offers "Change password" only where the server can change it.
    """

    user_id: int | None
    username: str
    is_admin: bool = False
    groups: Mapping[int, GroupRole] = field(default_factory=dict)
    read_only: bool = False
    via: str = "none"
    csrf_token: str | None = None
    token_id: int | None = None
    auth_source: str | None = None

    @property
    def is_authenticated(self) -> bool:
        """Whether anyone at all is calling (false only for :data:`ANONYMOUS`)."""
        return self.via != "anonymous"

    def member_of(self, group_id: int | None) -> GroupRole | None:
        """The caller's role in ``group_id``, or ``None`` when not a member."""
        if group_id is None:
            return None
        return self.groups.get(group_id)


#: The one principal of ``ZSTACK_AUTH=none`` (and, with ``via="token"``, of ``token`` mode).
SINGLE_USER = Principal(user_id=None, username="local", is_admin=True, via="none")
#: A request without credentials in ``users`` mode (answered 401 before any route runs).
ANONYMOUS = Principal(user_id=None, username="", via="anonymous")


class ImageLike(Protocol):
    """What the checks read of an image row (an :class:`Image` or anything alike)."""

    @property
    def owner_id(self) -> int | None: ...  # noqa: D102

    @property
    def group_id(self) -> int | None: ...  # noqa: D102


def _levels_for(action: Action) -> frozenset[Permission]:
    if action is Action.VIEW:
        return frozenset({Permission.READ_ONLY, Permission.READ_ANNOTATE, Permission.READ_WRITE})
    if action is Action.ANNOTATE:
        return frozenset({Permission.READ_ANNOTATE, Permission.READ_WRITE})
    return frozenset({Permission.READ_WRITE})


def allows(principal: Principal, image: ImageLike, action: Action) -> bool:
    """Whether ``principal`` may do ``action`` to ``image`` (the table in the module doc)."""
    if principal.read_only and action is not Action.VIEW:
        return False
    if principal.is_admin:
        return True
    if principal.user_id is None:
        return False
    if image.owner_id is not None and image.owner_id == principal.user_id:
        return True
    role = principal.member_of(image.group_id)
    if role is None:
        return False
    return role.is_owner or role.level in _levels_for(action)


def can_view(principal: Principal, image: ImageLike) -> bool:
    """Whether ``principal`` may see ``image`` (else it answers 404: not disclosed)."""
    return allows(principal, image, Action.VIEW)


def can_annotate(principal: Principal, image: ImageLike) -> bool:
    """Whether ``principal`` may annotate ``image`` (tags, comments, ROIs)."""
    return allows(principal, image, Action.ANNOTATE)


def can_change(principal: Principal, image: ImageLike) -> bool:
    """Whether ``principal`` may change, move or delete ``image`` (else 403 if visible)."""
    return allows(principal, image, Action.CHANGE)


def visible_images_filter(principal: Principal) -> ColumnElement[bool]:
    """A WHERE clause on ``images`` selecting exactly what :func:`can_view` allows.

    Used inside the list, search and lookup queries (and their counts), so
    totals and pages are right and the database does the work on its indexes
    (``ix_images_owner_id``, ``ix_images_group_id``).

    Examples
    --------
    >>> str(visible_images_filter(SINGLE_USER))
    'true'
    """
    return visible_filter(principal, Image.owner_id, Image.group_id)


def visible_filter(
    principal: Principal,
    owner_id: QueryableAttribute[int | None],
    group_id: QueryableAttribute[int | None],
) -> ColumnElement[bool]:
    """:func:`visible_images_filter` for any table with an owner and a group column.

    Why here: projects, datasets and annotations (``service/annotations/``) are
    seen by the same table as images, so the rule is written once.
    """
    if principal.is_admin:
        return true()
    if principal.user_id is None:
        return false()
    seen = sorted(
        role.group_id
        for role in principal.groups.values()
        if role.is_owner or role.level is not Permission.PRIVATE
    )
    own = owner_id == principal.user_id
    if not seen:
        return own
    return or_(own, group_id.in_(seen))


def visible_in_group(principal: Principal, group: str | None) -> ColumnElement[bool]:
    """:func:`visible_images_filter`, narrowed to the group called ``group`` (the gallery's filter).

    An unknown group name simply matches nothing (names are not disclosed).
    """
    visible = visible_images_filter(principal)
    if group is None:
        return visible
    from zstack_analyzer.service.auth.models import Group

    name = group.replace("\x00", "")  # PostgreSQL text cannot hold NUL; no name has one
    in_group = Image.group_id == select(Group.id).where(Group.name == name).scalar_subquery()
    return and_(visible, in_group)
