"""Issue 27: the cost of measuring quality in the ingest's thumbnail pass.

``quality/batch200``: the per-file ingest work (``process_file``: hash, metadata,
default thumbnail into a render cache) over the 200 stacks of ``batch/200``
(150 OME-TIFF, 50 CZI; archive_bench.py makes them), with quality measured in the
same pass (``measure_quality=True``) against the same work without it, in the same
run, alternating file by file, serially in this process (the per-file cost is what
quality adds; the parallel batch divides both alike). Target: <= 1.15x. Wall and
CPU time (``time.process_time``, every thread of the process) are both recorded: on
the shared 2-core machine the CPU ratio is the steadier of the two.

Run: ``python bench/quality_bench.py [DATA_DIR] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.archive_bench import ensure_batch_data

from zstack_analyzer.batch.tasks import FileJob, process_file
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.quality._kernels import numba_scan


def _process(path: Path, cache: str, *, quality: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of one file's ingest work."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = process_file(
        FileJob(str(path), ReadLimits(), cache_dir=cache, measure_quality=quality)
    )
    took = time.perf_counter() - wall, time.process_time() - cpu
    if result.status != "ok" or (quality and not isinstance(result.quality, list)):
        msg = f"{path}: {result.status} {result.error} {result.quality!r}"
        raise RuntimeError(msg)
    return took


def one_round(files: list[Path], round_no: int) -> dict[str, tuple[float, float]]:
    """Every file once without and once with quality, alternating file by file.

    Why file by file (the order swapped every other file and round): on a shared
    machine the load drifts over the seconds a whole pass takes; two passes in a
    row measure the drift as much as the work. Each side renders into a fresh cache.
    """
    totals = {"on": [0.0, 0.0], "off": [0.0, 0.0]}
    with (
        tempfile.TemporaryDirectory(prefix="zq-on-") as on_cache,
        tempfile.TemporaryDirectory(prefix="zq-off-") as off_cache,
    ):
        for i, path in enumerate(files):
            order = ("off", "on") if (i + round_no) % 2 == 0 else ("on", "off")
            for side in order:
                cache = on_cache if side == "on" else off_cache
                wall, cpu = _process(path, cache, quality=side == "on")
                totals[side][0] += wall
                totals[side][1] += cpu
    return {side: (wall, cpu) for side, (wall, cpu) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=str(Path.home() / ".zstack-bench"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = ensure_batch_data(Path(args.data) / "archive")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".tif", ".czi"))
    with tempfile.TemporaryDirectory(prefix="zq-warm-") as warm:
        for path in files[:10] + files[-10:]:  # page cache, imports, the compiled scan
            _process(path, warm, quality=True)
    rounds = [one_round(files, n) for n in range(args.rounds)]
    wall = [r["on"][0] / r["off"][0] for r in rounds]
    cpu = [r["on"][1] / r["off"][1] for r in rounds]
    print(
        json.dumps(
            {
                "id": "quality/batch200",
                "files": len(files),
                "seconds_quality_on": [round(r["on"][0], 2) for r in rounds],
                "seconds_quality_off": [round(r["off"][0], 2) for r in rounds],
                "cpu_seconds_quality_on": [round(r["on"][1], 2) for r in rounds],
                "cpu_seconds_quality_off": [round(r["off"][1], 2) for r in rounds],
                "ratio_per_round": [round(x, 3) for x in wall],
                "ratio_median": round(statistics.median(wall), 3),
                "cpu_ratio_median": round(statistics.median(cpu), 3),
                "kernel": "numba" if numba_scan() is not None else "numpy",
                "target": 1.15,
            }
        )
    )


if __name__ == "__main__":
    main()
