"""`make bench`: our figures for issues 3, 4 and 5 against baselines from the same run.

Usage::

    python bench/run.py --data ../zstack-bench-data [--peer-python .venv-bench/bin/python]
                        [--make-data ../shared/bench/make_data.py] [--only metadata,load]

Prints one table (id, ours, baseline, its time, ratio, target, pass, peak RSS) and
writes bench/results/latest.json. Method: bench/README.md and the shared bench
README ("How a figure is measured"): a fresh process per measurement after an
untimed read of the file, median of 5 runs (3 for work over 1 GB), clock around
the call and its result only, ratio = ours_s / baseline_s from this run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import (
    QUIET_BUSY,
    QUIET_MAX_WAIT_S,
    NotMeasuredError,
    Record,
    Series,
    Side,
    compare,
    fmt_s,
    log,
    quiet_waited_s,
    ratio,
    run_process,
    warm,
)

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "latest.json"

FILES = {
    "a": "a_tiff_50MB.ome.tif",
    "b": "b_tiff_500MB.ome.tif",
    "c": "c_bigtiff_2GB.ome.tif",
    "d": "d_czi_100MB.czi",
    "e": "e_bigtiff_2GB_zlib.ome.tif",
}
# Smallest plausible size of a complete file: a shorter one is a cut-off generation.
MIN_BYTES = {
    "a": 50_000_000,
    "b": 500_000_000,
    "c": 2_140_000_000,
    "d": 100_000_000,
    "e": 900_000_000,
}
ALL_GROUPS = {
    "issue3",
    "issue4",
    "issue5",
    "issue13",
    "issue14",
    "issue16",
    "issue17",
    "issue23",
    "issue24",
}
GROUP_IDS = {
    "issue3": ("import", "metadata", "lazy-open", "load/"),  # metadata-cold too
    "issue4": ("slice-thumb", "mip-thumb", "seed-thumb"),
    "issue5": ("thumb-cached", "upload/", "upload-rss"),
    "issue13": ("batch/", "ingest/"),
    "issue14": ("convert/", "zarr-chunk"),
    "issue16": ("metadata/lsm", "slice-thumb/dicom-wsi", "slice-thumb/dicom-wsi-8k"),
    "issue17": ("search/", "upload-s3/", "s3-ranged-thumb/"),
    "issue23": ("auth/",),
    "issue24": ("annotate-bulk/", "search-kv/", "search-kv-member/"),
}
BIG = {"c", "e"}  # work over 1 GB: 3 runs instead of 5

# Modules our call would import lazily on first use (format package, our XML helpers);
# imported before the clock on both sides, since import time is its own record.
TIFF_MODULES = ["tifffile", "imagecodecs", "defusedxml.ElementTree"]
CZI_MODULES = [
    "pylibCZIrw.czi",
    "xmltodict",
    "defusedxml.ElementTree",
    "zstack_analyzer.readers._czi_xml",
]
# anyio imports its asyncio backend on the first to_thread call: before the clock too.
LAZY_MODULES = ["dask.array", "anyio", "anyio._backends._asyncio"]


def modules(key: str, *, lazy: bool = False) -> list[str]:
    return (CZI_MODULES if key == "d" else TIFF_MODULES) + (LAZY_MODULES if lazy else [])


# The seed README's "Thumbnail Time" column (MacBook Pro M1 Max), for orientation only.
SEED_THUMB_S = {"a": 0.2, "b": 0.5, "c": 1.2, "d": 0.3}


@dataclass
class Context:
    data: Path
    ours_python: str
    peer_python: str | None
    quick: bool
    wanted: frozenset[str] = frozenset()  # id prefixes; empty: every record of the groups run
    testdata: Path = REPO.parent / "shared" / "testdata"  # the real corpus (metadata-real/*)

    def wants(self, rid: str) -> bool:
        return not self.wanted or any(rid.startswith(w) for w in self.wanted)

    def path(self, key: str) -> str:
        return str(self.data / FILES[key])

    def repeats(self, key: str | None = None, slow_peer: int | None = None) -> int:
        if self.quick:
            return 1
        if slow_peer is not None:
            return slow_peer
        return 3 if key in BIG else 5


@dataclass(frozen=True)
class Target:
    """A pass rule: ratio at most ``max_ratio`` and/or peak RSS under ``max_rss``."""

    text: str
    max_ratio: float | None = None
    max_rss: float | None = None
    rss_inclusive: bool = False

    def check(self, r: float | None, rss: float | None) -> bool | None:
        verdicts: list[bool] = []
        if self.max_ratio is not None:
            if r is None:
                return None
            verdicts.append(r <= self.max_ratio)
        if self.max_rss is not None:
            if rss is None:
                return None
            verdicts.append(rss <= self.max_rss if self.rss_inclusive else rss < self.max_rss)
        return all(verdicts) if verdicts else None


# ----------------------------------------------------------------- data files
def ensure_data(data: Path, make_data: Path | None, keys: set[str]) -> None:
    """Generate the benchmark files that are missing (or cut short), and only those."""
    missing = sorted(
        k
        for k in keys
        if not (data / FILES[k]).exists() or (data / FILES[k]).stat().st_size < MIN_BYTES[k]
    )
    if not missing:
        log(f"data: all of {','.join(sorted(keys))} present in {data}")
        return
    if make_data is None or not make_data.exists():
        msg = f"data: {','.join(missing)} missing in {data} and no make_data.py ({make_data})"
        raise SystemExit(msg)
    log(f"data: generating {','.join(missing)} into {data} (several minutes for c/e)")
    data.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(make_data), str(data), "--only", ",".join(missing)]
    subprocess.run(cmd, check=True)


# ------------------------------------------------------------------ records
def measured(
    rid: str,
    ours: Side,
    baseline: Side,
    target: Target | None,
    *,
    warm_keys: list[str],
    ctx: Context,
    note: str = "",
) -> Record | None:
    if not ctx.wants(rid):
        return None
    log(f"{rid}: {ours.repeats}x ours / {baseline.repeats}x {baseline.label} ...")
    t0 = time.perf_counter()
    ours_series, base_series = compare(ours, baseline, warm_paths=[ctx.path(k) for k in warm_keys])
    return make_record(rid, ours_series, baseline.label, base_series, target, note, t0)


def make_record(
    rid: str,
    ours: Series,
    baseline_label: str,
    base: Series,
    target: Target | None,
    note: str,
    t0: float,
) -> Record:
    r = ratio(ours.median_s, base.median_s)
    notes = [note] if note else []
    if ours.error:
        notes.append(f"not measured: {ours.error}")
    if base.error:
        notes.append(f"baseline not measured: {base.error}")
    if ours.busy and max(ours.busy) > QUIET_BUSY:
        notes.append(
            f"machine busy: others used up to {max(ours.busy):.0%} of the cores before a round "
            f"(waited up to {QUIET_MAX_WAIT_S:.0f} s a round); figures noisy"
        )
    rec = Record(
        id=rid,
        ours_s=ours.median_s,
        baseline=baseline_label,
        baseline_s=base.median_s,
        ratio=r,
        peak_rss_mib=ours.peak_rss,
        target=target.text if target else None,
        passed=target.check(r, ours.peak_rss) if target else None,
        note="; ".join(notes),
        extra={
            "runs": [len(ours.seconds), len(base.seconds)],
            "ours_runs_s": [round(x, 6) for x in ours.seconds],
            "baseline_runs_s": [round(x, 6) for x in base.seconds],
            "baseline_peak_rss_mib": base.peak_rss,
            "cpu_busy_before_rounds": max(ours.busy) if ours.busy else None,
            # CPU seconds of each measuring process over the clocked span: on a shared,
            # busy machine the wall-clock ratio is noisy, this one much less.
            "ours_cpu_s": ours.median_cpu_s,
            "baseline_cpu_s": base.median_cpu_s,
            "cpu_ratio": ratio(ours.median_cpu_s, base.median_cpu_s),
            "ours_runs_cpu_s": [round(x, 6) for x in ours.cpu_seconds],
            "baseline_runs_cpu_s": [round(x, 6) for x in base.cpu_seconds],
            "ours_info": ours.info,
            "baseline_info": base.info,
        },
    )
    cpu_r = rec.extra["cpu_ratio"]
    log(
        f"  -> ours {fmt_s(rec.ours_s)}, {baseline_label} {fmt_s(rec.baseline_s)}, "
        f"ratio {rec.ratio if rec.ratio is None else round(rec.ratio, 3)} "
        f"(CPU ratio {'-' if cpu_r is None else round(cpu_r, 3)}) "
        f"({time.perf_counter() - t0:.0f} s){' ' + rec.note if rec.note else ''}"
    )
    return rec


def whole_process_record(
    ctx: Context, rid: str, ours_code: str, base_code: str, baseline_label: str, note: str
) -> Record | None:
    """Ours and a baseline as whole ``python -c`` processes (start-up and imports included)."""
    if not ctx.wants(rid):
        return None
    log(f"{rid}: whole processes ...")
    t0 = time.perf_counter()
    ours, base = Series(), Series()
    for _ in range(ctx.repeats()):
        for series, code in ((ours, ours_code), (base, base_code)):
            if series.error:
                continue
            try:
                s, rss = run_process([ctx.ours_python, "-c", code])
            except NotMeasuredError as exc:
                series.error = str(exc)
                continue
            series.seconds.append(s)
            series.rss_mib.append(rss)
    return make_record(rid, ours, baseline_label, base, None, note, t0)


def cold_records(ctx: Context) -> list[Record | None]:
    c = ctx.path("c")
    ours_md = f"from zstack_analyzer import open_image\nwith open_image({c!r}) as r: r.metadata(0)"
    base_md = (
        "import tifffile, xml.etree.ElementTree as ET\n"
        f"with tifffile.TiffFile({c!r}) as tf: s = tf.series[0].shape; x = tf.ome_metadata\n"
        "ET.fromstring(x)"
    )
    return [
        whole_process_record(
            ctx,
            "import",
            "import zstack_analyzer",
            "import tifffile",
            "python -c 'import tifffile'",
            "whole process, interpreter start-up included; no target set",
        ),
        whole_process_record(
            ctx,
            "metadata-cold/c",
            ours_md,
            base_md,
            "python -c tifffile metadata",
            "whole process (what `zstack info` costs): start-up, imports incl. lazy ones, "
            "metadata of c; no target set",
        ),
    ]


def metadata_real_czi(ctx: Context) -> Record | None:
    """Open + metadata of every real CZI of the corpus, ours vs pylibCZIrw's metadata dict.

    Why per file: the real files differ (a 2 kB XML, a 590 kB one); the record's
    ratio is the median of the per-file ratios, each from alternating fresh
    processes like every other record.
    """
    rid = "metadata-real/czi"
    if not ctx.wants(rid):
        return None
    files = sorted((ctx.testdata / "czi").glob("*.czi"))
    if not files:
        log(f"{rid}: no CZI files under {ctx.testdata}: not measured")
        return None
    log(f"{rid}: {len(files)} files ...")
    t0 = time.perf_counter()
    per_file: dict[str, dict[str, float | None]] = {}
    ratios: list[float] = []
    ours_medians: list[float] = []
    base_medians: list[float] = []
    rss: list[float] = []
    busy: list[float] = []
    for path in files:
        args = {"path": str(path), "preimport": CZI_MODULES}
        n = 1 if ctx.quick else 5
        ours, base = compare(
            Side("ours", ctx.ours_python, "ours_metadata", args, n),
            Side("pylibCZIrw", ctx.ours_python, "czi_metadata_dict", args, n),
            warm_paths=[path],
        )
        r = ratio(ours.median_s, base.median_s)
        per_file[path.name] = {
            "ours_s": ours.median_s,
            "baseline_s": base.median_s,
            "ratio": r,
            "cpu_ratio": ratio(ours.median_cpu_s, base.median_cpu_s),
        }
        if r is not None and ours.median_s is not None and base.median_s is not None:
            ratios.append(r)
            ours_medians.append(ours.median_s)
            base_medians.append(base.median_s)
        if ours.peak_rss is not None:
            rss.append(ours.peak_rss)
        log(
            f"  {path.name}: ours {fmt_s(ours.median_s)}, pylibCZIrw {fmt_s(base.median_s)}, ratio {r}"
        )
    median = statistics.median(ratios) if ratios else None
    target = Target("median per-file ratio <= 1.0", max_ratio=1.0)
    rec = Record(
        id=rid,
        ours_s=statistics.median(ours_medians) if ours_medians else None,
        baseline="pylibCZIrw open_czi + metadata dict",
        baseline_s=statistics.median(base_medians) if base_medians else None,
        ratio=median,
        peak_rss_mib=max(rss) if rss else None,
        target=target.text,
        passed=target.check(median, max(rss) if rss else None),
        note=(
            f"median over {len(ratios)} real CZI files of {ctx.testdata}; ours = open_image + "
            "metadata(0); times shown are medians of the per-file medians"
            + (
                f"; machine busy: others used up to {max(busy):.0%} of the cores before a "
                "round; figures noisy"
                if busy and max(busy) > QUIET_BUSY
                else ""
            )
        ),
        extra={"per_file": per_file},
    )
    log(f"  -> median ratio {median} ({time.perf_counter() - t0:.0f} s)")
    return rec


def issue3(ctx: Context) -> list[Record | None]:
    py, peer = ctx.ours_python, ctx.peer_python
    c, d, e = ctx.path("c"), ctx.path("d"), ctx.path("e")
    n_bioio = 3
    out: list[Record | None] = cold_records(ctx)
    out.append(
        measured(
            "metadata/c",
            Side(
                "ours",
                py,
                "ours_metadata",
                {"path": c, "preimport": modules("c")},
                ctx.repeats(),
            ),
            Side(
                "tifffile",
                py,
                "tifffile_metadata",
                {"path": c, "preimport": modules("c")},
                ctx.repeats(),
            ),
            Target("ratio <= 1.3", max_ratio=1.3),
            warm_keys=["c"],
            ctx=ctx,
            note="baseline: TiffFile + series shape + OME channels/voxel via ElementTree",
        )
    )
    out.append(
        measured(
            "metadata/d",
            Side(
                "ours",
                py,
                "ours_metadata",
                {"path": d, "preimport": modules("d")},
                ctx.repeats("d"),
            ),
            Side(
                "pylibCZIrw",
                py,
                "czi_metadata",
                {"path": d, "preimport": modules("d")},
                ctx.repeats("d"),
            ),
            Target("ratio <= 1.3", max_ratio=1.3),
            warm_keys=["d"],
            ctx=ctx,
            note="baseline: open_czi + total_bounding_box + metadata dict (channels, scaling)",
        )
    )
    out.append(metadata_real_czi(ctx))
    out.append(
        measured(
            "metadata-vs-bioio/c",
            Side(
                "ours",
                py,
                "ours_metadata",
                {"path": c, "preimport": modules("c")},
                ctx.repeats(),
            ),
            peer_side(
                "bioio",
                peer,
                "bioio_metadata",
                {"path": c, "preimport": modules("c")},
                ctx.repeats(slow_peer=n_bioio),
            ),
            Target("ratio <= 0.125 (8x faster)", max_ratio=0.125),
            warm_keys=["c"],
            ctx=ctx,
            note=f"bioio: BioImage + dims + physical_pixel_sizes + channel_names, median of {n_bioio} (slow peer)",
        )
    )
    out.append(
        measured(
            "lazy-open/c",
            Side(
                "ours",
                py,
                "ours_lazy_open",
                {"path": c, "preimport": modules("c", lazy=True)},
                ctx.repeats(),
            ),
            Side(
                "tifffile open",
                py,
                "tifffile_open",
                {"path": c, "preimport": modules("c")},
                ctx.repeats(),
            ),
            Target("peak RSS < 100 MiB", max_rss=100),
            warm_keys=["c"],
            ctx=ctx,
            note="ours: ImageLoader.load_image(lazy=True) until the dask array exists",
        )
    )
    out.append(
        measured(
            "load/e",
            Side(
                "ours",
                py,
                "ours_load",
                {"path": e, "preimport": modules("e", lazy=True)},
                ctx.repeats("e"),
            ),
            Side(
                "decode floor 2 threads",
                py,
                "decode_floor",
                {"path": e, "threads": 2, "preimport": modules("e")},
                ctx.repeats("e"),
            ),
            Target("ratio <= 1.25 (>= 0.8x speed)", max_ratio=1.25),
            warm_keys=["e"],
            ctx=ctx,
            note="floor: imagecodecs deflate (libdeflate) per tile, 2 threads, into one fresh array",
        )
    )
    return out


def peer_side(label: str, peer: str | None, case: str, args: dict[str, Any], repeats: int) -> Side:
    # With no peer venv the child command fails and the record says "not measured".
    return Side(label, peer or "missing-.venv-bench-python", case, args, repeats)


def issue4(ctx: Context) -> tuple[list[Record | None], dict[str, float | None]]:
    py, peer = ctx.ours_python, ctx.peer_python
    c, d, e = ctx.path("c"), ctx.path("d"), ctx.path("e")
    mip_spec: dict[str, Any] = {"kind": "thumbnail"}  # the seed's default: Z-MIP composite
    out: list[Record | None] = []
    seed_times: dict[str, float | None] = {}
    out.append(
        measured(
            "slice-thumb/c",
            Side(
                "ours",
                py,
                "ours_render",
                {
                    "path": c,
                    "preimport": modules("c"),
                    "spec": {"kind": "thumbnail", "z": 64, "channels": [0]},
                },
                ctx.repeats(),
            ),
            Side(
                "tifffile page + PNG",
                py,
                "tifffile_page_png",
                {"path": c, "preimport": modules("c"), "z": 64, "c": 0},
                ctx.repeats(),
            ),
            Target("ratio <= 1.3 and peak RSS < 150 MiB", max_ratio=1.3, max_rss=150),
            warm_keys=["c"],
            ctx=ctx,
            note="plane z=64, channel 0, 256 px; baseline: page.asarray + block mean + 1-99% stretch + Pillow PNG",
        )
    )
    rec = measured(
        "mip-thumb/c",
        Side(
            "ours",
            py,
            "ours_render",
            {"path": c, "preimport": modules("c"), "spec": mip_spec},
            ctx.repeats("c"),
        ),
        Side(
            "streamed-read floor",
            py,
            "streamed_mip_floor",
            {"path": c, "preimport": modules("c")},
            ctx.repeats("c"),
        ),
        Target(
            "ratio <= 1.5 and peak RSS <= 256 MiB", max_ratio=1.5, max_rss=256, rss_inclusive=True
        ),
        warm_keys=["c"],
        ctx=ctx,
        note="default thumbnail (Z-MIP composite, 2 ch); floor: readinto a reused buffer + np.maximum + same PNG",
    )
    seed_times["c"] = rec.ours_s if rec else None
    out.append(rec)
    out.append(
        measured(
            "mip-thumb/e",
            Side(
                "ours",
                py,
                "ours_render",
                {"path": e, "preimport": modules("e"), "spec": mip_spec},
                ctx.repeats("e"),
            ),
            Side(
                "decode floor 2 threads",
                py,
                "decode_floor",
                {"path": e, "threads": 2, "preimport": modules("e")},
                ctx.repeats("e"),
            ),
            Target("ratio <= 1.2", max_ratio=1.2),
            warm_keys=["e"],
            ctx=ctx,
            note="floor: every tile decoded (libdeflate, 2 threads) into one fresh array, no MIP/PNG",
        )
    )
    rec = measured(
        "mip-thumb/d",
        Side(
            "ours",
            py,
            "ours_render",
            {"path": d, "preimport": modules("d"), "spec": mip_spec},
            ctx.repeats("d"),
        ),
        Side(
            "pylibCZIrw plane loop",
            py,
            "czi_plane_loop_mip",
            {"path": d, "preimport": modules("d")},
            ctx.repeats("d"),
        ),
        Target("ratio <= 1.0", max_ratio=1.0),
        warm_keys=["d"],
        ctx=ctx,
        note="baseline: doc.read per (C, Z) + np.maximum + same PNG",
    )
    seed_times["d"] = rec.ours_s if rec else None
    out.append(rec)
    n_bioio = 2
    out.append(
        measured(
            "mip-thumb-vs-bioio/c",
            Side(
                "ours",
                py,
                "ours_render",
                {"path": c, "preimport": modules("c"), "spec": mip_spec},
                ctx.repeats("c"),
            ),
            peer_side(
                "bioio",
                peer,
                "bioio_mip",
                {"path": c, "preimport": modules("c")},
                ctx.repeats(slow_peer=n_bioio),
            ),
            None,
            warm_keys=["c"],
            ctx=ctx,
            note=f"bioio: get_image_dask_data('CZYX').max(Z).compute() + same PNG; median of {n_bioio} (slow peer); no target",
        )
    )
    if not ctx.wants("seed-thumb"):
        return out, seed_times
    for key in ("a", "b"):
        log(f"seed table: ours default thumbnail on {key} ...")
        t0 = time.perf_counter()
        ours, _ = compare(
            Side(
                "ours",
                py,
                "ours_render",
                {"path": ctx.path(key), "preimport": modules(key), "spec": mip_spec},
                ctx.repeats(key),
            ),
            Side("none", py, "", {}, 0),
            warm_paths=[ctx.path(key)],
        )
        seed_times[key] = ours.median_s
        log(
            f"  -> {fmt_s(ours.median_s)} ({time.perf_counter() - t0:.0f} s){' ' + ours.error if ours.error else ''}"
        )
    for key in ("a", "b", "c", "d"):
        out.append(
            Record(
                id=f"seed-thumb/{key}",
                ours_s=seed_times.get(key),
                baseline="seed README table (M1 Max, another machine)",
                baseline_s=SEED_THUMB_S[key],
                ratio=ratio(seed_times.get(key), SEED_THUMB_S[key]),
                peak_rss_mib=None,
                target=None,
                passed=None,
                note="orientation only: absolutes across machines, not a same-run ratio",
            )
        )
    return out, seed_times


# ------------------------------------------------------------------ output
def print_table(records: list[Record]) -> None:
    head = ("id", "ours", "baseline", "base time", "ratio", "target", "pass", "peak RSS")
    rows = [head]
    for r in records:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[r.passed]
        if r.ours_s is None:
            verdict = "not measured"
        rows.append(
            (
                r.id,
                fmt_s(r.ours_s),
                r.baseline,
                fmt_s(r.baseline_s),
                "-" if r.ratio is None else f"{r.ratio:.3f}",
                r.target or "-",
                verdict,
                "-" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f} MiB",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    for n, row in enumerate(rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    notes = [r for r in records if r.note]
    if notes:
        print("\nNotes:")
        for r in notes:
            print(f"  {r.id}: {r.note}")
        for r in records:
            for key in ("p99_s", "requests_per_s", "throughput_mb_s", "baseline_throughput_mb_s"):
                if key in r.extra and r.extra[key] is not None:
                    print(f"  {r.id}: {key} = {r.extra[key]:.4g}")


def median_rounds(rounds: list[list[Record]]) -> list[Record]:
    """Per record id, the round whose ratio is the median of its rounds (the lower middle).

    Why a whole round's record and not medians of each field: ours and the
    baseline of one round were measured side by side; the record keeps that
    pair and lists every round's ratio in ``round_ratios``.
    """
    if len(rounds) == 1:
        return rounds[0]
    by_id: dict[str, list[Record]] = {}
    for found in rounds:
        for rec in found:
            by_id.setdefault(rec.id, []).append(rec)
    out: list[Record] = []
    for rid in dict.fromkeys(rec.id for found in rounds for rec in found):
        recs = by_id[rid]
        measured_recs = sorted((r for r in recs if r.ratio is not None), key=lambda r: r.ratio or 0)
        chosen = measured_recs[(len(measured_recs) - 1) // 2] if measured_recs else recs[-1]
        chosen.extra["round_ratios"] = [r.ratio for r in recs]
        if measured_recs:
            chosen.note = "; ".join(
                filter(None, [chosen.note, f"median ratio of {len(recs)} rounds"])
            )
        out.append(chosen)
    return out


def run_provenance() -> dict[str, Any]:
    """When the figures were measured and on which code (a stale record is a defect: issue 22)."""
    from datetime import UTC, datetime

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "src", "bench"))
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "HEAD") or None,
        "code_dirty": dirty,
    }


def print_seed_table(seed_times: dict[str, float | None]) -> None:
    print(
        "\nSeed README thumbnail times (M1 Max) beside ours on this 2-core VM (default thumbnail):"
    )
    print("  file  seed   ours")
    for key, label in (
        ("a", "TIFF 50 MB"),
        ("b", "TIFF 500 MB"),
        ("c", "TIFF 2 GB"),
        ("d", "CZI 100 MB"),
    ):
        print(f"  {label:<12} {SEED_THUMB_S[key]:.1f} s  {fmt_s(seed_times.get(key))}")


def write_results(records: list[Record], path: Path, *, merge: bool) -> None:
    """Write the records; with ``merge`` (a partial run) keep the other ids of the file."""
    rows = [r.as_json() for r in records]
    if merge and path.exists():
        fresh = {row["id"] for row in rows}
        old = [row for row in json.loads(path.read_text()) if row.get("id") not in fresh]
        rows = old + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    tmp.replace(path)


def issue14(ctx: Context) -> list[Record | None]:
    """OME-Zarr convert of b (against ome-zarr-py's write_image) and of c (time and RSS)."""
    import shutil
    import tempfile

    out: list[Record | None] = []
    out_dir = tempfile.mkdtemp(prefix="zstack-convert-", dir=str(ctx.data.parent))
    try:
        for key, target in (
            ("b", Target("ratio <= 0.67 and peak RSS <= 512 MiB", 0.67, 512, rss_inclusive=True)),
            ("c", Target("peak RSS <= 512 MiB", max_rss=512, rss_inclusive=True)),
        ):
            args = {"path": ctx.path(key), "preimport": modules(key), "out_dir": out_dir}
            repeats = 1 if ctx.quick else 3
            out.append(
                measured(
                    f"convert/{key}",
                    Side("ours", ctx.ours_python, "ours_convert", args, repeats),
                    Side(
                        "ome-zarr-py write_image",
                        ctx.ours_python,
                        "ome_zarr_py_convert",
                        args,
                        # c: our time and RSS are the figures; write_image of c did not
                        # finish within the 600 s child timeout when tried (2026-12-01).
                        repeats if key == "b" else 0,
                    ),
                    target,
                    warm_keys=[key],
                    ctx=ctx,
                    note=(
                        "NGFF 0.4 (zarr v2), one chunk per plane, 2x levels down to <= 512 px, "
                        "Blosc LZ4 on both sides; baseline reads tifffile's zarr store through "
                        "dask; median of 3"
                        + ("" if key == "b" else "; c: ours only (baseline exceeds 600 s)")
                    ),
                )
            )
            for child in Path(out_dir).iterdir():
                shutil.rmtree(child, ignore_errors=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if ctx.wants("zarr-chunk/service"):
        import zarr_bench

        out.extend(zarr_bench.issue14_service(ctx.path("a")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=REPO.parent / "zstack-bench-data")
    ap.add_argument(
        "--make-data", type=Path, default=REPO.parent / "shared" / "bench" / "make_data.py"
    )
    ap.add_argument("--peer-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    ap.add_argument(
        "--only",
        default="",
        help="comma list of groups (issue3, issue4, issue5, issue17) and/or record id prefixes (load/e, mip-thumb)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="one run per side (smoke test, not for results)"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the chosen records this many times and keep, per record, the round with "
        "the median ratio (a shared machine's load moves single rounds; issue 22)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--files",
        default=",".join(FILES),
        help="comma list of the data files the chosen records need (generated if missing and "
        "warmed); default all: a,b,c,d,e. Empty for records that read none (search/)",
    )
    args = ap.parse_args()

    tokens = set(filter(None, args.only.split(",")))
    ids = frozenset(tokens - ALL_GROUPS)
    groups = (tokens & ALL_GROUPS) | {
        g
        for g, prefixes in GROUP_IDS.items()
        for i in ids
        if i.startswith(prefixes) or any(p.startswith(i) for p in prefixes)
    }
    groups = groups or ALL_GROUPS
    peer = args.peer_python if Path(args.peer_python).exists() else None
    if peer is None:
        log(f"peer venv missing ({args.peer_python}): bioio records will say not measured")
    ctx = Context(
        data=args.data.resolve(),
        ours_python=sys.executable,
        peer_python=peer,
        quick=args.quick,
        wanted=ids,
    )
    keys = {k for k in args.files.split(",") if k}
    unknown = keys - set(FILES)
    if unknown:
        raise SystemExit(f"--files: unknown keys {sorted(unknown)} (known: {','.join(FILES)})")
    ensure_data(ctx.data, args.make_data, keys)
    log(
        f"warming the page cache ({warm(ctx.path(k) for k in sorted(keys)):.1f} s for {','.join(sorted(keys)) or 'no files'})"
    )

    t0 = time.perf_counter()
    records: list[Record] = []
    seed_times: dict[str, float | None] = {}
    steps: list[tuple[str, Callable[[], None]]] = []

    def run3() -> None:
        records.extend(r for r in issue3(ctx) if r is not None)

    def run4() -> None:
        recs, times = issue4(ctx)
        records.extend(r for r in recs if r is not None)
        seed_times.update(times)

    def run5() -> None:
        import service_bench

        records.extend(
            service_bench.issue5(ctx.path("a"), ctx.path("b"), ctx.path("c"), quick=ctx.quick)
        )

    def run13() -> None:
        import archive_bench

        records.extend(
            archive_bench.issue13(ctx.data, ctx.ours_python, quick=ctx.quick, wants=ctx.wants)
        )

    def run14() -> None:
        records.extend(r for r in issue14(ctx) if r is not None)

    def run16() -> None:
        import formats_bench

        records.extend(r for r in formats_bench.issue16(ctx, measured, Target) if r is not None)

    def run17() -> None:
        import search_bench

        records.extend(search_bench.issue17(ctx.path("b"), quick=ctx.quick, wants=ctx.wants))

    def run23() -> None:
        import auth_bench

        records.extend(auth_bench.issue23(quick=ctx.quick))

    def run24() -> None:
        import annotations_bench

        records.extend(annotations_bench.issue24(quick=ctx.quick, cache_dir=ctx.data))

    steps = [
        ("issue3", run3),
        ("issue4", run4),
        ("issue5", run5),
        ("issue13", run13),
        ("issue14", run14),
        ("issue16", run16),
        ("issue17", run17),
        ("issue23", run23),
        ("issue24", run24),
    ]
    failed: list[str] = []
    rounds: list[list[Record]] = []
    provenance = run_provenance()  # the code as the run starts: children import it fresh
    for n in range(max(1, args.rounds)):
        if args.rounds > 1:
            log(f"round {n + 1} of {args.rounds}")
        records.clear()
        for name, step in steps:
            if name in groups:
                try:
                    step()
                except Exception:  # a bug in one group must not lose the others' figures
                    log(f"{name} crashed:\n{traceback.format_exc()}")
                    failed.append(name)
        rounds.append(list(records))
    records[:] = median_rounds(rounds)
    after = run_provenance()
    if (after["commit"], after["code_dirty"]) != (provenance["commit"], provenance["code_dirty"]):
        # Each measuring process imports the working tree when it starts: a commit during
        # the run means records measured different code. Say so; re-run what must be fresh.
        provenance["code_changed_during_run"] = after["commit"]
        log(f"the code changed during the run ({provenance['commit']} -> {after['commit']})")
    for rec in records:
        rec.extra.update(provenance)

    print(
        f"\nzstack-analyzer bench ({platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    print(
        f"data: {ctx.data}; {'QUICK (1 run each)' if ctx.quick else 'median of 5 runs, 3 for work over 1 GB (load/e, MIPs of c and e)'}"
    )
    print(
        "ratio = ours_s / baseline_s from this run (lower is better); peak RSS = ours, imports included\n"
    )
    print_table(records)
    if seed_times:
        print_seed_table(seed_times)
    print(
        f"\ntotal {time.perf_counter() - t0:.0f} s, of which {quiet_waited_s():.0f} s waiting for "
        "other processes to leave the cores"
    )
    if failed:
        print(f"\nCRASHED (see stderr): {', '.join(failed)}; their records are missing")
    if not args.quick and args.out:
        write_results(records, args.out, merge=bool(tokens))
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
