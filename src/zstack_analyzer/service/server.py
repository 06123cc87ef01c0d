"""How the service is put on a socket: the uvicorn options every entry point shares.

Why one function: ``zstack serve`` and the live-server test helper must run the
same HTTP limits, or the tests would prove a configuration nobody deploys.

Why a parser subclass: uvicorn's default parser (httptools) accumulates a
request head of any length in memory before uvicorn sees a header, and only
then does the app run (and refuse with 401); four 100 MiB headers took the
server to 600 MiB. :class:`BoundedHttpToolsProtocol` counts the bytes of each
request head and answers 431 (then closes) once they pass the cap, so a head
costs at most the cap plus one socket read. The body is still parsed by
httptools, which is about 1.6 times faster for large uploads than h11 (whose
own cap, ``h11_max_incomplete_event_size``, is used where httptools is absent).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from zstack_analyzer.service.config import Settings

__all__ = ["bounded_httptools_protocol", "uvicorn_config", "uvicorn_options"]


def _refusal(max_head_bytes: int) -> bytes:
    body = json.dumps(
        {
            "type": "https://zstack-analyzer.invalid/problems/headers-too-large",
            "title": "Request Header Fields Too Large",
            "status": 431,
            "detail": f"the request line and headers are over {max_head_bytes:,} bytes",
            "code": "headers_too_large",
        }
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/problem+json\r\n"
        "connection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def bounded_httptools_protocol(max_head_bytes: int) -> type[Any]:
    """The httptools protocol of uvicorn with a cap on the bytes of each request head.

    Returns a subclass (the cap as a class attribute, since uvicorn builds one
    protocol object per connection from the class it is given).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    refusal = _refusal(max_head_bytes)

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """Counts the bytes received while a request head is incomplete; 431 past the cap."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._parsed = 0
            self._refused = False

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._parsed += 1
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True  # the next bytes on this connection are the next head
            self._parsed += 1  # (this read ended a body: it is not head bytes either)
            self._head_bytes = 0

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            heads_before = self._parsed
            super().data_received(data)
            if self._parsed != heads_before:
                # A read that completed a head or a message (it may also hold body bytes
                # and the start of the next head) is not counted: it is one socket read.
                self._head_bytes = 0
            elif self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > max_head_bytes:
                    self._refused = True
                    self.transport.write(refusal)
                    self.transport.close()

    return BoundedHttpToolsProtocol


#: Loggers whose INFO lines are routine start-up detail: shown only at debug level.
QUIET_AT_INFO = ("alembic",)


def configure_logging(level: str) -> None:
    """Log at ``level``; Alembic's per-migration INFO lines only when that level is debug.

    Why: every start-up migrates the database, and Alembic says so in seven INFO
    lines ("Context impl SQLiteImpl", "Will assume non-transactional DDL", one per
    revision) that bury the one line a user needs (where the server and its data are).
    """
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet = logging.getLogger().getEffectiveLevel() > logging.DEBUG
    for name in QUIET_AT_INFO:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``/``uvicorn.run`` that enforce ``settings.http``.

    Examples
    --------
    >>> from zstack_analyzer.service.config import Settings
    >>> uvicorn_options(Settings(_env_file=None))["limit_concurrency"]
    1000
    """
    import importlib.util

    http: Any = "h11"
    if importlib.util.find_spec("httptools") is not None:
        http = bounded_httptools_protocol(settings.http.max_header_bytes)
    return {
        "http": http,
        "h11_max_incomplete_event_size": settings.http.max_header_bytes,
        "limit_concurrency": settings.http.limit_concurrency,
        "timeout_keep_alive": settings.http.keep_alive_seconds,
        "timeout_graceful_shutdown": settings.http.shutdown_grace_seconds,
        "ws": "none",
    }


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app`` with the limits of ``settings`` (plus ``overrides``)."""
    import uvicorn

    return uvicorn.Config(app, **{**uvicorn_options(settings), **overrides})
