"""Issue 5: the live service on 127.0.0.1: cached thumbnail latency, upload speed and memory.

Why a real server: latency, throughput and the server's memory only mean
something through uvicorn and a real socket. Every loop is bounded in count and
time and talks to loopback only; the server is our child and is stopped at the end.

Records:
- ``thumb-cached/service``: p50 of a cached thumbnail GET against a static file of the
  same size served by the same app (bench_server.py adds the static route).
- ``upload/b``: upload of b (503 MB) with curl against writing the same bytes to the
  same file system and fsyncing them.
- ``upload-rss/c``: the server process's peak RSS while the 2 GB upload of c runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import (
    NotMeasuredError,
    Record,
    Series,
    Side,
    fmt_s,
    log,
    ratio,
    run_child,
    wait_quiet,
    warm,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCH_DIR = Path(__file__).resolve().parent
START_TIMEOUT_S = 60
UPLOAD_TIMEOUT_S = 300
THUMB_REQUESTS = 400  # per side, in blocks of 50, alternating
THUMB_BLOCK = 50


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """bench_server.py in a child process with its own data dir."""

    def __init__(self, root: Path, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.static_dir = root / "static"
        self.static_dir.mkdir(parents=True)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            ZSTACK_DATA_DIR=str(self.data_dir),
            ZSTACK_PORT=str(self.port),
            ZSTACK_HOST="127.0.0.1",
            ZSTACK_LOG_LEVEL="warning",
        )
        env.pop("ZSTACK_API_TOKEN", None)
        env.pop("ZSTACK_DATABASE_URL", None)
        env.update(extra_env or {})
        self.log_path = root / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "bench_server.py"), str(self.static_dir)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"server exited with {self.proc.returncode}: {self.log_tail()}"
                raise NotMeasuredError(msg)
            try:
                if httpx.get(f"{self.base}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        msg = f"server not ready after {START_TIMEOUT_S} s: {self.log_tail()}"
        raise NotMeasuredError(msg)

    def log_tail(self) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the server is idle (a background thumbnail after an upload is done)."""
        import psutil

        proc = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + timeout
        proc.cpu_percent(None)
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if proc.cpu_percent(None) < 5.0:
                return

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def running_server(extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="zstack-bench-"))
    server = Server(root, extra_env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def curl_upload(
    server: Server, path: str, *, sample_rss: bool
) -> tuple[float, float | None, dict[str, Any]]:
    """Upload ``path`` with curl; seconds of the request, server peak RSS (MiB) while it ran."""
    import psutil

    out = server.root / "upload-response.json"
    cmd = [
        "curl",
        "--silent",
        "--show-error",
        "--fail-with-body",
        "--max-time",
        str(UPLOAD_TIMEOUT_S),
        "-o",
        str(out),
        "-w",
        "%{time_total} %{http_code}",
        "-F",
        f"file=@{path};type=application/octet-stream",
        f"{server.base}/api/images/upload",
    ]
    sproc = psutil.Process(server.proc.pid)
    peak: list[float] = [sproc.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak.append(sproc.memory_info().rss)
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_rss:
        sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    done.set()
    if sample_rss:
        sampler.join()
    body = out.read_text(errors="replace") if out.exists() else ""
    if proc.returncode != 0:
        msg = f"upload failed: curl exit {proc.returncode} {proc.stdout} {proc.stderr.strip()} {body[:300]}"
        raise NotMeasuredError(msg)
    curl_s, code = proc.stdout.split()
    if code != "201":
        msg = f"upload answered {code}: {body[:300]}"
        raise NotMeasuredError(msg)
    response = json.loads(body)
    seconds = float(curl_s) if float(curl_s) > 0 else wall
    rss = max(peak) / 1024**2 if sample_rss else None
    return seconds, rss, response


def delete_image(server: Server, image_id: str) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        httpx.delete(f"{server.base}/api/images/{image_id}", timeout=60)


def write_fsync_side(src: str, dst: Path) -> Side:
    return Side(
        "disk write+fsync", sys.executable, "disk_write_fsync", {"src": src, "dst": str(dst)}, 1
    )


def upload_record(
    server: Server, rid: str, path: str, repeats: int, *, target: str, max_ratio: float | None
) -> tuple[Record, float | None]:
    """Interleave uploads and write+fsync baselines; returns the record and server peak RSS."""
    log(f"{rid}: {repeats}x upload / {repeats}x disk write+fsync ...")
    t0 = time.perf_counter()
    size = os.path.getsize(path)
    ours, base = Series(), Series()
    dst = server.data_dir / "bench-write-baseline.bin"
    for _ in range(repeats):
        busy = wait_quiet()
        if busy is not None:
            ours.busy.append(busy)
        warm([path])
        if ours.error is None:
            try:
                seconds, rss, response = curl_upload(server, path, sample_rss=True)
                ours.seconds.append(seconds)
                if rss is not None:
                    ours.rss_mib.append(rss)
                ours.info = {"id": response.get("id"), "message": response.get("message")}
                server.settle()
                delete_image(server, str(response.get("id")))
                server.settle()
            except NotMeasuredError as exc:
                ours.error = str(exc)
        warm([path])
        if base.error is None:
            try:
                result = run_child(write_fsync_side(path, dst))
                base.seconds.append(float(result["seconds"]))
            except NotMeasuredError as exc:
                base.error = str(exc)
            finally:
                dst.unlink(missing_ok=True)
    r = ratio(ours.median_s, base.median_s)
    mb = size / 1e6
    notes = [f"{mb:.0f} MB via curl -F; server peak RSS sampled every 10 ms during the request"]
    if ours.error:
        notes.append(f"not measured: {ours.error}")
    if base.error:
        notes.append(f"baseline not measured: {base.error}")
    rec = Record(
        id=rid,
        ours_s=ours.median_s,
        baseline="disk write+fsync",
        baseline_s=base.median_s,
        ratio=r,
        peak_rss_mib=ours.peak_rss,
        target=target,
        passed=(r <= max_ratio) if (r is not None and max_ratio is not None) else None,
        note="; ".join(notes),
        extra={
            "runs": [len(ours.seconds), len(base.seconds)],
            "ours_runs_s": [round(x, 6) for x in ours.seconds],
            "baseline_runs_s": [round(x, 6) for x in base.seconds],
            "throughput_mb_s": mb / ours.median_s if ours.median_s else None,
            "baseline_throughput_mb_s": mb / base.median_s if base.median_s else None,
            "speed_vs_baseline": (1 / r) if r else None,
            "cpu_busy_before_rounds": max(ours.busy) if ours.busy else None,
            "server_peak_rss_mib": ours.peak_rss,
        },
    )
    log(
        f"  -> upload {fmt_s(rec.ours_s)}, write+fsync {fmt_s(rec.baseline_s)}, "
        f"server RSS {ours.peak_rss} MiB ({time.perf_counter() - t0:.0f} s) {rec.note}"
    )
    return rec, ours.peak_rss


def thumb_record(server: Server, path_a: str) -> Record:
    import httpx

    log(f"thumb-cached/service: {THUMB_REQUESTS} cached thumbnail GETs vs static file ...")
    t0 = time.perf_counter()
    rid = "thumb-cached/service"
    _, _, response = curl_upload(server, path_a, sample_rss=False)
    image_id = response["id"]
    thumb_url = f"{server.base}/api/images/{image_id}/thumbnail"
    with httpx.Client(timeout=120) as client:
        first = client.get(thumb_url)
        if first.status_code != 200:
            msg = f"thumbnail answered {first.status_code}: {first.text[:200]}"
            raise NotMeasuredError(msg)
        png = first.content
        server.settle()
        (server.static_dir / "same-size.png").write_bytes(png)
        static_url = f"{server.base}/bench-static/same-size.png"
        check = client.get(static_url)
        assert check.status_code == 200 and len(check.content) == len(png), check.status_code
        lat: dict[str, list[float]] = {"thumb": [], "static": []}
        busy: dict[str, float] = {"thumb": 0.0, "static": 0.0}
        busy_before = wait_quiet()
        for _ in range(THUMB_REQUESTS // THUMB_BLOCK):
            for name, url in (("thumb", thumb_url), ("static", static_url)):
                b0 = time.perf_counter()
                for _ in range(THUMB_BLOCK):
                    s0 = time.perf_counter()
                    resp = client.get(url)
                    lat[name].append(time.perf_counter() - s0)
                    if resp.status_code != 200 or len(resp.content) != len(png):
                        msg = (
                            f"{name} GET answered {resp.status_code} with {len(resp.content)} bytes"
                        )
                        raise NotMeasuredError(msg)
                busy[name] += time.perf_counter() - b0
        headers = dict(first.headers)
    delete_image(server, image_id)

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]

    p50_t, p50_s = statistics.median(lat["thumb"]), statistics.median(lat["static"])
    r = p50_t / p50_s
    rec = Record(
        id=rid,
        ours_s=p50_t,
        baseline="static file, same app (StaticFiles)",
        baseline_s=p50_s,
        ratio=r,
        peak_rss_mib=None,
        target="ratio <= 2 (p50)",
        passed=r <= 2.0,
        note=(
            f"{THUMB_REQUESTS} sequential keep-alive GETs per side (httpx), alternating blocks of "
            f"{THUMB_BLOCK}; PNG {len(png)} bytes; file a"
        ),
        extra={
            "p99_s": p(lat["thumb"], 99),
            "cpu_busy_before": busy_before,
            "baseline_p99_s": p(lat["static"], 99),
            "requests_per_s": len(lat["thumb"]) / busy["thumb"],
            "baseline_requests_per_s": len(lat["static"]) / busy["static"],
            "thumbnail_headers": {
                k: v for k, v in headers.items() if k in ("etag", "cache-control", "content-type")
            },
        },
    )
    log(
        f"  -> p50 {fmt_s(p50_t)} vs {fmt_s(p50_s)}, p99 {fmt_s(rec.extra['p99_s'])}, "
        f"{rec.extra['requests_per_s']:.0f} req/s ({time.perf_counter() - t0:.0f} s)"
    )
    return rec


def not_measured(rid: str, baseline: str, target: str, why: str) -> Record:
    log(f"{rid}: not measured: {why}")
    return Record(
        id=rid,
        ours_s=None,
        baseline=baseline,
        baseline_s=None,
        ratio=None,
        peak_rss_mib=None,
        target=target,
        passed=None,
        note=f"not measured: {why}",
    )


def issue5(path_a: str, path_b: str, path_c: str, *, quick: bool) -> list[Record]:
    thumb_target, up_target, rss_target = (
        "ratio <= 2 (p50)",
        "speed >= 0.7x (ratio <= 1.43)",
        "server peak RSS < 200 MiB",
    )
    records: list[Record] = []
    try:
        with running_server() as server:
            try:
                records.append(thumb_record(server, path_a))
            except (NotMeasuredError, OSError) as exc:
                records.append(
                    not_measured(
                        "thumb-cached/service", "static file, same app", thumb_target, str(exc)
                    )
                )
            server.settle()
            rec, _ = upload_record(
                server, "upload/b", path_b, 1 if quick else 5, target=up_target, max_ratio=1 / 0.7
            )
            records.append(rec)
            rec, rss = upload_record(
                server, "upload-rss/c", path_c, 1, target=rss_target, max_ratio=None
            )
            rec.passed = (rss < 200) if rss is not None else None
            rec.note += "; one run (2 GB)"
            records.append(rec)
    except NotMeasuredError as exc:
        ids = [r.id for r in records]
        for rid, base, target in (
            ("thumb-cached/service", "static file, same app", thumb_target),
            ("upload/b", "disk write+fsync", up_target),
            ("upload-rss/c", "disk write+fsync", rss_target),
        ):
            if rid not in ids:
                records.append(not_measured(rid, base, target, str(exc)))
    return records
