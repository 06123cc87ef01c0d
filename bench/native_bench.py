"""Issue 25, native readers: a DeltaVision file's metadata and one plane, ours against Bio-Formats.

Bio-Formats as a facility runs it on one file: ``showinf`` (``java -cp <jar>
loci.formats.tools.ImageInfo``) as a process, ``-nopix`` for the metadata and
``-range k k`` for one plane, with ``-no-upgrade`` (no network check). Ours:

- ``native/dv-metadata-first``: a fresh Python process that imports the
  library, opens the file and builds its metadata (whole process), against
  ``showinf -nopix`` (whole process);
- ``native/dv-metadata-warm``: the same open + metadata in a process that has
  done it once (median of 50 calls), against the same ``showinf -nopix``;
- ``native/dv-plane-first`` / ``native/dv-plane-warm``: open + metadata + one
  plane (section 25 of 34), against ``showinf -range 25 25``. Headless, showinf
  reads the plane and then fails to open its image viewer (HeadlessException):
  the run counts when it printed "Read 1/1 planes", and its time includes
  reading that plane and nothing after but the exception.

Fresh processes alternate (ours, Bio-Formats) for 5 rounds after a page-cache
warm-up; ratios are ``ours / Bio-Formats`` from the same run (lower is better).
Our sources are byte-compiled first, as an installed package's are (pip compiles
a wheel's modules at install): with ``PYTHONDONTWRITEBYTECODE=1`` (this machine's
environment) and a source tree on ``PYTHONPATH``, every fresh process would
otherwise compile our ~60 modules from source, about a quarter of its CPU time.

Run: ``.venv/bin/python bench/native_bench.py [--file toxo.dv] [--quick]``; it
merges its records into bench/results/latest.json unless ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import NotMeasuredError, Record, fmt_s, log, ratio, wait_quiet, warm

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_FILE = REPO.parent / "shared" / "testdata-more" / "dv" / "toxo.dv"
PLANE = 25  # section index: Bio-Formats' plane 25 = (t 0, c 1, z 8) in toxo.dv's ZTW order
ROUNDS = 5
WARM_CALLS = 50

_OURS_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from zstack_analyzer import open_image
path, plane = sys.argv[1], int(sys.argv[2])
with open_image(path) as image:
    md = image.metadata()
    if plane >= 0:
        info = image.scenes()[0]
        z = plane % info.size_z; c = plane // info.size_z % info.size_c
        image.read_plane(0, 0, c, z)
print(json.dumps({"inside_s": time.perf_counter() - t0, "shape": list(md.shape)}))
"""


def _jar() -> Path:
    sys.path.insert(0, str(REPO / "scripts"))
    import bioformats_ref  # type: ignore[import-not-found]

    try:
        return Path(bioformats_ref.jar_path())
    except bioformats_ref.BioFormatsUnavailable as exc:
        raise NotMeasuredError(f"Bio-Formats: {exc}") from exc


def _timed(cmd: list[str], *, must_print: str | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, all threads) of a whole process.

    A non-zero exit counts only when ``must_print`` appeared in its output.
    Why CPU too: on a shared, busy machine a preempted process's wall clock runs
    on and its CPU clock does not; the JVM's JIT and GC threads show there.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if must_print is not None:
        if must_print not in stdout:
            raise NotMeasuredError(f"{cmd[:4]}: did not print {must_print!r}: {stderr[-300:]}")
    elif proc.returncode != 0:
        raise NotMeasuredError(f"{cmd[:4]}: exit {proc.returncode}: {stderr[-300:]}")
    return seconds, usage.ru_utime + usage.ru_stime


def _showinf(jar: Path, path: Path, plane: int | None) -> list[str]:
    cmd = ["java", "-Djava.awt.headless=true", "-cp", str(jar), "loci.formats.tools.ImageInfo"]
    cmd += ["-no-upgrade", str(path)]
    return [*cmd, "-nopix"] if plane is None else [*cmd, "-range", str(plane), str(plane)]


def _warm_calls(path: Path, plane: int | None, calls: int) -> float:
    """Median seconds of open + metadata (+ one plane) in this process, after one call."""
    from zstack_analyzer import open_image

    def once() -> None:
        with open_image(path) as image:
            image.metadata()
            if plane is not None:
                info = image.scenes()[0]
                image.read_plane(0, 0, plane // info.size_z % info.size_c, plane % info.size_z)

    once()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _byte_compile_ours() -> None:
    """Write the bytecode of the zstack_analyzer that the child processes import (module docstring)."""
    import compileall

    # Asked of a child: the package its PYTHONPATH finds, without importing it here.
    done = subprocess.run(
        [sys.executable, "-c", "import zstack_analyzer; print(zstack_analyzer.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    package = Path(done.stdout.strip()).parent
    if not compileall.compile_dir(package, quiet=1):
        raise NotMeasuredError(f"could not byte-compile {package}")


def native_dv(path: Path, *, quick: bool = False) -> list[Record]:
    """The four records of this module (see the module docstring)."""
    jar = _jar()
    _byte_compile_ours()
    rounds = 1 if quick else ROUNDS
    python = sys.executable
    out: list[Record] = []
    for kind, plane in (("metadata", None), ("plane", PLANE)):
        ours_first: list[float] = []
        ours_cpu: list[float] = []
        theirs: list[float] = []
        theirs_cpu: list[float] = []
        for _ in range(rounds):
            wait_quiet()
            warm([path])
            ours_cmd = [python, "-c", _OURS_CHILD, str(path), str(-1 if plane is None else plane)]
            wall, cpu = _timed(ours_cmd)
            ours_first.append(wall)
            ours_cpu.append(cpu)
            warm([path])
            wall, cpu = _timed(
                _showinf(jar, path, plane),
                must_print=None if plane is None else "Read 1/1 planes",
            )
            theirs.append(wall)
            theirs_cpu.append(cpu)
        baseline = statistics.median(theirs)
        baseline_cpu = statistics.median(theirs_cpu)
        first = statistics.median(ours_first)
        first_cpu = statistics.median(ours_cpu)
        warm_s = _warm_calls(path, plane, 5 if quick else WARM_CALLS)
        what = "showinf -nopix" if plane is None else f"showinf -range {plane} {plane}"
        for label, ours in (("first", first), ("warm", warm_s)):
            r = ratio(ours, baseline)
            out.append(
                Record(
                    id=f"native/dv-{kind}-{label}",
                    ours_s=ours,
                    baseline=f"Bio-Formats 7.3.1 {what} (a java process per file)",
                    baseline_s=baseline,
                    ratio=r,
                    peak_rss_mib=None,
                    target="ratio < 1 (the native path pays)",
                    passed=None if r is None else r < 1,
                    note=(
                        f"{path.name}; ours {'a fresh python process: import + open + metadata' if label == 'first' else f'open + metadata in a warm process (median of {WARM_CALLS})'}"
                        + ("" if plane is None else f" + plane {plane}")
                        + f"; medians of {rounds} alternating rounds; our sources byte-compiled"
                    ),
                    extra={
                        "ours_runs_s": ours_first if label == "first" else None,
                        "baseline_runs_s": theirs,
                        "ours_cpu_s": first_cpu if label == "first" else None,
                        "baseline_cpu_s": baseline_cpu,
                        "cpu_ratio": ratio(first_cpu, baseline_cpu) if label == "first" else None,
                    },
                )
            )
            log(
                f"{out[-1].id}: ours {fmt_s(ours)} Bio-Formats {fmt_s(baseline)} ratio {r}; "
                f"CPU ours {fmt_s(first_cpu) if label == 'first' else '-'} Bio-Formats {fmt_s(baseline_cpu)}"
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if not args.file.is_file():
        log(f"no such file: {args.file}")
        return 2
    os.environ.setdefault("PYTHONPATH", str(REPO / "src"))
    records = native_dv(args.file, quick=args.quick)
    print(json.dumps([r.as_json() for r in records], indent=2, default=str))
    if not args.quick:
        from run import RESULTS, write_results

        write_results(records, RESULTS, merge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
