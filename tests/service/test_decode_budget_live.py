"""Issue #21 section 3, against ``zstack serve``: decode bombs on every pixel route, in bounded memory.

Small files that decode to huge ones (:mod:`tests.bombs`) are uploaded to a
real server process; the zarr chunk, deep-zoom tile and thumbnail routes are
asked for their pixels, alone and 16 at a time. Each answer is a 200 with
the right bytes or a refusal (422, or 503 with Retry-After when the server is
busy), never a 500, and the server's peak RSS (its ``VmHWM``) stays under
512 MiB throughout. Before the decode budget, one chunk of the zipped OME-Zarr
took the server to 1.9 GB, a level-0 chunk of the strip TIFF to 1.3 GB, the
lying zip to 2.3 GB.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.bombs import codec_bomb_zarr_zip, huge_chunk_zarr_zip, huge_strip_tiff, lying_zip
from tests.service.served import ServedProcess, served

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MiB = 1024 * 1024
BOUND = 512 * MiB
TOKEN = "budget-s3cret"  # noqa: S105  (a test server's token)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {
        "chunk": huge_chunk_zarr_zip(folder / "chunk.ome.zarr.zip"),
        "codec": codec_bomb_zarr_zip(folder / "codec.ome.zarr.zip"),
        "lying": lying_zip(folder / "lying.ome.zarr.zip"),
        "strips": huge_strip_tiff(folder / "strips.tif"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    # The per-request total at 2 GiB (default 4): the strip thumbnail still fits, the
    # coarsest-level chunk is refused in half the time.
    env = {"ZSTACK_API_TOKEN": TOKEN, "ZSTACK_LIMITS__MAX_REQUEST_DECODE_BYTES": str(2 << 30)}
    with served(tmp_path_factory.mktemp("served") / "data", **env) as process:
        yield process


def _upload(base: str, path: Path) -> httpx.Response:
    with path.open("rb") as fh:
        return httpx.post(
            f"{base}/api/images/upload", files={"file": (path.name, fh)}, headers=AUTH, timeout=120
        )


def _probe(server: ServedProcess, url: str, figures: dict[str, str], label: str) -> httpx.Response:
    started = time.monotonic()
    response = httpx.get(f"{server.base_url}{url}", headers=AUTH, timeout=600)
    elapsed = time.monotonic() - started
    peak = server.peak_rss_bytes()
    figures[label] = f"{response.status_code} in {elapsed:.1f} s, server peak {peak / MiB:.0f} MiB"
    assert response.status_code < 500 or response.status_code == 503, (label, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    assert peak < BOUND, f"{label}: server peak RSS {peak / MiB:.0f} MiB"
    return response


def _wait_for_thumbnail(server: ServedProcess, image_id: str) -> httpx.Response:
    """The upload's own thumbnail (rendered in the background): wait for it like a client."""
    return httpx.get(
        f"{server.base_url}/api/images/{image_id}/thumbnail", headers=AUTH, timeout=600
    )


def test_decode_bombs_are_refused_or_served_in_bounded_memory(
    server: ServedProcess, bombs: dict[str, Path]
) -> None:
    figures: dict[str, str] = {}
    ids = {}
    for name, path in bombs.items():
        response = _upload(server.base_url, path)
        assert response.status_code == 201, (name, response.text)
        ids[name] = response.json()["id"]
    figures["uploads"] = f"server peak {server.peak_rss_bytes() / MiB:.0f} MiB"

    # One 30000 x 30000 zlib chunk: refused before it is inflated, on both routes.
    chunk = _probe(server, f"/api/images/{ids['chunk']}/zarr/0/0/0/0/0/0/0", figures, "chunk zarr")
    assert chunk.status_code == 422
    assert chunk.json()["code"] == "limit_exceeded"
    tile = _probe(server, f"/api/images/{ids['chunk']}/tile/0/0/0", figures, "chunk tile")
    assert tile.status_code == 422

    # A zlib chunk declaring 1 MiB that inflates to 512 MiB: refused at the declared size.
    codec = _probe(server, f"/api/images/{ids['codec']}/zarr/0/0/0/0/0/0/0", figures, "codec zarr")
    assert codec.status_code == 422
    assert "declares" in codec.json()["detail"]

    # A zip member declaring 4096 bytes that inflates to 1 GiB: refused, every time.
    for attempt in range(2):
        lying = _probe(
            server,
            f"/api/images/{ids['lying']}/zarr/0/0/0/0/0/0/0",
            figures,
            f"lying zarr {attempt}",
        )
        assert lying.status_code == 422
        assert "declares" in lying.json()["detail"]
    lying_thumb = _probe(
        server, f"/api/images/{ids['lying']}/thumbnail", figures, "lying thumbnail"
    )
    assert lying_thumb.status_code == 422

    # 30720 x 30720 in 240 MiB zlib strips: a level-0 chunk is served (its rows only are kept),
    # the upload's thumbnail too; the coarsest level, which would inflate every strip hundreds
    # of times, is refused by the per-request decode limit.
    strip = _probe(server, f"/api/images/{ids['strips']}/zarr/0/0/0/0/0/3/29", figures, "strip l0")
    assert strip.status_code == 200
    assert strip.content == bytes(1024 * 1024)
    started = time.monotonic()
    thumb = _wait_for_thumbnail(server, ids["strips"])
    figures["strip thumbnail"] = (
        f"{thumb.status_code} in {time.monotonic() - started:.1f} s (incl. the upload's), "
        f"server peak {server.peak_rss_bytes() / MiB:.0f} MiB"
    )
    assert thumb.status_code == 200
    assert server.peak_rss_bytes() < BOUND
    # The first .zattrs computes the display windows from the coarsest level, which inflates
    # every strip: seconds on a loaded machine (httpx's 5 s default was a flaky limit).
    started = time.monotonic()
    attrs = httpx.get(
        f"{server.base_url}/api/images/{ids['strips']}/zarr/.zattrs", headers=AUTH, timeout=600
    ).json()
    figures["strip .zattrs"] = f"{time.monotonic() - started:.1f} s"
    coarsest = len(attrs["multiscales"][0]["datasets"]) - 1
    top = _probe(
        server, f"/api/images/{ids['strips']}/zarr/0/{coarsest}/0/0/0/0/0", figures, "strip top"
    )
    assert top.status_code in (200, 422)
    print(json.dumps(figures, indent=1))


def test_sixteen_concurrent_chunk_and_tile_requests_stay_bounded(
    server: ServedProcess, bombs: dict[str, Path]
) -> None:
    ids = {name: _upload(server.base_url, path).json()["id"] for name, path in bombs.items()}
    urls = [f"/api/images/{ids['strips']}/zarr/0/0/0/0/0/{row}/{row + 3}" for row in range(8)]
    urls += [f"/api/images/{ids['chunk']}/zarr/0/0/0/0/0/0/0"] * 3
    urls += [f"/api/images/{ids['chunk']}/tile/0/0/{col}" for col in range(3)]
    urls += [f"/api/images/{ids['codec']}/zarr/0/0/0/0/0/0/0"]
    urls += [f"/api/images/{ids['lying']}/zarr/0/0/0/0/0/0/0"]
    assert len(urls) == 16
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(
                lambda url: httpx.get(f"{server.base_url}{url}", headers=AUTH, timeout=600), urls
            )
        )
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in responses]
    for url, response in zip(urls, responses, strict=True):
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) > 0
            assert response.json()["code"] in ("decode_busy", "decode_cancelled")
        elif "strips" in url or ids["strips"] in url:
            assert response.status_code == 200, response.text
            assert response.content == bytes(1024 * 1024)
        else:
            assert response.status_code == 422, response.text
    peak = server.peak_rss_bytes()
    print(f"16 concurrent: {statuses} in {elapsed:.1f} s, server peak {peak / MiB:.0f} MiB")
    assert peak < BOUND, f"server peak RSS {peak / MiB:.0f} MiB"
