"""Mutation testing, one module at a time, with only that module's tests and a time budget.

Why per module: mutmut 3 mutates a whole source tree and first runs every selected
test to learn which tests reach which function. On this project's suite that is
far too slow to do at once, and most tests never touch a given module. So each
module gets its own scratch folder under ``.mutate/<module>/`` with a generated
``[tool.mutmut]`` section that mutates only that file and runs only the tests
``scripts/mutate.toml`` maps to it; mutmut is stopped when the module's budget
runs out, and the mutants it did not reach are reported as not run.

The score of a module is killed / (mutants run - mutants judged equivalent).
Equivalent mutants (a change no behaviour can observe) are listed with a reason
in ``scripts/mutate.toml``; see docs/mutation-scores.md.

Usage::

    python scripts/mutate.py                       # every module of scripts/mutate.toml
    python scripts/mutate.py batch/walk.py         # one module
    python scripts/mutate.py --survivors batch/walk.py   # and list its survivors
    python scripts/mutate.py --report-only         # scores of the last runs, no mutation
    python scripts/mutate.py --resume --kill-tests-only service/ranged.py  # see the option
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "scripts" / "mutate.toml"
SCRATCH = ROOT / ".mutate"
PACKAGE = "zstack_analyzer"

# mutmut's exit-code meanings (mutmut.stats.status_by_exit_code), folded into our columns.
_KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # a failing test, a timeout or a type error kills
_SURVIVED = {0}
_NO_TESTS = {5, 33}
_PYTEST_ARGS = [
    *("-p", "no:xdist", "-p", "no:cacheprovider", "--timeout=120"),
    *("-p", "no:napari", "-p", "no:napari-plugin-engine", "-p", "no:npe2"),
]


@dataclass
class Score:
    """Counts of one module's mutants after a run."""

    module: str
    total: int
    killed: int
    survived: list[str]
    no_tests: list[str]
    not_run: int
    unrun: list[str]
    equivalent: int
    seconds: float

    @property
    def counted(self) -> int:
        """Mutants that ran and are not judged equivalent: the score's denominator."""
        return self.killed + len(self.survived) + len(self.no_tests) - self.equivalent

    @property
    def percent(self) -> float:
        """Killed share of the non-equivalent mutants that ran."""
        return 100.0 * self.killed / self.counted if self.counted else 100.0


def _slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def _workdir(module: str, tests: list[str], *, resume: bool, isolation: str = "fork") -> Path:
    """Scratch folder whose pyproject mutates ``module`` only, testing with ``tests`` only.

    With ``resume`` the last run's mutants and results are kept (tests are copied anew).
    ``isolation`` is mutmut's ``process_isolation``: "forkserver" for modules whose tests
    use obstore, whose Rust runtime does not survive a fork (see :func:`main`).
    """
    work = SCRATCH / _slug(module)
    if work.exists() and not resume:
        shutil.rmtree(work)
    if not work.exists():
        work.mkdir(parents=True)
        (work / "src").symlink_to(ROOT / "src")
        (work / "tests").symlink_to(ROOT / "tests")
    ours = (ROOT / "pyproject.toml").read_text("utf-8")
    section = (
        "\n[tool.mutmut]\n"
        f'source_paths = ["src/{PACKAGE}"]\n'
        f'only_mutate = ["src/{PACKAGE}/{module}"]\n'
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        # xdist and the cache would fight mutmut's own forking; napari's pytest plugins (a
        # test dependency of the viewer checks) warn at import, which our filterwarnings=error
        # turns into a failed start when pytest runs inside mutmut's process.
        f"pytest_add_cli_args = {json.dumps(_PYTEST_ARGS)}\n"
        "use_git_change_detection = false\n"
        # A mutant that makes the tests hang (a timeout counts as killed) should not take
        # 15x the tests' own time of a scarce CPU: 3x, plus 5 s.
        "timeout_multiplier = 3.0\ntimeout_constant = 5.0\n"
        f'process_isolation = "{isolation}"\n'
    )
    (work / "pyproject.toml").write_text(ours + section, "utf-8")
    # Made now, so that PYTHONPATH names an existing folder at start-up: Python caches a
    # missing one as "no finder", and the tests would then import the unmutated package.
    (work / "mutants" / "src").mkdir(parents=True, exist_ok=True)
    return work


def _run(
    module: str,
    tests: list[str],
    budget: float,
    names: list[str],
    *,
    resume: bool,
    isolation: str = "fork",
    children: int = 1,
) -> float:
    """Run mutmut for ``module`` for at most ``budget`` seconds; return the time it took.

    ``names`` (mutant names or patterns) restrict the run: a module's ``only`` functions, or
    on a resumed run the last run's survivors.
    """
    if resume:
        _keep_kills(module)
    work = _workdir(module, tests, resume=resume, isolation=isolation)
    env = dict(os.environ, CI="true", PYTHONPATH=str(work / "mutants" / "src"))
    command = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run"]
    command += ["--max-children", str(children)]
    command += names
    start = time.monotonic()
    log = (work / "mutmut.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        print(f"  {module}: budget of {budget:.0f} s spent; stopping mutmut", flush=True)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        log.close()
    return time.monotonic() - start


def _meta(module: str) -> Path:
    return SCRATCH / _slug(module) / "mutants" / "src" / PACKAGE / (module + ".meta")


def _codes(module: str) -> dict[str, int | None] | None:
    """Exit code of every mutant of ``module``, kills of earlier runs included.

    A resumed run may forget what the run before it killed (mutmut starts over when the
    tests change); the source is the same, and more tests never revive a killed mutant,
    so a kill recorded in ``.meta.killed`` stands.
    """
    meta = _meta(module)
    if not meta.exists():
        return None
    codes: dict[str, int | None] = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    kept = meta.with_suffix(".meta.killed")
    if kept.exists():
        for name, code in json.loads(kept.read_text("utf-8")).items():
            if name in codes and codes[name] not in _KILLED:
                codes[name] = code
    return codes


def _keep_kills(module: str) -> None:
    """Before a resumed run: remember every kill so far (see :func:`_codes`)."""
    codes = _codes(module)
    if codes is not None:
        killed = {k: v for k, v in codes.items() if v in _KILLED}
        _meta(module).with_suffix(".meta.killed").write_text(json.dumps(killed), "utf-8")


def _names(module: str, only: list[str]) -> list[str]:
    """Name patterns (for mutmut) of the functions ``only`` lists (x_name*, xǁClassǁmethod*)."""
    return [f"{PACKAGE}.{_slug(module)}.{pattern}" for pattern in only]


def _score(
    module: str, equivalent: dict[str, str], seconds: float, only: list[str]
) -> Score | None:
    codes = _codes(module)
    if codes is None:
        return None
    if only:
        patterns = _names(module, only)
        codes = {k: v for k, v in codes.items() if any(fnmatch(k, p) for p in patterns)}
    survived = sorted(k for k, v in codes.items() if v in _SURVIVED)
    no_tests = sorted(k for k, v in codes.items() if v in _NO_TESTS)
    killed = sum(1 for v in codes.values() if v in _KILLED)
    known = _KILLED | _SURVIVED | _NO_TESTS
    unrun = sorted(k for k, v in codes.items() if v not in known)
    odd = Counter(v for v in codes.values() if v is not None and v not in known)
    if odd:
        print(f"  {module}: unclassified exit codes {dict(odd)} (counted as not run)")
    judged = sum(1 for name in survived + no_tests if name in equivalent)
    return Score(module, len(codes), killed, survived, no_tests, len(unrun), unrun, judged, seconds)


def _print(scores: list[Score]) -> None:
    print()
    print(
        f"{'module':32} {'total':>5} {'killed':>6} {'surv':>5} {'notest':>6} {'equiv':>5} "
        f"{'notrun':>6} {'score':>7} {'secs':>6}"
    )
    for s in scores:
        print(
            f"{s.module:32} {s.total:5d} {s.killed:6d} {len(s.survived):5d} {len(s.no_tests):6d} "
            f"{s.equivalent:5d} {s.not_run:6d} {s.percent:6.1f}% {s.seconds:6.0f}"
        )


def main() -> int:
    """Run (or only report) the modules named on the command line, or every configured one."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "modules", nargs="*", help="paths under src/zstack_analyzer, e.g. batch/walk.py"
    )
    parser.add_argument(
        "--budget", type=float, help="seconds per module (default: the module's own)"
    )
    parser.add_argument("--survivors", action="store_true", help="list surviving mutants")
    parser.add_argument(
        "--only", action="append", help="mutmut function pattern (x_name*), instead of the entry's"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="without the kill_tests (the score before them)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="run again only the last run's survivors and unrun"
    )
    parser.add_argument(
        "--kill-tests-only",
        action="store_true",
        help="only the kill_tests (for modules whose existing tests are too slow per mutant: "
        "what these kill is a lower bound of the score with every test)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="score the last runs, run nothing"
    )
    parser.add_argument("--json", type=Path, help="also write the scores to this file")
    parser.add_argument(
        "--max-children",
        type=int,
        default=1,
        help="mutants tested at once (default 1; each is a forked pytest run under nice)",
    )
    args = parser.parse_args()

    config = tomllib.loads(CONFIG.read_text("utf-8"))
    modules: dict[str, dict[str, object]] = config["modules"]
    # Equivalent mutants: the shared [equivalent] table, and each module's own
    # [modules."<path>".equivalent] sub-table (new entries go there: no merge conflicts).
    equivalent: dict[str, str] = dict(config.get("equivalent", {}))
    for entry in config["modules"].values():
        equivalent.update(entry.get("equivalent", {}))
    default_budget = float(config.get("budget_seconds", 600))
    chosen = args.modules or list(modules)
    unknown = [m for m in chosen if m not in modules]
    if unknown:
        parser.error(f"not in {CONFIG.name}: {', '.join(unknown)}")

    scores: list[Score] = []
    for module in chosen:
        entry = modules[module]
        tests = [str(t) for t in entry["tests"]]  # type: ignore[attr-defined]
        if args.kill_tests_only:
            tests = []
        if not args.baseline:
            tests += [str(t) for t in entry.get("kill_tests", [])]  # type: ignore[attr-defined]
        budget = args.budget or float(entry.get("budget_seconds", default_budget))  # type: ignore[arg-type]
        only = [str(p) for p in entry.get("only", [])]  # type: ignore[attr-defined]
        if args.only:
            only = args.only
        seconds = 0.0
        names: list[str] = _names(module, only)
        if args.resume:
            last = _score(module, equivalent, 0.0, only)
            names = [] if last is None else [*last.survived, *last.no_tests, *last.unrun]
            if last is not None and not names:
                print(f"  {module}: nothing left to run")
        if not args.report_only and (not args.resume or names):
            print(
                f"mutating {module} with {len(tests)} test path(s), budget {budget:.0f} s",
                flush=True,
            )
            # obstore (S3 and its local store) runs requests on a Rust runtime that hangs in a
            # child forked after the parent used it: mutmut's default forks every mutant from
            # the process that ran the tests once, so each such mutant would "time out" (be
            # counted killed). Such modules set process_isolation = "forkserver".
            isolation = str(entry.get("process_isolation", "fork"))
            seconds = _run(
                module,
                tests,
                budget,
                names,
                resume=args.resume,
                isolation=isolation,
                children=args.max_children,
            )
        score = _score(module, equivalent, seconds, only)
        if score is None:
            print(f"  {module}: no mutmut results (see .mutate/{_slug(module)}/mutmut.log)")
            continue
        scores.append(score)
        if args.survivors:
            for name in score.survived + score.no_tests:
                mark = (
                    "equivalent"
                    if name in equivalent
                    else ("no tests" if name in score.no_tests else "survived")
                )
                print(f"  {mark:10} {name}")
    _print(scores)
    if args.json:
        args.json.write_text(json.dumps([s.__dict__ for s in scores], indent=1), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
