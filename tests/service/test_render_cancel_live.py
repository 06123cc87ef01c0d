"""Issue #21: runaway renders stop when their client leaves, and SIGTERM stops the server.

The runaway: a deep-zoom tile of a 30720 x 30720 TIFF in 240 MiB zlib strips,
with the per-request decode limit lifted, so computing the tile's windows
from the coarsest level would inflate strips for minutes. Before: the render
ran on after the client left, and ``zstack serve`` ignored SIGTERM until it
finished (uvicorn waited for the request, the lifespan for the thread).
"""

from __future__ import annotations

import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.bombs import huge_strip_tiff
from tests.service.served import raw_request, served

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "cancel-s3cret"  # noqa: S105  (a test server's token)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUNAWAY = {
    "ZSTACK_API_TOKEN": TOKEN,
    "ZSTACK_LIMITS__MAX_REQUEST_DECODE_BYTES": str(1 << 50),
    "ZSTACK_RENDER__THUMBNAIL_ON_UPLOAD": "false",
}


@pytest.fixture(scope="module")
def strips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return huge_strip_tiff(tmp_path_factory.mktemp("runaway") / "strips.tif")


def _health(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/api/health", headers=AUTH, timeout=30).json()  # type: ignore[no-any-return]


def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def _upload(base: str, strips: Path) -> str:
    with strips.open("rb") as fh:
        response = httpx.post(
            f"{base}/api/images/upload",
            files={"file": (strips.name, fh)},
            headers=AUTH,
            timeout=120,
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _start_runaway(base: str, port: int, image_id: str, route: str) -> Any:
    head = (
        f"GET /api/images/{image_id}/{route} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()
    sock = raw_request(port, head)
    _wait(lambda: _health(base)["decode"]["active_requests"] == 1, "the render starts")
    return sock


def test_abandoned_renders_stop_and_sigterm_stops_the_server(tmp_path: Path, strips: Path) -> None:
    with served(tmp_path / "data", **RUNAWAY) as server:
        image_id = _upload(server.base_url, strips)
        sock = _start_runaway(server.base_url, server.port, image_id, "tile/0/0/0")
        time.sleep(1.0)
        assert _health(server.base_url)["decode"]["active_requests"] == 1  # still working
        sock.close()  # the client goes away
        # The render would run for minutes; it stops at its next decode instead.
        _wait(
            lambda: _health(server.base_url)["decode"]["active_requests"] == 0,
            "the abandoned render stops",
        )
        assert _health(server.base_url)["decode"]["in_use_bytes"] == 0

        sock = _start_runaway(server.base_url, server.port, image_id, "tile/0/1/1")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail("zstack serve still running 60 s after SIGTERM, during a render")
        finally:
            sock.close()
        assert code in (0, -signal.SIGTERM)
