"""HTTP routers: thin (parse, call the library off the loop, respond)."""

from typing import Any

from zstack_analyzer.service.errors import PROBLEM_MEDIA_TYPE
from zstack_analyzer.service.schemas import Problem

__all__ = ["IMAGE_MEDIA_TYPES", "INDEX_MAX", "problems"]

#: Bound of every integer parameter (skip, scene, t, z, index): a 32-bit signed int.
#: Why: larger values overflowed SQLite (OverflowError) and PostgreSQL bigint (500s);
#: no file has more planes, scenes or images than this.
INDEX_MAX = 2**31 - 1

_DESCRIPTIONS = {
    400: "Unsupported format or malformed upload",
    401: "Missing or invalid credentials (ZSTACK_AUTH=token or users)",
    403: "Forbidden: outside your import roots, not a member of that group, a read-only "
    "token, no X-CSRF-Token with a session cookie, or an image you may see but not change",
    404: "No image with this id",
    409: "The in-place original changed since it was registered (ingest it again)",
    410: "The in-place original is gone",
    405: "Method not allowed (the Allow header lists the methods of this path)",
    408: "The upload body stalled past the idle timeout",
    413: "Upload over the size limit",
    416: "Range not satisfiable",
    422: "Corrupt file, limit exceeded, index out of range or invalid parameter",
    429: "Too many uploads in flight from this client (see Retry-After)",
    500: "Missing optional reader package (body names the pip install) or a server bug",
    503: "Too many uploads in flight, the decode budget full, the bucket or database "
    "unreachable (see Retry-After)",
}

#: Media types a render route may answer with (the ``format`` parameter).
IMAGE_MEDIA_TYPES: dict[str, dict[str, Any]] = {
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/webp": {"schema": {"type": "string", "format": "binary"}},
}


def problems(*statuses: int, missing: str | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem+json errors.

    ``missing``: what a 404 of this route did not find ("dataset", "project or dataset");
    without it, the image routes' "No image with this id".
    """
    described = dict(_DESCRIPTIONS)
    if missing is not None:
        described[404] = f"No {missing} with this id"
    return {
        status: {
            "model": Problem,
            "description": described.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
