"""A live uvicorn server on a free port, for tests that need real sockets.

Reusable by the web (Playwright) and bench helpers::

    from tests.service.live import live_server

    with live_server(tmp_path) as base_url:      # "http://127.0.0.1:<port>"
        httpx.get(f"{base_url}/api/health")

It runs ``create_app(Settings(...))`` in a background thread with its own data
directory (SQLite by default; pass ``database_url=...`` for PostgreSQL, or any
other ``Settings`` field as a keyword, e.g. ``api_token="s3cret"``). The socket
is bound before the server starts, so there is no free-port race.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from zstack_analyzer.service.app import create_app
from zstack_analyzer.service.config import Settings
from zstack_analyzer.service.server import uvicorn_config

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["LiveServer", "live_server", "make_settings"]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test app: isolated data dir, no token, unless overridden."""
    values: dict[str, Any] = {"data_dir": data_dir, "api_token": None, "database_url": None}
    values.update(overrides)
    return Settings(**values)


class LiveServer:
    """A uvicorn server running in a thread; ``base_url`` is where it listens."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        # The same HTTP limits as `zstack serve` (h11 with a capped request head).
        config = uvicorn_config(
            self.app, settings, log_level="warning", lifespan="on", access_log=False
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until the lifespan has run and the socket accepts."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                self._socket.close()
                msg = "uvicorn exited during start-up (see the log above)"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                self.stop()
                msg = f"uvicorn did not start within {timeout} s"
                raise RuntimeError(msg)
            time.sleep(0.02)

    def stop(self, timeout: float = 60.0) -> None:
        """Ask uvicorn to exit and wait for it (the lifespan shuts down cleanly)."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._socket.close()


@contextlib.contextmanager
def live_server(data_dir: Path, /, **overrides: Any) -> Iterator[str]:
    """Run the service on a free port with data under ``data_dir``; yield its base URL."""
    server = LiveServer(make_settings(Path(data_dir), **overrides))
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
