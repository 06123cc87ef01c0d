"""HTTP routers: thin (parse, call the library off the loop, respond)."""

from typing import Any

from zstack_analyzer.service.errors import PROBLEM_MEDIA_TYPE
from zstack_analyzer.service.schemas import Problem

__all__ = ["IMAGE_MEDIA_TYPES", "problems"]

_DESCRIPTIONS = {
    400: "Unsupported format or malformed upload",
    401: "Missing or invalid bearer token (only when the server sets ZSTACK_API_TOKEN)",
    403: "Path outside ZSTACK_IMPORT_ROOTS (or in-place import off)",
    404: "No image with this id",
    409: "The in-place original changed since it was registered (ingest it again)",
    410: "The in-place original is gone",
    413: "Upload over the size limit",
    416: "Range not satisfiable",
    422: "Corrupt file, limit exceeded, index out of range or invalid parameter",
    500: "Missing optional reader package (body names the pip install) or a server bug",
    503: "Database unreachable",
}

#: Media types a render route may answer with (the ``format`` parameter).
IMAGE_MEDIA_TYPES: dict[str, dict[str, Any]] = {
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/webp": {"schema": {"type": "string", "format": "binary"}},
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem+json errors."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
