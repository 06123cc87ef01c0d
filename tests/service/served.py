"""``zstack serve`` as a real child process, and raw-socket clients for abusive requests.

Why a child process: the HTTP limits live in how ``zstack serve`` starts uvicorn,
a kill -9 must hit a whole server, and the server's peak memory (``VmHWM``)
must be its own, not the test runner's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ServedProcess", "raw_request", "read_response", "served"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServedProcess:
    """One ``zstack serve`` child with its own data dir (SQLite unless the env says)."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}-serve.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.port = _free_port()
        env = {**os.environ, "ZSTACK_LOG_LEVEL": "warning", **self.env}
        command = [sys.executable, "-m", "zstack_analyzer.cli", "serve"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        token = self.env.get("ZSTACK_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        while True:
            if self.proc.poll() is not None:
                msg = f"zstack serve exited: {self.log.read_text()[-2000:]}"
                raise RuntimeError(msg)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/api/health", headers=headers, timeout=2).is_success:
                    return
            if time.monotonic() > deadline:
                self.stop()
                msg = "zstack serve did not answer /api/health in time"
                raise RuntimeError(msg)
            time.sleep(0.1)

    def peak_rss_bytes(self) -> int:
        """The child's peak resident memory (``VmHWM``), in bytes."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        msg = "no VmHWM in /proc status"
        raise RuntimeError(msg)

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        msg = "no VmRSS in /proc status"
        raise RuntimeError(msg)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


@contextlib.contextmanager
def served(data_dir: Path, **env: str) -> Iterator[ServedProcess]:
    """Run ``zstack serve`` on a free port; ``env`` adds ``ZSTACK_*`` variables."""
    server = ServedProcess(data_dir, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def raw_request(
    port: int, head: bytes, *, source: str = "127.0.0.1", timeout: float = 30.0
) -> socket.socket:
    """A connected socket (from ``source``, any 127/8 address) that has sent ``head``."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )
    sock.sendall(head)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and whatever body arrived before the close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return 0, {}, data
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body
