"""Issue 13: the archive. Batch work on dask.distributed, and in-place ingest of 10,000 files.

Records:
- ``batch/200``: metadata plus the default thumbnail of 200 generated small stacks
  (150 OME-TIFF, 50 CZI), through the batch path (``thumbnails_of_many``: a
  LocalCluster of processes sized to the machine, its start-up inside the clock)
  against a plain ``ProcessPoolExecutor`` of the same per-file function (the
  parallel speed-up the machine allows), in the same rounds, alternating, each in a
  fresh process (child.py); target: batch <= 1.15x the pool. A serial loop of the
  same function runs in the same rounds too, for orientation (no target).
- ``ingest/10k``: ``zstack ingest --in-place --server`` of 10,000 small OME-TIFFs in
  100 folders against a running ``zstack serve`` (SQLite, default thumbnails on):
  files/s, and the peak RSS of the CLI process (ru_maxrss via wait4) and of the
  server (psutil, sampled every 50 ms). A second run (everything already present)
  is timed too. No baseline: the figures are absolute.

The files are generated once under ``<data>/archive/`` (outside the repository).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import NotMeasuredError, Record, Side, compare_many, fmt_s, log, ratio

if TYPE_CHECKING:
    from collections.abc import Iterator

BATCH_FILES = 200
BATCH_CZI = 50
BATCH_SHAPE = (2, 12, 384, 384)  # C, Z, Y, X uint16: ~7 MB a file, ~60 ms of work
INGEST_FILES = 10_000
INGEST_FOLDERS = 100
START_TIMEOUT_S = 60
INGEST_TIMEOUT_S = 1800


# ------------------------------------------------------------------ data
def _stack(seed: int, shape: tuple[int, ...]) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(100, 400, size=shape, dtype=np.uint16)
    # A bright blob per channel, so the thumbnail's percentile window has work to do.
    base[..., shape[-2] // 3 : shape[-2] // 2, shape[-1] // 3 : shape[-1] // 2] += 3000
    return base


def _write_czi(path: Path, data: Any) -> None:
    from pylibCZIrw import czi as pyczi

    c, z = data.shape[:2]
    with pyczi.create_czi(str(path), exist_ok=True) as doc:
        for ci in range(c):
            for zi in range(z):
                doc.write(data[ci, zi], plane={"C": ci, "Z": zi, "T": 0})


def ensure_batch_data(root: Path) -> Path:
    """200 stacks (150 OME-TIFF, 50 CZI) in ``root/batch200`` (made once)."""
    import tifffile

    folder = root / "batch200"
    stamp = folder / ".complete"
    if stamp.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"batch/200: generating {BATCH_FILES} stacks {BATCH_SHAPE} into {folder}")
    for i in range(BATCH_FILES):
        data = _stack(i, BATCH_SHAPE)
        if i < BATCH_CZI:
            _write_czi(folder / f"stack{i:03d}.czi", data)
        else:
            tifffile.imwrite(
                folder / f"stack{i:03d}.ome.tif",
                data,
                ome=True,
                metadata={"axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2},
            )
    stamp.touch()
    return folder


def ensure_ingest_data(root: Path) -> Path:
    """10,000 tiny OME-TIFFs in 100 folders in ``root/ingest10k`` (made once)."""
    import tifffile

    folder = root / "ingest10k"
    stamp = folder / ".complete"
    if stamp.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    log(f"ingest/10k: generating {INGEST_FILES} small OME-TIFFs into {folder}")
    per_folder = INGEST_FILES // INGEST_FOLDERS
    for f in range(INGEST_FOLDERS):
        sub = folder / f"plate{f // 10:02d}" / f"well{f:03d}"
        sub.mkdir(parents=True)
        for i in range(per_folder):
            data = _stack(f * per_folder + i, (1, 2, 16, 16))
            tifffile.imwrite(sub / f"f{i:03d}.ome.tif", data, ome=True, metadata={"axes": "CZYX"})
    stamp.touch()
    return folder


# ------------------------------------------------------------------ batch/200
def batch_record(data_root: Path, ours_python: str, *, quick: bool) -> Record:
    folder = ensure_batch_data(data_root)
    repeats = 1 if quick else 3
    args = {"folder": str(folder)}
    log(f"batch/200: {repeats}x batch path / process pool / serial loop, alternating ...")
    t0 = time.perf_counter()
    ours, pool, serial = compare_many(
        [
            Side("batch (LocalCluster)", ours_python, "ours_batch_many", args, repeats),
            Side("process pool", ours_python, "pool_many", args, repeats),
            Side("serial loop", ours_python, "serial_many", args, repeats),
        ],
        warm_paths=sorted(str(p) for p in folder.iterdir() if p.is_file()),
    )
    r = ratio(ours.median_s, pool.median_s)
    serial_ratio = ratio(ours.median_s, serial.median_s)
    pool_serial = ratio(pool.median_s, serial.median_s)
    cores = os.cpu_count()
    notes = [
        "same per-file function (hash, metadata, default 256 px thumbnail into a fresh cache) "
        "on every side; the batch clock includes starting the LocalCluster "
        f"({cores} worker processes, 1 thread each); baseline: a plain "
        f"ProcessPoolExecutor({cores}) of the function, the parallel speed-up the machine "
        f"allows, in the same rounds; median of {repeats}",
        f"orientation: a serial loop in one process ran {fmt_s(serial.median_s)} in the same "
        f"rounds (batch/serial {_fmt_ratio(serial_ratio)}, pool/serial {_fmt_ratio(pool_serial)})",
    ]
    for label, series in (("ours", ours), ("pool", pool), ("serial", serial)):
        if series.error:
            notes.append(f"{label} not measured: {series.error}")
    if ours.busy and max(ours.busy) > 0.3:
        notes.append(f"machine busy: others used up to {max(ours.busy):.0%} of the cores")
    rec = Record(
        id="batch/200",
        ours_s=ours.median_s,
        baseline=f"plain ProcessPoolExecutor({cores}) of the same function, same rounds",
        baseline_s=pool.median_s,
        ratio=r,
        peak_rss_mib=ours.peak_rss,
        target="ratio <= 1.15",
        passed=None if r is None else r <= 1.15,
        note="; ".join(notes),
        extra={
            "ours_runs_s": [round(x, 3) for x in ours.seconds],
            "baseline_runs_s": [round(x, 3) for x in pool.seconds],
            "ours_info": ours.info,
            "baseline_info": pool.info,
            "cpu_busy_before_rounds": max(ours.busy) if ours.busy else None,
            "serial_s": serial.median_s,
            "serial_runs_s": [round(x, 3) for x in serial.seconds],
            "batch_serial_ratio": serial_ratio,
            "pool_serial_ratio": pool_serial,
        },
    )
    log(
        f"  -> batch {fmt_s(rec.ours_s)}, pool {fmt_s(rec.baseline_s)}, ratio "
        f"{_fmt_ratio(r)}; serial {fmt_s(serial.median_s)} ({time.perf_counter() - t0:.0f} s)"
    )
    return rec


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ------------------------------------------------------------------ ingest/10k
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(root: Path, import_root: Path, zstack: str) -> Iterator[tuple[str, int]]:
    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")}
    env.update(
        ZSTACK_DATA_DIR=str(root / "data"),
        ZSTACK_PORT=str(port),
        ZSTACK_LOG_LEVEL="warning",
        ZSTACK_IMPORT_ROOTS=str(import_root),
    )
    log_path = root / "server.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([zstack, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                msg = f"server exited: {log_path.read_text()[-300:]}"
                raise NotMeasuredError(msg)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                msg = "server did not start"
                raise NotMeasuredError(msg)
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _timed_cli(cmd: list[str], server_pid: int) -> tuple[float, float, float, dict[str, Any]]:
    """Wall seconds, CLI peak RSS, server peak RSS (MiB) and the JSON summary of one ingest."""
    import psutil

    server = psutil.Process(server_pid)
    peak = [server.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak.append(server.memory_info().rss)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    done.set()
    sampler.join()
    try:
        summary = json.loads(text)
    except ValueError as exc:
        msg = f"ingest exit {proc.returncode}: {text[-300:]}"
        raise NotMeasuredError(msg) from exc
    return seconds, usage.ru_maxrss / 1024.0, max(peak) / 1024**2, summary


def ingest_record(data_root: Path, ours_python: str) -> Record:
    folder = ensure_ingest_data(data_root)
    zstack = str(Path(ours_python).with_name("zstack"))
    root = Path(tempfile.mkdtemp(prefix="zstack-bench-ingest-"))
    cmd = [zstack, "ingest", str(folder), "--in-place", "--json", "--settle", "0"]
    log(f"ingest/10k: {INGEST_FILES} files in place through the server ...")
    try:
        with _server(root, folder, zstack) as (base, pid):
            first = _timed_cli([*cmd, "--server", base], pid)
            again = _timed_cli([*cmd, "--server", base], pid)
    except NotMeasuredError as exc:
        return Record("ingest/10k", None, "none (absolute figures)", None, None, None,
                      note=f"not measured: {exc}")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    seconds, cli_rss, server_rss, summary = first
    ok = summary.get("ingested") == INGEST_FILES
    rss_ok = cli_rss < 300 and server_rss < 300
    rec = Record(
        id="ingest/10k",
        ours_s=seconds,
        baseline="none (absolute figures)",
        baseline_s=None,
        ratio=None,
        peak_rss_mib=max(cli_rss, server_rss),
        target="CLI and server peak RSS < 300 MiB each",
        passed=rss_ok and ok,
        note=(
            f"{INGEST_FILES / seconds:.0f} files/s; CLI peak RSS {cli_rss:.0f} MiB, server "
            f"{server_rss:.0f} MiB; re-run (all present) {again[0]:.1f} s "
            f"({INGEST_FILES / again[0]:.0f} files/s); server on SQLite with default "
            f"thumbnails rendered in its worker threads; ingested {summary.get('ingested')}, "
            f"failed {len(summary.get('failed', []))}"
        ),
        extra={
            "files_per_s": INGEST_FILES / seconds,
            "cli_peak_rss_mib": cli_rss,
            "server_peak_rss_mib": server_rss,
            "rerun_s": again[0],
            "rerun_present": again[3].get("already_present"),
            "rerun_cli_peak_rss_mib": again[1],
            "rerun_server_peak_rss_mib": again[2],
        },
    )
    log(f"  -> {rec.note}")
    return rec


def issue13(data_root: Path, ours_python: str, *, quick: bool, wants: Any) -> list[Record]:
    archive = data_root / "archive"
    out = []
    if wants("batch/200"):
        out.append(batch_record(archive, ours_python, quick=quick))
    if wants("ingest/10k"):
        out.append(ingest_record(archive, ours_python))
    return out


if __name__ == "__main__":  # a quick look: python bench/archive_bench.py DATA_DIR
    for record in issue13(Path(sys.argv[1]), sys.executable, quick=True, wants=lambda _: True):
        print(record.as_json())
