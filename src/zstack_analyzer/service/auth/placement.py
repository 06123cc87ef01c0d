"""Where a new image goes: its owner and group (upload), and which roots a caller may register from.

Why dependencies: the group is checked before the upload body is read (a
caller who may not upload to a group gets 403 at once, not after 20 GB), and
the routes only copy ``owner_id``/``group_id`` onto the row they build.

- ``users`` mode: ``?group=NAME`` (a member, or an admin) or the caller's
  default group (the one joined first; an admin without groups: ``default``).
  In-place roots are the group import roots of the caller's groups (an admin:
  every group's, plus ``ZSTACK_IMPORT_ROOTS``, whose files go to ``default``).
- ``none``/``token`` modes: no owner; ``?group=NAME`` or ``default``; the roots
  are ``ZSTACK_IMPORT_ROOTS``, as before accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Query, Request
from sqlalchemy import select

from zstack_analyzer.service.auth.models import DEFAULT_GROUP, Group
from zstack_analyzer.service.auth.permissions import Principal, can_change, can_view
from zstack_analyzer.service.auth.principal import PrincipalDep  # noqa: TC001  (FastAPI reads it)

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

    from zstack_analyzer.service.config import Settings
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.db.session import Database

__all__ = [
    "Placement",
    "PlacementDep",
    "RegisterScope",
    "RegisterScopeDep",
    "choose_group",
]

GroupQuery = Annotated[
    str | None,
    Query(
        max_length=150,
        description="Group the new image goes to (you must be a member); "
        "omitted: your default group",
    ),
]


@dataclass(frozen=True, slots=True)
class Placement:
    """The owner and group a new image gets."""

    owner_id: int | None
    group_id: int
    group: str


def _not_member(name: str) -> HTTPException:
    # The same answer whether the group exists or not: group names are not disclosed.
    return HTTPException(403, f"you are not a member of a group {name[:150]!r}")


def choose_group(session: Session, principal: Principal, group: str | None) -> Placement:
    """The placement for ``principal`` asking for ``group`` (403 when not a member)."""
    from zstack_analyzer.service.auth.accounts import default_group_id

    owner = principal.user_id
    if group is not None:
        group = group.replace("\x00", "")  # PostgreSQL text cannot hold NUL; no name has one
        if principal.user_id is not None and not principal.is_admin:
            for role in principal.groups.values():
                if role.name == group:
                    return Placement(owner, role.group_id, role.name)
            raise _not_member(group)
        group_id = session.scalar(select(Group.id).where(Group.name == group))
        if group_id is None:
            raise HTTPException(422, f"group: no group {group[:150]!r}")
        return Placement(owner, int(group_id), group)
    if principal.groups and not principal.is_admin:
        first = next(iter(principal.groups.values()))
        return Placement(owner, first.group_id, first.name)
    if principal.user_id is not None and not principal.is_admin:
        msg = "you belong to no group; ask an admin to add you to one"
        raise HTTPException(403, msg)
    return Placement(owner, default_group_id(session), DEFAULT_GROUP)


async def upload_placement(
    request: Request, principal: PrincipalDep, group: GroupQuery = None
) -> Placement:
    """Dependency: the owner and group of an upload (checked before the body is read)."""
    database: Database = request.app.state.database
    return await database.run(choose_group, principal, group)


PlacementDep = Annotated[Placement, Depends(upload_placement)]


@dataclass(frozen=True, slots=True)
class RegisterScope:
    """The roots a caller may register from, each with the group its files go to."""

    principal: Principal
    roots: list[tuple[Path, Placement]]

    @property
    def paths(self) -> list[Path]:
        """The roots, for ``resolve_import_path``."""
        return [path for path, _ in self.roots]

    def placement_for(self, path: Path) -> Placement:
        """The group of the innermost root holding ``path`` (it passed ``resolve_import_path``)."""
        best: tuple[int, Placement] | None = None
        for root, placement in self.roots:
            resolved = root.resolve(strict=False)
            if path.is_relative_to(resolved) and (best is None or len(resolved.parts) > best[0]):
                best = (len(resolved.parts), placement)
        if best is None:  # unreachable after resolve_import_path; refuse rather than guess
            raise HTTPException(403, f"{path}: outside your import roots")
        return best[1]

    def check_existing(self, image: Image | None) -> None:
        """A path registered before may be answered or refreshed only by whoever may see/change it."""
        if image is None:
            return
        if not can_view(self.principal, image):
            msg = "this path is registered already, in a group you are not in"
            raise HTTPException(409, msg)
        if not can_change(self.principal, image):
            msg = f"image {image.id} is registered from this path; you may not refresh it"
            raise HTTPException(403, msg)


def _register_scope(
    session: Session, principal: Principal, settings: Settings, group: str | None
) -> RegisterScope:
    from zstack_analyzer.confine import confine_reads
    from zstack_analyzer.service.auth.accounts import group_roots

    roots: list[tuple[Path, Placement]] = []
    if settings.auth_mode() != "users":
        placement = choose_group(session, principal, group)
        roots = [(root, placement) for root in settings.import_roots]
        return RegisterScope(principal, roots)
    if group is not None:
        choose_group(session, principal, group)  # 403 unless a member (or an admin)
    infos = group_roots(session)
    # Reads beneath every group's root are confined to it, as ZSTACK_IMPORT_ROOTS' are
    # (a root an admin added since start-up, from this process or the CLI, joins here).
    confine_reads(info.path for info in infos)
    for info in infos:
        if group is not None and info.group != group:
            continue
        if principal.is_admin or principal.member_of(info.group_id) is not None:
            roots.append((info.path, Placement(principal.user_id, info.group_id, info.group)))
    if principal.is_admin and (group is None or group == DEFAULT_GROUP):
        from zstack_analyzer.service.auth.accounts import default_group_id

        default = Placement(principal.user_id, default_group_id(session), DEFAULT_GROUP)
        roots.extend((root, default) for root in settings.import_roots)
    return RegisterScope(principal, roots)


async def register_scope(
    request: Request, principal: PrincipalDep, group: GroupQuery = None
) -> RegisterScope:
    """Dependency: the import roots this caller may register from (and their groups)."""
    database: Database = request.app.state.database
    settings: Settings = request.app.state.settings
    return await database.run(_register_scope, principal, settings, group)


RegisterScopeDep = Annotated[RegisterScope, Depends(register_scope)]
