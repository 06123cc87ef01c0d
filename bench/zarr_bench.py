"""Issue 14: the virtual OME-Zarr on a live server, against a static file from the same app.

``zarr-chunk/service``: p50 latency of level-0 chunk GETs of file a from
``/api/images/{id}/zarr/0/0/...`` (each chunk is one plane decoded from the
original file on request; nothing of level 0 is cached), against a static file
of the same size (one chunk's bytes) served by the same uvicorn app. The first
GET of each chunk is its first request ever; the ratio is computed on those.
"""

from __future__ import annotations

import itertools
import statistics
import time

from harness import NotMeasuredError, Record, fmt_s, log, wait_quiet
from service_bench import Server, curl_upload, delete_image, not_measured, running_server

TARGET = "ratio <= 2 (p50)"
PASSES = 3  # each chunk requested once per pass; pass 1 = first requests


def chunk_record(server: Server, path_a: str) -> Record:
    import httpx

    rid = "zarr-chunk/service"
    t0 = time.perf_counter()
    _, _, response = curl_upload(server, path_a, sample_rss=False)
    image_id = response["id"]
    server.settle()
    base = f"{server.base}/api/images/{image_id}/zarr"
    with httpx.Client(timeout=120) as client:
        zarray = client.get(f"{base}/0/0/.zarray")
        if zarray.status_code != 200:
            msg = f".zarray answered {zarray.status_code}: {zarray.text[:200]}"
            raise NotMeasuredError(msg)
        meta = zarray.json()
        grid = [-(-s // c) for s, c in zip(meta["shape"], meta["chunks"], strict=True)]
        keys = ["/".join(map(str, idx)) for idx in itertools.product(*(range(n) for n in grid))]
        chunk_bytes = 1
        for c in meta["chunks"]:
            chunk_bytes *= c
        chunk_bytes *= int(meta["dtype"][-1])
        (server.static_dir / "chunk.bin").write_bytes(bytes(chunk_bytes))
        static_url = f"{server.base}/bench-static/chunk.bin"
        assert len(client.get(static_url).content) == chunk_bytes
        lat: dict[str, list[float]] = {"first": [], "again": [], "static": []}
        busy_before = wait_quiet()
        for n in range(PASSES):
            for key in keys:
                for name, url in (
                    ("first" if n == 0 else "again", f"{base}/0/0/{key}"),
                    ("static", static_url),
                ):
                    s0 = time.perf_counter()
                    got = client.get(url)
                    lat[name].append(time.perf_counter() - s0)
                    if got.status_code != 200 or len(got.content) != chunk_bytes:
                        msg = f"{url} answered {got.status_code} with {len(got.content)} bytes"
                        raise NotMeasuredError(msg)
    delete_image(server, image_id)
    p50_first = statistics.median(lat["first"])
    p50_static = statistics.median(lat["static"])
    r = p50_first / p50_static
    rec = Record(
        id=rid,
        ours_s=p50_first,
        baseline="static file of one chunk's size, same app (StaticFiles)",
        baseline_s=p50_static,
        ratio=r,
        peak_rss_mib=None,
        target=TARGET,
        passed=r <= 2.0,
        note=(
            f"file a: {len(keys)} level-0 chunks of {chunk_bytes:,} bytes (one uint16 plane each), "
            f"each GET once as its first request (p50 over {len(lat['first'])}), "
            f"alternating with the static file; keep-alive httpx"
        ),
        extra={
            "p50_repeat_s": statistics.median(lat["again"]) if lat["again"] else None,
            "cpu_busy_before": busy_before,
            "chunks": len(keys),
            "chunk_bytes": chunk_bytes,
        },
    )
    log(
        f"  -> p50 first {fmt_s(p50_first)}, static {fmt_s(p50_static)}, ratio {r:.2f} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return rec


def issue14_service(path_a: str) -> list[Record]:
    try:
        with running_server() as server:
            return [chunk_record(server, path_a)]
    except (NotMeasuredError, OSError) as exc:
        return [not_measured("zarr-chunk/service", "static file, same app", TARGET, str(exc))]
