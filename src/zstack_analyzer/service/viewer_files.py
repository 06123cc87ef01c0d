"""The viewer's static files, sent with a Content-Security-Policy.

Why a policy: the viewer shows names and metadata read from users' files; it
sets them as text, never as HTML, and the policy is the second wall should a
mistake slip in: scripts only from this origin (no inline script, no eval),
pictures from this origin or the ``blob:`` URLs the viewer makes of fetched
images, no plug-ins, no framing by other sites.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi.staticfiles import StaticFiles

if TYPE_CHECKING:
    import os

    from starlette.responses import Response
    from starlette.types import Scope

__all__ = ["CONTENT_SECURITY_POLICY", "ViewerFiles"]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ViewerFiles(StaticFiles):
    """``StaticFiles`` whose every answer carries the viewer's security headers."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The file, with :data:`CONTENT_SECURITY_POLICY` and friends."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_HEADERS)
        return response
