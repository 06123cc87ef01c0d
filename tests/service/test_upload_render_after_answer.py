"""The upload's background render starts after the 201 is sent, not while it is sent.

Why it matters: the render of a large stack reads planes through prefetching
threads; started before the answer went out, its buffers counted towards the
request's memory peak (``upload-rss/c`` measured the render, 280 MiB, not the
streamed upload) and its threads competed with the answer. The app is called
as an ASGI application with our own ``send``, so the moment the last body
message leaves is observed directly.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import tifffile

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient


def _stack(path: Path) -> Path:
    rng = np.random.default_rng(5)
    tifffile.imwrite(path, rng.integers(0, 4000, (12, 512, 512), dtype=np.uint16), imagej=True)
    return path


def test_the_render_is_scheduled_only_after_the_answer_is_sent(
    client: TestClient, tmp_path: Path
) -> None:
    app: Any = client.app
    pool = app.state.pool
    request = httpx.Request(
        "POST",
        "http://testserver/api/images/upload",
        files={"file": ("stack.tif", _stack(tmp_path / "stack.tif").read_bytes())},
    )
    body = request.read()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/images/upload",
        "raw_path": b"/api/images/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    seen: dict[str, Any] = {}
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        # After the body: wait, as a connected client does, until the app is done.
        import anyio

        await anyio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
        if message["type"] == "http.response.body" and not message.get("more_body"):
            seen["jobs_when_answered"] = dict(pool._jobs)
            seen["body"] = message["body"]

    async def call() -> None:
        await app(scope, receive, send)
        seen["jobs_after"] = dict(pool._jobs)

    client.portal.call(call)  # type: ignore[union-attr]
    assert seen["status"] == 201, seen.get("body")
    assert seen["jobs_when_answered"] == {}, "the render was scheduled before the answer left"
    image_id = httpx.Response(201, content=seen["body"]).json()["id"]
    # ... and it does run after the answer: the thumbnail becomes ready.
    deadline = time.monotonic() + 60
    while not client.get(f"/api/images/{image_id}").json()["thumbnail_ready"]:
        assert time.monotonic() < deadline, "the upload's render never ran"
        time.sleep(0.05)
    quality = client.get(f"/api/images/{image_id}/quality")
    assert quality.status_code == 200, quality.text
