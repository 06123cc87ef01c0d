"""Key-value pairs (OMERO's map annotations): ordered, keys may repeat, an optional namespace.

Why replace-the-list: the viewer's table editor and the API send the whole
ordered list, so order and repeated keys are kept exactly as given, and two
editors never interleave half-lists (the last write wins, whole).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select

from zstack_analyzer.service.annotations.models import KeyValue, index_key
from zstack_analyzer.service.annotations.schemas import KeyValueItem
from zstack_analyzer.service.db.models import utcnow
from zstack_analyzer.service.errors import BadParameterError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.annotations.access import Target
    from zstack_analyzer.service.auth.permissions import Principal

__all__ = ["MAX_PAIRS", "kv_row", "replace_key_values", "target_key_values"]

#: Most key-value pairs one target may carry.
MAX_PAIRS = 1000


def target_key_values(session: Session, target: Target) -> list[KeyValueItem]:
    """The target's pairs, in their order."""
    rows = session.scalars(
        select(KeyValue).where(target.where(KeyValue)).order_by(KeyValue.position, KeyValue.id)
    )
    return [KeyValueItem(key=r.key, value=r.value, namespace=r.namespace) for r in rows]


def kv_row(
    item: KeyValueItem, position: int, owner_id: int | None, group_id: int | None
) -> dict[str, object]:
    """The column values of one pair (without its target), for a bulk INSERT."""
    return {
        "position": position,
        "namespace": item.namespace,
        "key": item.key,
        "value": item.value,
        "key_key": index_key(item.key),
        "value_key": index_key(item.value),
        "owner_id": owner_id,
        "group_id": group_id,
        "created_at": utcnow(),
    }


def replace_key_values(
    session: Session, principal: Principal, target: Target, items: list[KeyValueItem]
) -> list[KeyValueItem]:
    """Make ``items`` the target's pairs (in this order); the new list."""
    if len(items) > MAX_PAIRS:
        msg = f"at most {MAX_PAIRS} key-value pairs per target, got {len(items)}"
        raise BadParameterError(msg)
    session.execute(delete(KeyValue).where(target.where(KeyValue)))
    if items:
        session.execute(
            insert(KeyValue),
            [
                {**kv_row(item, n, principal.user_id, target.group_id), **target.values()}
                for n, item in enumerate(items)
            ],
        )
    session.commit()
    return target_key_values(session, target)
