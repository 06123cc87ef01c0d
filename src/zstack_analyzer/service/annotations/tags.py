"""Tags: per group, unique by name (case-insensitively), on images, datasets and projects.

Why per group: a group shares one vocabulary (OMERO's tag sets live in a
group too); a tag put on an image is looked up, or made on first use, in the
image's group, so members of that group find and reuse it. Renaming and
merging belong to the tag's owner, a group owner or an admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from zstack_analyzer.service.annotations.access import names_for
from zstack_analyzer.service.annotations.models import (
    Dataset,
    Project,
    Tag,
    TagLink,
    index_key,
)
from zstack_analyzer.service.annotations.schemas import TagPublic, TagRef, TagsPublic
from zstack_analyzer.service.auth.permissions import (
    Principal,
    visible_filter,
    visible_images_filter,
)
from zstack_analyzer.service.db.models import Image, utcnow
from zstack_analyzer.service.errors import BadParameterError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

    from zstack_analyzer.service.annotations.access import Target

__all__ = [
    "MAX_TAGS",
    "ensure_tags",
    "list_tags",
    "merge_tag",
    "replace_tags",
    "target_tags",
    "update_tag",
    "visible_tags",
]

#: Most tags one target may carry.
MAX_TAGS = 1000


def visible_tags(principal: Principal) -> ColumnElement[bool]:
    """Tags seen like images: one's own, and those of groups whose members see each other's.

    So in a private group a member lists only the tags they made (the tags on
    an image they can see are shown with the image all the same).
    """
    return visible_filter(principal, Tag.owner_id, Tag.group_id)


def _unique_names(names: Iterable[str]) -> list[str]:
    """Names cleaned and de-duplicated case-insensitively (the first spelling wins)."""
    from zstack_analyzer.service.annotations.schemas import clean_text

    seen: set[str] = set()
    result: list[str] = []
    for raw in names:
        try:
            name = clean_text(str(raw), "tag")
        except ValueError as exc:
            raise BadParameterError(str(exc)) from None
        key = index_key(name)
        if key not in seen:
            seen.add(key)
            result.append(name)
    if len(result) > MAX_TAGS:
        msg = f"at most {MAX_TAGS} tags per target, got {len(result)}"
        raise BadParameterError(msg)
    return result


def group_for_tags(session: Session, group_id: int | None) -> int:
    """The group a target's tags live in (its own; ``default`` for a target without one)."""
    if group_id is not None:
        return group_id
    from zstack_analyzer.service.auth.accounts import default_group_id

    return default_group_id(session)


def ensure_tags(
    session: Session, group_id: int, names: list[str], owner_id: int | None
) -> dict[str, Tag]:
    """``name_key -> Tag`` for ``names`` in ``group_id``, making the missing ones (flushed).

    Two requests making the same tag at once: the unique constraint lets one
    win; the other rolls back and finds it on its second look (so call this
    before any other write of the transaction).
    """
    keys = {index_key(name): name for name in names}
    found: dict[str, Tag] = {}
    for attempt in range(2):
        found = {
            tag.name_key: tag
            for tag in session.scalars(
                select(Tag).where(Tag.group_id == group_id, Tag.name_key.in_(list(keys)))
            )
        }
        missing = [key for key in keys if key not in found]
        if not missing:
            return found
        new = [
            Tag(
                group_id=group_id,
                name=keys[key],
                name_key=key,
                description="",
                owner_id=owner_id,
                created_at=utcnow(),
            )
            for key in missing
        ]
        session.add_all(new)
        try:
            session.flush()
        except IntegrityError:
            # Call before any other write of the transaction: the rollback undoes only this.
            session.rollback()
            if attempt:
                raise
            continue
        found.update((tag.name_key, tag) for tag in new)
        return found
    return found


def target_tags(session: Session, target: Target) -> list[TagRef]:
    """The tags on ``target``, by name."""
    rows = session.scalars(
        select(Tag)
        .join(TagLink, TagLink.tag_id == Tag.id)
        .where(target.where(TagLink))
        .order_by(Tag.name_key)
    )
    return [TagRef(id=t.id, name=t.name, group_id=t.group_id, owner_id=t.owner_id) for t in rows]


def replace_tags(
    session: Session, principal: Principal, target: Target, names: list[str]
) -> list[TagRef]:
    """Make ``names`` the target's tags (made on first use in its group); the new list."""
    wanted = _unique_names(names)
    group_id = group_for_tags(session, target.group_id)
    tags = ensure_tags(session, group_id, wanted, principal.user_id)
    keep = {tags[index_key(name)].id for name in wanted}
    current = set(session.scalars(select(TagLink.tag_id).where(target.where(TagLink))))
    drop = current - keep
    if drop:
        session.execute(delete(TagLink).where(target.where(TagLink), TagLink.tag_id.in_(drop)))
    now = utcnow()
    session.add_all(
        TagLink(
            tag_id=tag_id,
            owner_id=principal.user_id,
            group_id=target.group_id,
            created_at=now,
            **target.values(),
        )
        for tag_id in sorted(keep - current)
    )
    session.commit()
    return target_tags(session, target)


def _counts(session: Session, principal: Principal, ids: list[int]) -> dict[str, dict[int, int]]:
    result: dict[str, dict[int, int]] = {"image": {}, "dataset": {}, "project": {}}
    if not ids:
        return result
    joins = (
        ("image", Image, TagLink.image_id, visible_images_filter(principal)),
        (
            "dataset",
            Dataset,
            TagLink.dataset_id,
            visible_filter(principal, Dataset.owner_id, Dataset.group_id),
        ),
        (
            "project",
            Project,
            TagLink.project_id,
            visible_filter(principal, Project.owner_id, Project.group_id),
        ),
    )
    for kind, model, column, visible in joins:
        query = (
            select(TagLink.tag_id, func.count())
            .join(model, model.id == column)
            .where(TagLink.tag_id.in_(ids), visible)
            .group_by(TagLink.tag_id)
        )
        result[kind] = {int(tag_id): int(count) for tag_id, count in session.execute(query)}
    return result


def tag_public(session: Session, principal: Principal, rows: list[Tag]) -> list[TagPublic]:
    """The API view of some tags, with their counts (three grouped queries)."""
    counts = _counts(session, principal, [row.id for row in rows])
    names = names_for(session, rows)
    return [
        TagPublic(
            id=row.id,
            name=row.name,
            group_id=row.group_id,
            owner_id=row.owner_id,
            description=row.description,
            group=names.group(row.group_id),
            owner=names.user(row.owner_id),
            count=counts["image"].get(row.id, 0),
            dataset_count=counts["dataset"].get(row.id, 0),
            project_count=counts["project"].get(row.id, 0),
        )
        for row in rows
    ]


def list_tags(
    session: Session,
    principal: Principal,
    *,
    q: str | None = None,
    group: str | None = None,
    skip: int = 0,
    limit: int = 100,
) -> TagsPublic:
    """Visible tags by name (``q``: name prefix, for autocomplete), with counts."""
    conditions: list[ColumnElement[bool]] = [visible_tags(principal)]
    if q:
        prefix = index_key(q)
        if prefix:
            conditions.append(and_(Tag.name_key >= prefix, Tag.name_key < prefix + "\uffff"))
    if group is not None:
        from zstack_analyzer.service.auth.models import Group

        conditions.append(Tag.group_id.in_(select(Group.id).where(Group.name == group)))
    rows = list(
        session.scalars(
            select(Tag).where(*conditions).order_by(Tag.name_key, Tag.id).offset(skip).limit(limit)
        )
    )
    total = session.scalar(select(func.count()).select_from(Tag).where(*conditions)) or 0
    return TagsPublic(data=tag_public(session, principal, rows), count=int(total))


def _load_tag(session: Session, principal: Principal, tag_id: int, *, manage: bool) -> Tag:
    """The tag, if visible (else 404); with ``manage``, also the caller's to rename or merge (else 403)."""
    tag = session.get(Tag, tag_id)
    if (
        tag is None
        or session.scalar(select(Tag.id).where(Tag.id == tag_id, visible_tags(principal))) is None
    ):
        raise HTTPException(404, f"no tag with id {tag_id}")
    if manage and not _may_manage(principal, tag):
        msg = f"only the tag's owner or an owner of its group may rename or merge tag {tag_id}"
        raise HTTPException(403, msg)
    return tag


def _may_manage(principal: Principal, tag: Tag) -> bool:
    if principal.read_only:
        return False
    if principal.is_admin:
        return True
    if principal.user_id is not None and tag.owner_id == principal.user_id:
        return True
    role = principal.member_of(tag.group_id)
    return role is not None and role.is_owner


def update_tag(
    session: Session,
    principal: Principal,
    tag_id: int,
    *,
    name: str | None,
    description: str | None,
) -> TagPublic:
    """Rename a tag (409 when its group has a tag of that name: merge instead)."""
    tag = _load_tag(session, principal, tag_id, manage=True)
    if name is not None and index_key(name) != tag.name_key:
        clash = session.scalar(
            select(Tag.id).where(Tag.group_id == tag.group_id, Tag.name_key == index_key(name))
        )
        if clash is not None:
            msg = f"the group already has a tag {name!r} (id {clash}); merge into it instead"
            raise HTTPException(409, msg)
    if name is not None:
        tag.name, tag.name_key = name, index_key(name)
    if description is not None:
        tag.description = description
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(409, f"the group already has a tag {name!r}") from None
    return tag_public(session, principal, [tag])[0]


def merge_tag(session: Session, principal: Principal, tag_id: int, into: int) -> TagPublic:
    """Move every link of ``tag_id`` to ``into`` (same group), then delete ``tag_id``."""
    source = _load_tag(session, principal, tag_id, manage=True)
    target = _load_tag(session, principal, into, manage=False)
    if source.id == target.id:
        msg = "a tag cannot be merged into itself"
        raise BadParameterError(msg)
    if source.group_id != target.group_id:
        msg = "tags of different groups cannot be merged"
        raise HTTPException(409, msg)
    for column in (TagLink.image_id, TagLink.dataset_id, TagLink.project_id):
        # A target carrying both tags keeps the one link to ``into``.
        both = select(TagLink.__table__.c[column.key]).where(
            TagLink.tag_id == target.id, column.is_not(None)
        )
        session.execute(delete(TagLink).where(TagLink.tag_id == source.id, column.in_(both)))
    session.execute(update(TagLink).where(TagLink.tag_id == source.id).values(tag_id=target.id))
    session.delete(source)
    session.commit()
    return tag_public(session, principal, [target])[0]
