"""The service with its originals in a real S3 server: upload, read, render, download, delete."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from tests.service.conftest import upload, write_ome_tiff
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from tests.s3server import S3Server
    from zstack_analyzer.service.config import Settings
    from zstack_analyzer.storage.s3 import S3Storage


def s3_settings(server: S3Server, data_dir: Path, **overrides: Any) -> Settings:
    bucket = server.create_bucket()
    values: dict[str, Any] = {
        "storage_url": f"s3://{bucket}/lab",
        "aws_endpoint_url": server.endpoint,
        "aws_access_key_id": "zstack-test",
        "aws_secret_access_key": "zstack-test-secret",
        "aws_region": "us-east-1",
        "aws_allow_http": True,
    }
    values.update(overrides)
    return make_settings(data_dir, **values)


@pytest.fixture
def s3_client(
    s3_server: S3Server, tmp_path: Path, make_client: Callable[..., TestClient]
) -> Iterator[TestClient]:
    import httpx

    settings = s3_settings(s3_server, tmp_path / "data")
    yield make_client(settings)
    # Give the bucket back (SeaweedFS has volumes for ~140 buckets; a mutation run shares one).
    bucket = str(settings.storage_url).removeprefix("s3://").split("/", 1)[0]
    httpx.delete(f"{s3_server.endpoint}/{bucket}", timeout=30)


def bucket_of(client: TestClient) -> S3Storage:
    return client.app.state.storage  # type: ignore[attr-defined,no-any-return]


def test_settings_from_the_standard_environment(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zstack_analyzer.service.config import Settings
    from zstack_analyzer.service.storage import make_storage
    from zstack_analyzer.storage.s3 import S3Storage

    for name, value in s3_server.env("my-bucket", "zstack/originals").items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    storage = make_storage(settings)
    assert isinstance(storage, S3Storage)
    assert (storage.location.bucket, storage.location.prefix) == ("my-bucket", "zstack/originals")
    assert storage.options.endpoint_url == s3_server.endpoint
    assert storage.options.allow_http is True
    monkeypatch.setenv("ZSTACK_STORAGE_URL", "ftp://nope")
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        Settings()


def test_upload_read_render_download_delete_on_s3(s3_client: TestClient, tmp_path: Path) -> None:
    client = s3_client
    storage = bucket_of(client)
    path = write_ome_tiff(tmp_path / "cells.ome.tif", shape=(2, 6, 40, 56))
    raw = path.read_bytes()
    response = upload(client, path)
    assert response.status_code == 201, response.text
    body = response.json()
    image_id = body["id"]
    assert body["image_stack"]["sha256"] == hashlib.sha256(raw).hexdigest()
    (name, _), *rest = storage.stored_objects()
    assert rest == []
    assert b"".join(storage.iter_range(name, 0, len(raw))) == raw  # the bytes are in the bucket
    assert not list((tmp_path / "data" / "images").glob("*"))  # nothing in the local folder

    thumb = client.get(f"/api/images/{image_id}/thumbnail", params={"width": 64, "height": 64})
    assert thumb.status_code == 200
    # with the local copy gone an OME-TIFF is read in place by ranged GETs: no copy
    # is fetched back (formats needing a file are: test_s3_ranged.py, the CZI test)
    for copy in storage.cache_dir.iterdir():
        copy.unlink()
    plane = client.get(f"/api/images/{image_id}/slice/3", params={"channels": "1"})
    assert plane.status_code == 200
    assert plane.content.startswith(b"\x89PNG")
    assert not (storage.cache_dir / name).exists()

    full = client.get(f"/api/images/{image_id}/download")
    assert full.status_code == 200 and full.content == raw
    part = client.get(f"/api/images/{image_id}/download", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == raw[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(raw)}"
    tail = client.get(f"/api/images/{image_id}/download", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == raw[-10:]
    outside = client.get(
        f"/api/images/{image_id}/download", headers={"Range": f"bytes={len(raw) + 5}-"}
    )
    assert outside.status_code == 416

    assert client.delete(f"/api/images/{image_id}").status_code == 204
    assert storage.stored_objects() == []
    assert not (storage.cache_dir / name).exists()


def test_search_by_channel_and_objective_with_s3(s3_client: TestClient, tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "dapi_stack.ome.tif"
    data = np.zeros((2, 3, 16, 16), dtype=np.uint16)
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={"axes": "CZYX", "Channel": {"Name": ["DAPI", "GFP"]}},
    )
    image_id = upload(s3_client, path).json()["id"]
    found = s3_client.get("/api/images/search", params={"channel": "dapi"}).json()
    assert [item["id"] for item in found["data"]] == [image_id]
    assert s3_client.get("/api/images/search", params={"q": "gfp"}).json()["total"] == 1
    assert s3_client.get("/api/images/search", params={"channel": "mcherry"}).json()["total"] == 0


def test_a_refused_upload_leaves_no_object(s3_client: TestClient, tmp_path: Path) -> None:
    junk = tmp_path / "notes.tif"
    junk.write_bytes(b"not an image at all " * 100_000)  # 2 MB: more than one write
    response = upload(s3_client, junk)
    assert response.status_code in (400, 422)
    assert bucket_of(s3_client).stored_objects() == []


def test_startup_sweep_removes_objects_without_a_row(
    s3_server: S3Server, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    settings = s3_settings(s3_server, tmp_path / "data")
    client = make_client(settings)
    kept = upload(client, write_ome_tiff(tmp_path / "kept.ome.tif")).json()["id"]
    storage = bucket_of(client)
    # what a crash between "object completed" and "row committed" leaves
    orphan = storage.temp_path("0123456789abcdef0123456789abcdef.ome.tif")
    orphan.write_bytes(b"orphan bytes")
    storage.commit(orphan, "0123456789abcdef0123456789abcdef.ome.tif")
    time.sleep(1.1)  # object timestamps have one-second resolution
    client.__exit__(None, None, None)
    restarted = make_client(settings)
    names = [name for name, _ in bucket_of(restarted).stored_objects()]
    assert len(names) == 1
    assert restarted.get(f"/api/images/{kept}/download").status_code == 200


def test_kill_9_during_an_upload_leaves_no_object(s3_server: S3Server, tmp_path: Path) -> None:
    """A server killed mid-upload: its multipart upload never completes, so no object appears."""

    settings = s3_settings(s3_server, tmp_path / "data")
    env = {
        **os.environ,
        "ZSTACK_DATA_DIR": str(tmp_path / "data"),
        "ZSTACK_STORAGE_URL": str(settings.storage_url),
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": "zstack-test",
        "AWS_SECRET_ACCESS_KEY": "zstack-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "ZSTACK_STORAGE__PART_BYTES": str(5 * 1024 * 1024),
    }
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "zstack_analyzer.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base)
        boundary = "zstackboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.tif"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        sent = 0

        def body() -> Any:
            nonlocal sent
            yield head
            chunk = b"\0" * (1024 * 1024)
            for _ in range(64):
                sent += len(chunk)
                if sent > 24 * 1024 * 1024:  # several parts are in the bucket by now
                    server.send_signal(signal.SIGKILL)
                    server.wait(timeout=10)
                yield chunk

        with pytest.raises(httpx.HTTPError):
            httpx.post(
                f"{base}/api/images/upload",
                content=body(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=30,
            )
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
    from zstack_analyzer.service.storage import make_storage

    storage = make_storage(settings)
    assert server.returncode == -signal.SIGKILL
    assert storage.stored_objects() == []  # type: ignore[attr-defined]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(base: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    msg = f"server at {base} did not start"
    raise RuntimeError(msg)
