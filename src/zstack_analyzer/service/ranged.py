"""Streamed downloads of stored originals that are not local files (object storage).

Why not ``FileResponse``: an object lives in a bucket; its bytes are streamed
from a ranged GET straight to the client, never staged on local disk.
A single ``bytes=`` range is honoured (206); anything else gets the whole
object (200), as RFC 9110 allows.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.responses import StreamingResponse

if TYPE_CHECKING:
    from zstack_analyzer.storage.base import ObjectStorage

__all__ = ["parse_single_range", "stream_stored"]

_SINGLE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` of one satisfiable ``bytes=`` range, else ``None`` (whole body).

    Examples
    --------
    >>> parse_single_range("bytes=10-19", 100)
    (10, 20)
    >>> parse_single_range("bytes=-5", 100)
    (95, 100)
    >>> parse_single_range("bytes=0-1,5-6", 100) is None
    True
    """
    match = _SINGLE.match(header or "")
    if match is None or size == 0:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    elif last:
        start, end = max(0, size - int(last)), size
    else:
        return None
    if start >= size or end <= start:
        return None
    return start, end


def stream_stored(
    storage: ObjectStorage,
    stored_name: str,
    size: int,
    range_header: str | None,
    media_type: str,
    headers: dict[str, str],
) -> StreamingResponse:
    """The original's bytes (or one range of them) streamed from storage."""
    span = parse_single_range(range_header, size)
    start, end = span if span is not None else (0, size)
    out = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)}
    if span is not None:
        out["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(
        storage.iter_range(stored_name, start, end),
        status_code=206 if span is not None else 200,
        media_type=media_type,
        headers=out,
    )
