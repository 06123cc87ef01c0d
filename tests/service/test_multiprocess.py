"""Two server processes on one PostgreSQL database and one data dir work as one service."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.batch.conftest import child_env, stop, zstack_command
from tests.service.conftest import create_pg_database, drop_pg_database, write_ome_tiff

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(data_dir: Path, database_url: str, log: Path) -> Iterator[str]:
    """``zstack serve`` as its own process; yields its base URL."""
    port = _free_port()
    env = child_env(
        ZSTACK_PORT=str(port),
        ZSTACK_DATA_DIR=str(data_dir),
        ZSTACK_DATABASE_URL=database_url,
        ZSTACK_LOG_LEVEL="warning",
        # Another process may be uploading into the shared tmp/ while this one starts.
        ZSTACK_STORAGE__SWEEP_GRACE_SECONDS="3600",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*zstack_command(), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield base
    finally:
        stop(process)


def test_two_processes_one_service(tmp_path: Path, postgres_admin: str) -> None:
    url = create_pg_database(postgres_admin)
    source = write_ome_tiff(tmp_path / "cells.ome.tif")
    data = tmp_path / "data"
    try:
        with (
            server(data, url, tmp_path / "a.log") as a,
            server(data, url, tmp_path / "b.log") as b,
            httpx.Client(timeout=60) as http,
        ):
            with source.open("rb") as fh:
                first = http.post(f"{a}/api/images/upload", files={"file": ("c.ome.tif", fh)})
            assert first.status_code == 201
            one = first.json()["id"]
            # Visible, rendered and downloadable through the other process.
            assert (
                http.get(f"{b}/api/images/{one}").json()["sha256"]
                == first.json()["image_stack"]["sha256"]
            )
            thumb_b = http.get(f"{b}/api/images/{one}/thumbnail")
            assert thumb_b.status_code == 200
            assert thumb_b.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert http.get(f"{b}/api/images/{one}/download").content == source.read_bytes()
            # One shared render cache: both answer the same picture under the same ETag.
            thumb_a = http.get(f"{a}/api/images/{one}/thumbnail")
            assert (thumb_a.headers["etag"], thumb_a.content) == (
                thumb_b.headers["etag"],
                thumb_b.content,
            )

            # A second record with the same bytes keeps the cached picture alive after
            # the first is deleted; A has the first memoised from the request above.
            with source.open("rb") as fh:
                two = http.post(f"{a}/api/images/upload", files={"file": ("d.ome.tif", fh)})
            assert two.status_code == 201
            assert http.delete(f"{b}/api/images/{one}").status_code == 204
            # Seen by A at once: no memo serves the deleted record, not even from the cache.
            stale = http.get(f"{a}/api/images/{one}/thumbnail")
            assert stale.status_code == 404, "A's memo served a record B had deleted"
            assert http.get(f"{a}/api/images/{one}").status_code == 404
            assert http.get(f"{a}/api/images/").json()["count"] == 1
            assert http.get(f"{a}/api/images/{two.json()['id']}/thumbnail").status_code == 200
    finally:
        drop_pg_database(postgres_admin, url)
