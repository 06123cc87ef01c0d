"""Issue 27: the cost of measuring quality in the ingest's thumbnail pass.

``quality/batch200``: the per-file ingest work (``process_file``: hash, metadata,
default thumbnail into a render cache) over the 200 stacks of ``batch/200``
(150 OME-TIFF, 50 CZI; archive_bench.py makes them), with quality measured in the
same pass (``measure_quality=True``) against the same work without it, in the same
run, alternating rounds, serially in this process (the per-file cost is what
quality adds; the parallel batch divides both alike). Target: <= 1.15x.

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


def one_round(files: list[Path], *, quality: bool) -> float:
    """Seconds to process every file once, into a fresh render cache."""
    with tempfile.TemporaryDirectory(prefix="zq-cache-") as cache:
        started = time.perf_counter()
        for path in files:
            result = process_file(
                FileJob(str(path), ReadLimits(), cache_dir=cache, measure_quality=quality)
            )
            if result.status != "ok" or (quality and not isinstance(result.quality, list)):
                msg = f"{path}: {result.status} {result.error} {result.quality!r}"
                raise RuntimeError(msg)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=str(Path.home() / ".zstack-bench"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = ensure_batch_data(Path(args.data) / "archive")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".tif", ".czi"))
    one_round(files[:10], quality=True)  # warm the page cache and imports
    on: list[float] = []
    off: list[float] = []
    for _ in range(args.rounds):
        off.append(one_round(files, quality=False))
        on.append(one_round(files, quality=True))
    ratio = statistics.median(on) / statistics.median(off)
    print(
        json.dumps(
            {
                "id": "quality/batch200",
                "files": len(files),
                "seconds_quality_on": on,
                "seconds_quality_off": off,
                "ratio_median": round(ratio, 3),
                "target": 1.15,
            }
        )
    )


if __name__ == "__main__":
    main()
