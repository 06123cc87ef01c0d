"""A real uvicorn server: parallel uploads and thumbnails lose nothing; shared renders."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.service.conftest import write_ome_tiff
from tests.service.live import live_server

if TYPE_CHECKING:
    from pathlib import Path

N = 20


def test_parallel_uploads_and_thumbnails(tmp_path: Path, database_url: str | None) -> None:
    files = [
        write_ome_tiff(tmp_path / f"stack{i:02d}.ome.tif", (2, 4, 24, 32), seed=i) for i in range(N)
    ]
    data_dir = tmp_path / "data"
    with (
        # N uploads at once from one address: above the default per-client cap (8).
        live_server(
            data_dir, database_url=database_url, uploads={"max_concurrent_per_client": N}
        ) as base,
        httpx.Client(base_url=base, timeout=120) as client,
    ):

        def send(path: Path) -> httpx.Response:
            with path.open("rb") as fh:
                return client.post("/api/images/upload", files={"file": (path.name, fh)})

        with ThreadPoolExecutor(max_workers=N) as pool:
            responses = list(pool.map(send, files))
        assert [r.status_code for r in responses] == [201] * N, [r.text for r in responses]
        records = {r.json()["image_stack"]["filename"]: r.json()["image_stack"] for r in responses}
        assert set(records) == {f.name for f in files}
        for path in files:
            assert records[path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

        listing = client.get("/api/images/", params={"limit": 1000}).json()
        assert listing["count"] == N

        ids = [records[f.name]["id"] for f in files]
        # Twice per image at once: both callers of one image share one render.
        with ThreadPoolExecutor(max_workers=N) as pool:
            thumbs = list(pool.map(lambda i: client.get(f"/api/images/{i}/thumbnail"), ids * 2))
        assert all(t.status_code == 200 for t in thumbs)
        assert all(t.headers["content-type"] == "image/png" for t in thumbs)
        by_id = {}
        for image_id, thumb in zip(ids * 2, thumbs, strict=True):
            by_id.setdefault(image_id, set()).add(thumb.content)
        assert all(len(contents) == 1 for contents in by_id.values())

        for path in files:
            download = client.get(f"/api/images/{records[path.name]['id']}/download")
            assert download.content == path.read_bytes()
        stored = sorted(p.name for p in (data_dir / "images").iterdir())
        assert len(stored) == N
        assert list((data_dir / "tmp").iterdir()) == []

        with ThreadPoolExecutor(max_workers=N) as pool:
            deleted = list(pool.map(lambda i: client.delete(f"/api/images/{i}"), ids))
        assert [d.status_code for d in deleted] == [204] * N
        assert client.get("/api/images/").json()["count"] == 0
    assert list((data_dir / "images").iterdir()) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_streamed_upload_of_a_larger_file(tmp_path: Path, database_url: str | None) -> None:
    """Several MiB through a real socket, chunked; the hash is computed on the way."""
    big = write_ome_tiff(tmp_path / "big.ome.tif", (1, 40, 256, 256))
    assert big.stat().st_size > 4 * 1024 * 1024
    with live_server(tmp_path / "data") as base, httpx.Client(base_url=base, timeout=120) as client:

        def body():
            with big.open("rb") as fh:
                while chunk := fh.read(300_000):
                    yield chunk

        boundary = "zstackboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.ome.tif"\r\nContent-Type: image/tiff\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def stream():
            yield head
            yield from body()
            yield tail

        response = client.post(
            "/api/images/upload",
            content=stream(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 201, response.text
        stack = response.json()["image_stack"]
        assert stack["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
        assert stack["size_bytes"] == big.stat().st_size
        assert stack["depth"] == 40


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_background_thumbnail_becomes_ready(tmp_path: Path, database_url: str | None) -> None:
    source = write_ome_tiff(tmp_path / "a.ome.tif")
    with live_server(tmp_path / "data") as base, httpx.Client(base_url=base, timeout=60) as client:
        with source.open("rb") as fh:
            image_id = client.post("/api/images/upload", files={"file": ("a.ome.tif", fh)}).json()[
                "id"
            ]
        # The thumbnail endpoint waits for (or reuses) the background render.
        first = client.get(f"/api/images/{image_id}/thumbnail")
        assert first.status_code == 200
        import time

        deadline = time.monotonic() + 30
        while not client.get(f"/api/images/{image_id}").json()["thumbnail_ready"]:
            assert time.monotonic() < deadline, "thumbnail_ready never became true"
            time.sleep(0.05)
        second = client.get(f"/api/images/{image_id}/thumbnail")
        assert second.content == first.content
        assert second.headers["etag"] == first.headers["etag"]
