"""Issue 15 item 1: the server's peak RSS while it renders a decompression bomb over HTTP.

The bomb: a ~1.3 MB zlib-tiled TIFF declaring one 30720 x 30720 uint8 plane
(900 MiB decoded). The script starts ``zstack serve`` (our child, loopback
only) on a fresh data folder, uploads the bomb (whose upload pre-renders the
256 px gallery thumbnail), waits for that, resets the server's peak-RSS mark
(``/proc/<pid>/clear_refs``), then asks for a 65 px thumbnail and, at the same
time, a 512 px MIP and an orthogonal view (overlapping renders), and prints the
server's peak RSS (``VmHWM``) with the server's idle RSS as the baseline.

Usage::

    .venv/bin/python bench/bomb_service.py            # prints one JSON line
    PYTHONPATH=/old/checkout/src .venv/bin/python bench/bomb_service.py   # another version

Target (issue #15): server peak RSS < 512 MiB.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N, TILE = 30720, 256
TARGET_MIB = 512


def write_bomb(path: Path) -> None:
    """The 30720 x 30720 zlib-tiled uint8 TIFF, written tile by tile."""
    import numpy as np
    import tifffile

    def tiles():  # type: ignore[no-untyped-def]
        for ty in range(N // TILE):
            for tx in range(N // TILE):
                yield np.full((TILE, TILE), (ty * 7 + tx * 3) % 251, np.uint8)

    tifffile.imwrite(
        path,
        tiles(),
        shape=(N, N),
        dtype=np.uint8,
        tile=(TILE, TILE),
        compression="zlib",
        compressionargs={"level": 1},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024


def main() -> None:
    """Run the measurement and print one JSON line."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="zstack-bomb-") as scratch:
        root = Path(scratch)
        bomb = root / "bomb.tif"
        write_bomb(bomb)
        port = _free_port()
        env = {**os.environ, "ZSTACK_DATA_DIR": str(root / "data"), "ZSTACK_LOG_LEVEL": "warning"}
        env.pop("ZSTACK_API_TOKEN", None)
        env.pop("ZSTACK_DATABASE_URL", None)
        cmd = [sys.executable, "-m", "zstack_analyzer.cli", "serve", "--host", "127.0.0.1"]
        server = subprocess.Popen(
            [*cmd, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=600) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/api/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("server did not start")
                    time.sleep(0.2)
                with bomb.open("rb") as fh:
                    response = client.post(
                        "/api/images/upload", files={"file": ("bomb.tif", fh, "image/tiff")}
                    )
                response.raise_for_status()
                image = response.json()["id"]
                started = time.perf_counter()
                first = client.get(f"/api/images/{image}/thumbnail")  # waits for the pre-render
                upload_render_s = time.perf_counter() - started
                upload_peak = _status_mib(server.pid, "VmHWM")
                idle = _status_mib(server.pid, "VmRSS")
                Path(f"/proc/{server.pid}/clear_refs").write_text("5")
                started = time.perf_counter()
                urls = [
                    f"/api/images/{image}/thumbnail?width=65&height=65",
                    f"/api/images/{image}/mip?width=512&height=512",
                    f"/api/images/{image}/orthogonal?width=768&height=256",
                ]
                with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
                    answers = list(pool.map(client.get, urls))
                seconds = time.perf_counter() - started
                peak = _status_mib(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(30)
        print(
            json.dumps(
                {
                    "file_mb": round(bomb.stat().st_size / 1e6, 2),
                    "statuses": [first.status_code, *(a.status_code for a in answers)],
                    "sizes": [len(first.content), *(len(a.content) for a in answers)],
                    "upload_with_prerender_peak_mib": round(upload_peak, 1),
                    "first_thumbnail_wait_s": round(upload_render_s, 2),
                    "server_idle_rss_mib": round(idle, 1),
                    "server_peak_rss_mib": round(peak, 1),
                    "three_overlapping_renders_s": round(seconds, 2),
                    "target_mib": TARGET_MIB,
                    "passed": peak < TARGET_MIB and all(a.status_code == 200 for a in answers),
                }
            )
        )


if __name__ == "__main__":
    main()
