"""HTTP-level guards that run before routing and auth: header count, methods, HEAD.

Why a pure ASGI middleware: these answers must not depend on a route being
found. The viewer is mounted at "/" and matches every path, so without this a
``POST /api/health`` or a ``HEAD`` on a protected route fell through to the
static files (405 without ``Allow``, or 404 before auth). Here:

- more than ``max_headers`` request headers get 431 (the byte size of the head
  is capped by the HTTP parser, see ``service/server.py``);
- under ``/api``, a method no route of that path accepts gets 405 with an
  ``Allow`` listing every method that path accepts; a path no route knows
  gets 404;
- ``HEAD`` is answered as ``GET`` without the body (RFC 9110 section 9.3.2), so
  it passes auth exactly as ``GET`` does (401 without the token);
- when a token is set, a request under ``/api`` without it gets 401 *before*
  any 404 or 405, so routes and methods cannot be enumerated without it (the
  routes' own ``require_token`` still guards each route).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import re

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HttpGuardMiddleware", "api_route_table"]

API_PREFIX = "/api/"


def api_route_table(routes: list[Any]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """(path regex, methods) of every route under ``/api``, through included routers.

    A mounted sub-application (no ``methods``) gets the method ``"*"``: it answers
    its own methods and unknown paths, so the guard passes its requests through.
    """
    table: list[tuple[re.Pattern[str], frozenset[str]]] = []
    pending = list(routes)
    while pending:
        route = pending.pop(0)
        nested = getattr(route, "original_router", None)
        if nested is not None:
            pending.extend(nested.routes)
            continue
        path = getattr(route, "path", "")
        regex = getattr(route, "path_regex", None)
        methods = getattr(route, "methods", None)
        if regex is None or not path.startswith(API_PREFIX):
            continue
        table.append((regex, frozenset(methods) if methods else frozenset({"*"})))
    return table


class HttpGuardMiddleware:
    """Header-count cap, 405 with ``Allow``, 404 for unknown API paths, HEAD as GET.

    Parameters
    ----------
    app
        The wrapped application (its routes are read lazily, on first use).
    max_headers
        Most request header fields accepted.
    """

    def __init__(self, app: ASGIApp, *, max_headers: int) -> None:
        self.app = app
        self.max_headers = max_headers
        self._table: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def _routes(self, scope: Scope) -> list[tuple[re.Pattern[str], frozenset[str]]]:
        if self._table is None:
            self._table = api_route_table(list(scope["app"].routes))
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 431/404/405 here, or pass on (HEAD as GET without its body)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from zstack_analyzer.service.errors import problem_response

        count = len(scope.get("headers", ()))
        if count > self.max_headers:
            response = problem_response(
                431,
                code="headers_too_large",
                detail=f"{count} request header fields; at most {self.max_headers} are accepted",
            )
            await response(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        if not path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        if not _token_ok(scope):
            response = problem_response(
                401,
                code="unauthorized",
                detail="missing or invalid bearer token (send 'Authorization: Bearer <token>')",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        allowed: set[str] = set()
        for regex, methods in self._routes(scope):
            if regex.match(path):
                allowed |= methods
        if "*" in allowed:  # a mounted sub-application decides for itself
            await self.app(scope, receive, send)
            return
        if not allowed:
            response = problem_response(
                404, code="not_found", detail=f"no API route at {path[:200]!r}"
            )
            await response(scope, receive, send)
            return
        if "GET" in allowed:
            allowed.add("HEAD")
        if method not in allowed:
            response = problem_response(
                405,
                code="method_not_allowed",
                detail=f"{method[:16]} is not allowed here; allowed: {', '.join(sorted(allowed))}",
                headers={"Allow": ", ".join(sorted(allowed))},
            )
            await response(scope, receive, send)
            return
        if method == "HEAD":  # API routes declare GET only; HEAD is GET without the body
            await self.app({**scope, "method": "GET"}, receive, _without_body(send))
            return
        await self.app(scope, receive, send)


#: Open without credentials in users mode (login; ``me`` answers 401 itself).
USERS_OPEN_PREFIX = "/api/auth/"


def _token_ok(scope: Scope) -> bool:
    """Whether the request may reach routing: auth off, the bearer token, or (users mode) credentials.

    Token mode compares the token (constant time). Users mode only asks that
    some credential be present (a bearer token or the session cookie), since
    checking it needs the database; ``authorize`` checks it on every route.
    Either way an anonymous client learns nothing of which routes exist.
    """
    import secrets

    app = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    if settings is not None and settings.auth_mode() == "users":
        return _has_credentials(scope)
    expected = settings.token() if settings is not None else None
    if expected is None:
        return True
    header = _header(scope, b"authorization")
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return secrets.compare_digest(given.strip(), expected.encode())


def _header(scope: Scope, wanted: bytes) -> bytes:
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return bytes(value)
    return b""


def _has_credentials(scope: Scope) -> bool:
    """Users mode: an open path, a bearer token or the viewer's session cookie (unchecked here)."""
    from zstack_analyzer.service.auth.principal import COOKIE_NAME

    if str(scope.get("path", "")).startswith(USERS_OPEN_PREFIX):
        return True
    scheme, _, given = _header(scope, b"authorization").partition(b" ")
    if scheme.lower() == b"bearer" and given.strip():
        return True
    cookies = _header(scope, b"cookie").decode("latin-1")
    return any(
        part.strip().partition("=")[0] == COOKIE_NAME and part.partition("=")[2].strip()
        for part in cookies.split(";")
    )


def _without_body(send: Send) -> Send:
    """A ``send`` that passes the status and headers of a GET but drops its body."""

    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send(message)

    return send_head
