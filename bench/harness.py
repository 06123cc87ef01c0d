"""Measurement plumbing: fresh processes, a warm page cache, medians and records.

Why interleaved: ours and its baseline alternate run by run, so a neighbour's
burst of CPU or a page-cache eviction hits both sides alike and the ratio (the
figure we judge) stays meaningful on a shared 2-core machine.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
CHILD = BENCH_DIR / "child.py"
CHILD_TIMEOUT_S = 600


class NotMeasuredError(Exception):
    """A side could not run (missing piece or package); the record says why."""


@dataclass(frozen=True)
class Side:
    """One side of a comparison: which interpreter runs which case on what."""

    label: str
    python: str
    case: str
    args: dict[str, Any]
    repeats: int


@dataclass
class Record:
    """One row of the results (the fields of bench/results/latest.json)."""

    id: str
    ours_s: float | None
    baseline: str
    baseline_s: float | None
    ratio: float | None
    peak_rss_mib: float | None
    target: str | None = None
    passed: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["pass"] = out.pop("passed")
        extra = out.pop("extra")
        out.update(extra)
        return out


def warm(paths: Iterable[Path | str]) -> float:
    """Read files once so they sit in the page cache; returns the seconds it took."""
    t0 = time.perf_counter()
    buf = bytearray(16 * 1024 * 1024)
    view = memoryview(buf)
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(view):
                pass
    return time.perf_counter() - t0


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return idle, sum(fields[:8])


def cpu_busy(interval: float = 0.5) -> float | None:
    """Share of all cores busy over ``interval`` (other helpers' work, between our runs)."""
    try:
        idle0, total0 = _cpu_times()
        time.sleep(interval)
        idle1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total > 0 else None


QUIET_BUSY = 0.3  # at most this share of the cores busy before a round starts
QUIET_MAX_WAIT_S = 20.0  # per round
QUIET_BUDGET_S = 240.0  # per run: past it, rounds start without waiting
_quiet_waited = [0.0]


def wait_quiet() -> float | None:
    """Wait (bounded) until the machine is mostly idle; returns the last busy share seen."""
    t0 = time.monotonic()
    left = min(QUIET_MAX_WAIT_S, QUIET_BUDGET_S - _quiet_waited[0])
    busy = cpu_busy()
    while busy is not None and busy > QUIET_BUSY and time.monotonic() - t0 < left:
        busy = cpu_busy(1.0)
    _quiet_waited[0] += time.monotonic() - t0
    return busy


def quiet_waited_s() -> float:
    """Seconds spent so far waiting for other processes to calm down."""
    return _quiet_waited[0]


def run_child(side: Side) -> dict[str, Any]:
    """Run one measurement of ``side`` in a fresh process and return its JSON line."""
    cmd = [side.python, str(CHILD), side.case, json.dumps(side.args)]
    env = dict(os.environ)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        msg = f"{side.label}: timed out after {CHILD_TIMEOUT_S} s"
        raise NotMeasuredError(msg) from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        msg = f"{side.label}: exit {proc.returncode}: {' | '.join(tail)}"
        raise NotMeasuredError(msg)
    result: dict[str, Any] = json.loads(lines[-1])
    if "error" in result:
        msg = f"{side.label}: {result['error']}"
        raise NotMeasuredError(msg)
    return result


def run_process(cmd: Sequence[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a whole process, for the import record."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        msg = f"{' '.join(cmd)}: exit {proc.returncode}: {stderr.strip()[-300:]}"
        raise NotMeasuredError(msg)
    return seconds, usage.ru_maxrss / 1024.0


@dataclass
class Series:
    """Repeated measurements of one side."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def median_cpu_s(self) -> float | None:
        return statistics.median(self.cpu_seconds) if self.cpu_seconds else None

    @property
    def peak_rss(self) -> float | None:
        return max(self.rss_mib) if self.rss_mib else None


def compare(
    ours: Side, baseline: Side, *, warm_paths: Sequence[Path | str]
) -> tuple[Series, Series]:
    """Alternate ours and baseline runs, each in a fresh process after a cache warm-up."""
    got = compare_many([ours, baseline], warm_paths=warm_paths)
    return got[0], got[1]


def compare_many(sides: Sequence[Side], *, warm_paths: Sequence[Path | str]) -> list[Series]:
    """:func:`compare` for any number of sides: each round runs every side once, in order.

    The quiet-machine wait before a round is noted on the first side's series.
    """
    got = [Series() for _ in sides]
    rounds = max(side.repeats for side in sides)
    for i in range(rounds):
        busy = wait_quiet()
        if busy is not None:
            got[0].busy.append(busy)
        for side, series in zip(sides, got, strict=True):
            if i >= side.repeats or series.error is not None:
                continue
            warm(warm_paths)
            try:
                result = run_child(side)
            except NotMeasuredError as exc:
                series.error = str(exc)
                continue
            series.seconds.append(float(result["seconds"]))
            if "cpu_seconds" in result:
                series.cpu_seconds.append(float(result["cpu_seconds"]))
            series.rss_mib.append(float(result["rss_mib"]))
            series.info = result.get("info", {})
    return got


def ratio(ours_s: float | None, baseline_s: float | None) -> float | None:
    if ours_s is None or baseline_s is None or baseline_s <= 0:
        return None
    return ours_s / baseline_s


def fmt_s(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps the tables."""
    print(message, file=sys.stderr, flush=True)
