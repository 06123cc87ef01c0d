"""How the service is put on a socket: the uvicorn options every entry point shares.

Why one function: ``zstack serve`` and the live-server test helper must run the
same HTTP limits, or the tests would prove a configuration nobody deploys.
The h11 parser is chosen because its request-head buffer has a documented cap
(``h11_max_incomplete_event_size``); httptools accumulates a header of any
length in memory before uvicorn sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from zstack_analyzer.service.config import Settings

__all__ = ["uvicorn_config", "uvicorn_options"]


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``/``uvicorn.run`` that enforce ``settings.http``.

    Examples
    --------
    >>> from zstack_analyzer.service.config import Settings
    >>> uvicorn_options(Settings(_env_file=None))["http"]
    'h11'
    """
    return {
        "http": "h11",
        "h11_max_incomplete_event_size": settings.http.max_header_bytes,
        "limit_concurrency": settings.http.limit_concurrency,
        "timeout_keep_alive": settings.http.keep_alive_seconds,
        "ws": "none",
    }


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app`` with the limits of ``settings`` (plus ``overrides``)."""
    import uvicorn

    return uvicorn.Config(app, **{**uvicorn_options(settings), **overrides})
