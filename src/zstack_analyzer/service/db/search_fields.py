"""What the search indexes hold for one record, derived from its metadata JSON.

Why one pure function: the insert hook in ``models.py``, the backfills of
migrations 0004 and 0019 and the benchmark all derive the same fields the same
way, and both engines index the same words. Words are runs of letters and digits,
lower-cased (``"Plan-Apochromat 63x/1.40 Oil"`` -> ``plan apochromat 63x 1 40
oil``), so SQLite's FTS5 tokenizer and PostgreSQL's ``simple`` parser see
identical tokens and a query behaves the same on both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["DerivedFields", "derive_fields", "derive_record_fields", "parse_datetime", "words"]

#: Longest indexed text per record (characters); vendor metadata can be huge.
MAX_SEARCH_TEXT = 32 * 1024
#: Longest single vendor value taken into the text.
MAX_VENDOR_VALUE = 256
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters and digits; everything else separates).

    Examples
    --------
    >>> words('Plan-Apo 63x/1.40 "Oil" AND(')
    ['plan', 'apo', '63x', '1', '40', 'oil', 'and']
    """
    return [w.lower() for w in _WORD.findall(text)]


@dataclass(slots=True)
class DerivedFields:
    """The indexed columns of one record and its channel rows."""

    search_text: str
    objective: str | None = None
    magnification: float | None = None
    immersion: str | None = None
    acquired_at: datetime | None = None
    channels: list[tuple[int, str | None, str | None]] = field(default_factory=list)


def _key(value: Any, limit: int = 255) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()[:limit]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _vendor_values(value: Any, depth: int = 0) -> Iterator[str]:
    """String and number leaves of vendor metadata (keys are not searched: too generic)."""
    if depth > 8:
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _vendor_values(item, depth + 1)
    elif isinstance(value, list):
        for item in value[:64]:
            yield from _vendor_values(item, depth + 1)
    elif isinstance(value, str):
        yield value[:MAX_VENDOR_VALUE]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)


def parse_datetime(value: Any) -> datetime | None:
    """An ISO datetime from metadata JSON, made UTC-aware (naive readings are taken as UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def derive_fields(metadata: Mapping[str, Any], filename: str) -> DerivedFields:
    """Search text, typed columns and channel keys of one record.

    ``acquired_at`` is the UTC time when the file gives its zone, else the
    local reading taken as UTC (a date filter a person types is a local date;
    a few hours either way matter less than finding the image at all).
    """
    parts: list[str] = [filename]
    channels: list[tuple[int, str | None, str | None]] = []
    for position, channel in enumerate(metadata.get("channels") or []):
        if not isinstance(channel, dict):
            continue
        name, fluor = channel.get("name"), channel.get("fluorophore")
        parts.extend(v for v in (name, fluor) if isinstance(v, str))
        channels.append((position, _key(name), _key(fluor)))
    objective = _mapping(metadata.get("objective"))
    microscope = _mapping(metadata.get("microscope"))
    for source in (objective, microscope):
        parts.extend(str(v) for v in source.values() if isinstance(v, (str, int, float)))
    parts.append(str(metadata.get("file_format") or ""))
    parts.append(str(metadata.get("scene_name") or ""))
    for scene in metadata.get("scenes") or []:
        if isinstance(scene, dict) and isinstance(scene.get("name"), str):
            parts.append(scene["name"])
    parts.extend(_vendor_values(metadata.get("vendor_metadata") or {}))
    text = " ".join(words(" ".join(parts)))[:MAX_SEARCH_TEXT]
    magnification = objective.get("magnification")
    return DerivedFields(
        search_text=text,
        objective=_key(objective.get("name")),
        magnification=float(magnification)
        if isinstance(magnification, (int, float)) and not isinstance(magnification, bool)
        else None,
        immersion=_key(objective.get("immersion"), 64),
        acquired_at=parse_datetime(metadata.get("acquired_at"))
        or parse_datetime(metadata.get("acquired_at_local")),
        channels=channels,
    )


def derive_record_fields(
    metadata: Mapping[str, Any] | None, scenes: Sequence[Any] | None, filename: str | None
) -> DerivedFields:
    """The search fields of one stored record: its metadata JSON, its scene list and its file name.

    Why a function of its own: a record keeps its scene list in a column of its own
    (``images.scenes``), not in the metadata JSON, and every writer of the search
    text (the insert hook, migration 0019) must add the scene names the same way;
    migration 0004 once left them out, and those records could not be found by a
    scene name until 0019 derived their text again with this function.
    """
    return derive_fields({**(metadata or {}), "scenes": scenes or []}, filename or "")
