"""One measurement in a fresh process: ``python bench/child.py CASE 'JSON-ARGS'``.

The case's imports and preparation run before the clock; the clock covers the
call and its result only. The process then prints one JSON line with the
seconds, the CPU seconds of the process over the same span (all its threads:
a figure other processes on a shared machine barely move), its own peak RSS
(``VmHWM``, imports included) and the case's evidence.
A case that cannot run (a piece not written yet, a missing package) prints an
``error`` instead, so the run can say "not measured" and go on.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback


def own_peak_rss_mib() -> float:
    """This process's own peak RSS (MiB): ``VmHWM``, the high-water mark of its memory map.

    Why not ``ru_maxrss``: Linux carries the RSS peak of the memory map an
    ``exec`` replaces into the new program's ``ru_maxrss``, and a child started
    by fork or vfork replaces a copy (or the very map) of its parent's. So every
    measuring child of a bench process that had grown (a 100k-record search
    bench run in-process, in an earlier round) reported the parent's peak: all
    records of a ``--rounds 2`` run read 210 MiB, over slice-thumb's 150 MiB
    bound. ``VmHWM`` belongs to the map the program runs in; ``ru_maxrss``
    stays the fallback where there is no ``/proc``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    name, raw_args = sys.argv[1], sys.argv[2]
    args = json.loads(raw_args)
    try:
        from cases import CASES

        work = CASES[name](args)
        c0 = time.process_time()
        t0 = time.perf_counter()
        info = work()
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
        print(json.dumps({"error": f"{type(exc).__name__}: {exc} ({where})"}))
        return 3
    rss_mib = own_peak_rss_mib()
    out = {"seconds": seconds, "cpu_seconds": cpu_seconds, "rss_mib": rss_mib, "info": info}
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
