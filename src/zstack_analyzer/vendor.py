"""JSON-safe, size-capped copies of vendor metadata, for every reader and the service.

Why one module: ``ImageMetadata.vendor_metadata`` goes into API responses and
database JSON columns. Whatever a vendor library hands us (numpy scalars and
arrays, bytes, datetimes, NaN, C strings with embedded NULs that PostgreSQL's
JSONB refuses, megabyte XML strings, deep trees) must come out as plain JSON of
bounded size, and the rules for that should be written once.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["TRUNCATION_MARK", "VENDOR_MAX_BYTES", "capped_vendor", "json_safe"]

#: Appended to a string that ``json_safe`` shortened.
TRUNCATION_MARK = "…[truncated]"
#: Default overall size of a reader's vendor block (characters of its JSON text).
VENDOR_MAX_BYTES = 64 * 1024


def json_safe(
    value: Any,
    *,
    max_string: int | None = None,
    max_items: int | None = None,
    max_depth: int | None = None,
) -> Any:
    r"""A copy of ``value`` that ``json.dumps`` and PostgreSQL JSONB both accept.

    Why: vendor libraries return numpy scalars and arrays, bytes, datetimes and
    non-finite floats; strings may carry NUL characters (JSONB refuses ``\u0000``)
    and JSON has no NaN. The caps keep an excerpt small; ``None`` means no cap,
    which is what the service wants for metadata that readers already capped.

    Parameters
    ----------
    value
        Anything: mappings, sequences, scalars, numpy values, other objects.
    max_string
        Longest string kept; a longer one is cut and ends with ``TRUNCATION_MARK``.
    max_items
        Most items kept of a mapping or sequence; a larger numpy array becomes
        a short description (``"<array shape=[...] dtype=...>"``).
    max_depth
        Deepest container nesting kept; anything deeper becomes ``None``.

    Examples
    --------
    >>> json_safe({"a\x00": [np.float32(1.5), float("nan"), b"hi"]})
    {'a': [1.5, None, 'hi']}
    >>> json_safe("abcdef", max_string=3)
    'abc…[truncated]'
    """
    return _clean(value, max_string, max_items, max_depth, 0)


def _clean(
    value: Any, max_string: int | None, max_items: int | None, max_depth: int | None, depth: int
) -> Any:
    if max_depth is not None and depth > max_depth:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        text = value.replace("\x00", "")
        if max_string is not None and len(text) > max_string:
            return text[:max_string] + TRUNCATION_MARK
        return text
    if isinstance(value, np.ndarray):
        if max_items is not None and value.size > max_items:
            return f"<array shape={list(value.shape)} dtype={value.dtype}>"
        return _clean(value.tolist(), max_string, max_items, max_depth, depth + 1)
    if isinstance(value, dict):
        items = list(value.items())[:max_items]
        return {
            str(k).replace("\x00", ""): _clean(v, max_string, max_items, max_depth, depth + 1)
            for k, v in items
        }
    if isinstance(value, list | tuple):
        return [_clean(v, max_string, max_items, max_depth, depth + 1) for v in value[:max_items]]
    if hasattr(value, "isoformat"):
        return _clean(str(value.isoformat()), max_string, max_items, max_depth, depth)
    return _clean(str(value), max_string, max_items, max_depth, depth)


def capped_vendor(
    value: Mapping[str, Any],
    *,
    max_bytes: int = VENDOR_MAX_BYTES,
    drop_first: Iterable[str] = (),
    max_string: int | None = 4000,
    max_items: int | None = 200,
    max_depth: int | None = 6,
) -> dict[str, Any]:
    """``json_safe(value)`` with an overall size cap, for a reader's ``vendor_metadata``.

    Why: per-value caps bound each string and list but not their sum; a block
    whose JSON is longer than ``max_bytes`` loses the keys in ``drop_first``
    (the bulky, least useful ones, in that order, until it fits) and is marked
    ``"truncated": True`` so a client knows it is an excerpt.

    Examples
    --------
    >>> capped_vendor({"big": "x" * 100, "keep": 1}, max_bytes=50, drop_first=["big"])
    {'keep': 1, 'truncated': True}
    """
    cleaned: dict[str, Any] = json_safe(
        dict(value), max_string=max_string, max_items=max_items, max_depth=max_depth
    )
    if len(json.dumps(cleaned)) <= max_bytes:
        return cleaned
    for key in drop_first:
        cleaned.pop(key, None)
        if len(json.dumps(cleaned)) <= max_bytes:
            break
    # Still over: the bulkiest remaining keys go, largest first, until it fits.
    # Why: the cap is a promise to the API and the database, whatever the reader listed.
    sizes = sorted(((len(json.dumps(v)), k) for k, v in cleaned.items()), reverse=True)
    for _, key in sizes:
        if len(json.dumps(cleaned)) + len(', "truncated": true') <= max_bytes:
            break
        cleaned.pop(key)
    cleaned["truncated"] = True
    return cleaned
