"""Run a module's kill tests against mutmut's mutants in one process, one mutant after another.

Why: on the shared, loaded machine mutmut spends most of each mutant's time starting pytest
(a fork, collection, plugins, fixtures) while the CPU share is small; for readers/lif.py that
was 5 to 10 s a mutant. mutmut's trampoline reads ``MUTANT_UNDER_TEST`` at every call, so one
process that has imported the mutated package once can switch mutants by setting it: the
same test functions, the same mutant code, about 30 times faster (docs/mutation-scores.md,
fifth round). It complements mutmut, it does not replace it: mutmut's own verdicts stay the
method; this runs the mutants it did not reach, and re-runs its survivors.

What it does: imports the mutants of ``.mutate/<module>/mutants/src`` (a run of
``scripts/mutate.py`` must have made them), collects the test functions of the given test
modules with their ``parametrize`` cases (fixtures: ``tmp_path`` and ``testdata`` only),
checks that every case passes with no mutant, then for each mutant named runs the cases in
order until one raises (killed) or all pass (survived). Unlike pytest, warnings do not fail
a case, so a kill here is never owed to a warning. A mutant that hangs hangs the run.

Usage::

    python scripts/mutate_inprocess.py readers/lif.py names.txt out.json
        tests.mutation_kills.test_lif_reads tests.mutation_kills.test_lif_layouts

(one command line).

``names.txt`` lists mutant names (one a line); ``out.json`` gets {name: [verdict, case]}.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent

Case = tuple[str, "Callable[..., object]", dict[str, Any]]


def _cases(module_names: list[str]) -> list[Case]:
    """Every test function of the modules, once per combination of its parametrize marks."""
    cases: list[Case] = []
    for module_name in module_names:
        module = importlib.import_module(module_name)
        for name, fn in vars(module).items():
            if not name.startswith("test_") or getattr(fn, "__module__", None) != module_name:
                continue
            grids = []
            for mark in getattr(fn, "pytestmark", []):
                if mark.name != "parametrize":
                    continue
                names = mark.args[0]
                keys = [n.strip() for n in names.split(",")] if isinstance(names, str) else names
                rows = [
                    tuple(getattr(v, "values", v)) if len(keys) > 1 else (v,) for v in mark.args[1]
                ]
                grids.append([dict(zip(keys, row, strict=True)) for row in rows])
            for combo in itertools.product(*grids):
                params: dict[str, Any] = {}
                for part in combo:
                    params.update(part)
                cases.append((f"{module_name.rsplit('.', 1)[-1]}::{name}{params}", fn, params))
    return cases


def _run(fn: Callable[..., object], params: dict[str, Any], testdata: Path | None) -> None:
    """Call one case with its fixtures (a fresh ``tmp_path``; the corpus as ``testdata``)."""
    wanted = inspect.signature(fn).parameters
    kwargs = dict(params)
    tmp = None
    if "testdata" in wanted:
        if testdata is None:
            msg = "ZSTACK_TESTDATA is not set"
            raise SystemExit(msg)
        kwargs["testdata"] = testdata
    if "tmp_path" in wanted:
        tmp = Path(tempfile.mkdtemp(prefix="mutate-inprocess-"))
        kwargs["tmp_path"] = tmp
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(**kwargs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    """Verdict of every named mutant; see the module docstring."""
    module, names_file, out_file, *test_modules = sys.argv[1:]
    slug = module.removesuffix(".py").replace("/", ".")
    sys.path[:0] = [str(ROOT / ".mutate" / slug / "mutants" / "src"), str(ROOT)]
    os.environ["MUTANT_UNDER_TEST"] = ""
    mutated = importlib.import_module(f"zstack_analyzer.{slug}")
    if ".mutate" not in str(mutated.__file__):
        msg = f"{mutated.__file__} is not mutmut's copy; run scripts/mutate.py {module} first"
        raise SystemExit(msg)
    corpus = os.environ.get("ZSTACK_TESTDATA")
    testdata = Path(corpus) if corpus else None
    cases = _cases(test_modules)
    for _, fn, params in cases:
        _run(fn, params, testdata)
    print(f"{len(cases)} cases pass with no mutant", flush=True)
    verdicts: dict[str, tuple[str, str | None]] = {}
    for name in Path(names_file).read_text("utf-8").split():
        os.environ["MUTANT_UNDER_TEST"] = name
        start = time.monotonic()
        verdict: tuple[str, str | None] = ("survived", None)
        for case, fn, params in cases:
            try:
                _run(fn, params, testdata)
            except KeyboardInterrupt:
                raise
            except BaseException:  # pytest's failures are BaseExceptions
                verdict = ("killed", case)
                break
        verdicts[name] = verdict
        took = time.monotonic() - start
        print(f"{verdict[0]:8} {name} {verdict[1] or ''} {took:.1f}s", flush=True)
    os.environ["MUTANT_UNDER_TEST"] = ""
    Path(out_file).write_text(json.dumps(verdicts, indent=1), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
