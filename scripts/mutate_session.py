"""Mutation testing of one module inside one pytest session: collect once, switch mutants.

Why: ``scripts/mutate.py`` drives mutmut, which starts a pytest run (fork, plugins,
collection, every fixture) for each mutant. On this two-core machine that is 0.05 to 1
mutant a second, and most of it is start-up, not the tests: ~70 modules of #22 would take
days. mutmut's trampoline picks the active mutant at every call
(``mutmut.mutation.trampoline.get_mutant_under_test``), so one pytest session that has
collected the module's tests once can run them under mutant after mutant, keeping the
fixtures whose set-up is most of a test's cost.

What keeps the verdicts honest:

* Mutants and their names are mutmut's own (its generator writes ``.mutate/<module>/``
  as ``scripts/mutate.py`` does), and verdicts go into mutmut's ``.meta`` file with
  mutmut's exit codes, so ``scripts/mutate.py --report-only/--survivors`` and the
  ``[equivalent]`` list work unchanged. A kill of an earlier run stands (more tests never
  revive a mutant of unchanged source).
* One addition to mutmut's generator (``scripts/mutate_decorated.py``): the bodies of
  decorated module-level functions are mutated too, so FastAPI route bodies are scored.
  mutmut skips every decorated function; here the trampoline keeps the decorators (and,
  through ``functools.wraps``, the original's signature, annotations and globals, which
  FastAPI reads for dependency injection), its copies carry none (no route is registered
  twice), and the parameter list is not mutated (FastAPI passes every parameter). Such
  mutants are named like any other (``x_upload_image__mutmut_3``). A ``.mutate/<module>``
  generated before this change is reused as it is: delete it to get the route mutants.
* Which tests reach which function is measured in this session, like mutmut's stats run:
  each test once with the ``stats`` mutant, which records every mutated function it calls,
  in this process and in its child processes: mutmut records a call only in the process
  that makes it, so a function that runs only in a child (the Bio-Formats worker, a
  spawned job process) would be "no tests". A ``sitecustomize.py`` beside the mutants
  (children import it at start: they get the mutants' ``PYTHONPATH``) and a hook in this
  process (for forked children) make every other process append the functions it reaches
  to a file of its own while the stats run; each test is credited with what its children
  wrote during it (the runner takes the files after each test; a child that finds its
  file gone reports every function again, so a worker kept across tests credits each). A function is credited once per call, so a loop that one call keeps
  running across tests (a worker's ``serve``, started by a module's fixture) is credited
  to the test that started it only: an entry's ``every_test`` (function patterns, as
  ``only``) runs those functions' mutants against every test that passes with no mutant.
  A test that fails with no mutant is dropped (and listed), never counted as a kill.
* Its tests run in collection order, except that the test that killed the previous mutant
  of the same function runs first (it usually kills the next one too).
* A mutant is killed when one of its tests fails in set-up, call or tear-down, or times out
  (pytest-timeout, 3x the test's clean time plus 10 s, and then again at 10x plus 60 s: a
  loaded machine can overrun the first limit; a timeout counts as killed, as in mutmut).
  Verdicts are saved after every mutant.
* State: after every mutant, every fixture but the session-scoped ones is torn down, so a
  fixture built or dirtied under a mutant is not reused. Every ``--check-every`` mutants
  (and at least five times the clean suite's time apart, so checks cost at most about a
  sixth of the run), and at the end, all tests run again with no mutant; if one fails, the verdicts since the
  last good check are thrown away (reported as not run) and everything is torn down.
* A mutant that hangs where pytest-timeout cannot end it is recorded as a timeout by a
  watchdog (20x its tests' clean time plus 300 s), and the script starts again.
* A mutant that ends the pytest session itself (an error escaping the test protocol, an
  exit from a fixture) leaves its name in ``<meta>.running``; the next run tries it
  first, and a mutant that ends the session twice is recorded as killed (its tests did
  not pass), so it no longer ends every later run without a verdict.
* Tests run in a subprocess (the CLI, a child process of the service) inherit
  ``MUTANT_UNDER_TEST`` and the mutants' ``PYTHONPATH``, as under mutmut.

Usage (several modules, or none for every configured one: one process per module, then
``scripts/mutate.py --report-only`` scores them)::

    python scripts/mutate_session.py service/auth/principal.py [--budget 900]
        [--baseline | --kill-tests-only] [--rerun] [--only 'x_name*' ...]

``--rerun`` runs again the mutants that are not killed (after new tests), except those
judged equivalent in ``mutate.toml``; by default only mutants with no verdict run.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import fnmatch
import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import mutate  # noqa: E402 - our sibling script: the scratch folder and config

KILLED, SURVIVED, NO_TESTS, TIMEOUT = 1, 0, 33, 36
_REAL_STDOUT, _REAL_STDERR = os.dup(1), os.dup(2)  # before pytest's capture replaces them
_GENERATE = """
import multiprocessing, os, sys
from pathlib import Path
sys.path.insert(0, {scripts!r})
import mutate_decorated
mutate_decorated.install()  # route bodies too (see its docstring)
multiprocessing.set_start_method("fork")  # the generator's pool inherits the patch
from mutmut.mutation.trampoline import set_mutant_under_test
from mutmut.utils.file_utils import copy_src_dir, copy_also_copy_files, setup_source_paths
from mutmut.__main__ import create_mutants
set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
copy_src_dir(); copy_also_copy_files(); setup_source_paths()
create_mutants(1)
"""


#: Where child processes write the functions they reach during the stats run, and the pid
#: of the runner (whose own calls mutmut's state records).
_CHILD_STATS, _RUNNER_PID = "ZSTACK_MUTATE_CHILD_STATS", "ZSTACK_MUTATE_RUNNER_PID"
#: Installed in every child (as ``sitecustomize``) and in the runner (for forks): in a process
#: other than the runner, each mutated function reached is appended to ``<folder>/<pid>``.
_CHILD_STATS_HOOK = """
\"\"\"Written by scripts/mutate_session.py: child processes report the mutated functions they reach.\"\"\"
import os


def _install_child_stats():
    folder = os.environ.get("ZSTACK_MUTATE_CHILD_STATS")
    if not folder:
        return
    runner = int(os.environ.get("ZSTACK_MUTATE_RUNNER_PID", "0"))
    import mutmut.mutation.trampoline as trampoline

    original = trampoline.record_trampoline_hit
    seen = set()

    def record(name, caller=None):
        pid = os.getpid()
        if pid == runner:
            return original(name, caller=caller)
        path = os.path.join(folder, str(pid))
        if not os.path.exists(path):  # the runner took it: a new test, report afresh
            seen.clear()
        if (pid, name) not in seen:  # a fork inherits its parent's set: keyed by pid
            seen.add((pid, name))
            with open(path, "a", encoding="utf-8") as out:
                out.write(name + "\\n")
        return None

    trampoline.record_trampoline_hit = record


_install_child_stats()
"""


def _child_stats_reached(folder: Path) -> set[str]:
    """The functions children wrote since the last call (their files are emptied)."""
    names: set[str] = set()
    for file in folder.iterdir():
        names.update(file.read_text("utf-8").split())
        file.unlink()
    return names


def generate(module: str, tests: list[str]) -> Path:
    """The mutants mutmut makes of ``module`` (kept from earlier runs when its source is unchanged)."""
    work = mutate._workdir(module, tests, resume=True)
    subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "-c", _GENERATE.format(scripts=str(ROOT / "scripts"))],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=""),
    )
    return work


class MutantLoop:
    """A pytest plugin that replaces the run loop by the mutant loop described above."""

    def __init__(
        self,
        meta: Path,
        names: list[str],
        budget: float,
        check_every: int,
        every_test: list[str] | None = None,
    ) -> None:
        self.meta = meta
        self.every_test = every_test or []
        self.names = names
        self.budget = budget
        self.check_every = check_every
        self.failed = False
        self.timed_out = False
        self.argv = sys.argv[1:]
        self.log = open(meta.with_suffix(".session.log"), "a", encoding="utf-8")  # noqa: SIM115

    # -- hooks -------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: Any) -> None:
        """Remember that the test being run failed (in any phase)."""
        if report.failed:
            self.failed = True
            if "Timeout" in str(report.longrepr):  # pytest-timeout's "Failed: Timeout >Ns"
                self.timed_out = True

    def pytest_runtestloop(self, session: Any) -> bool:
        """Stats, then every chosen mutant against the tests that reach its function."""
        from mutmut.mutation.trampoline import set_mutant_under_test
        from mutmut.state import state
        from mutmut.utils.format_utils import mangled_name_from_mutant_name

        items = list(session.items)
        started = time.monotonic()
        # Which functions each test reaches, and its clean time.
        reaches: dict[str, list[Any]] = {}
        durations: dict[str, float] = {}
        dropped: list[str] = []
        children = self.meta.parent / "child-stats"
        children.mkdir(exist_ok=True)
        _child_stats_reached(children)
        os.environ[_CHILD_STATS], os.environ[_RUNNER_PID] = str(children), str(os.getpid())
        exec(compile(_CHILD_STATS_HOOK, "<child stats hook>", "exec"), {})  # noqa: S102 - ours
        set_mutant_under_test("stats")
        for item in items:
            state()._stats.clear()
            _child_stats_reached(children)  # a late write of an earlier test's child
            t0 = time.monotonic()
            if not self._run(item, None, timeout=600):
                dropped.append(item.nodeid)
                continue
            durations[item.nodeid] = time.monotonic() - t0
            for function in state()._stats | _child_stats_reached(children):
                reaches.setdefault(function, []).append(item)
        state()._stats.clear()
        set_mutant_under_test("")
        del os.environ[_CHILD_STATS]
        items = [i for i in items if i.nodeid not in dropped]
        self._say(
            f"stats: {len(items)} tests pass with no mutant in {time.monotonic() - started:.0f} s"
            + (f"; dropped (fail with no mutant): {dropped}" if dropped else "")
        )
        data = json.loads(self.meta.read_text("utf-8"))
        codes: dict[str, int | None] = data["exit_code_by_key"]
        window: list[str] = []
        last_killer: dict[str, Any] = {}
        clean_seconds = sum(durations.values())
        last_check = time.monotonic()
        done = 0
        for name in self.names:
            if time.monotonic() - started > self.budget:
                self._say(f"budget of {self.budget:.0f} s spent")
                break
            function = mangled_name_from_mutant_name(name)
            tests = reaches.get(function, [])
            if any(fnmatch.fnmatch(name, p) for p in self.every_test):
                tests = items  # a loop one call keeps running: it serves every test
            killer = last_killer.get(function)
            if killer in tests:  # the test that killed this function's last mutant first
                tests = [killer, *(t for t in tests if t is not killer)]
            if not tests:
                codes[name] = NO_TESTS
                continue
            self._mark_running(name)
            set_mutant_under_test(name)
            verdict, by = SURVIVED, ""
            t0 = time.monotonic()
            watchdog = self._watchdog(
                name, data, codes, started, sum(durations[i.nodeid] for i in tests)
            )
            for item in tests:
                clean = durations[item.nodeid]
                if self._run(item, None, timeout=3 * clean + 10):
                    continue
                if self.timed_out:
                    # On a loaded machine a test can overrun 3x its clean time without
                    # hanging: only a second overrun of a far longer limit counts as a kill.
                    self._teardown(session, keep_session=True)
                    if self._run(item, None, timeout=10 * clean + 60):
                        continue
                verdict = TIMEOUT if self.timed_out else KILLED
                by = item.nodeid
                last_killer[function] = item
                break
            watchdog.cancel()
            set_mutant_under_test("")
            self._teardown(session, keep_session=True)
            self._collect_leftovers(session, name)
            codes[name] = verdict
            window.append(name)
            done += 1
            mark = {KILLED: "killed", TIMEOUT: "timeout"}.get(verdict, "survived")
            self._say(f"{mark:8} {name} {by} {time.monotonic() - t0:.1f}s")
            self._save(data, codes)  # a crash later loses nothing (the check still voids)
            running_marker(self.meta).unlink(missing_ok=True)
            # A clean check costs the whole suite's time: at most about a sixth of the run.
            since = time.monotonic() - last_check
            if len(window) >= self.check_every and since >= 5 * clean_seconds:
                self._check(session, items, codes, window)
                window = []
                self._save(data, codes)
                last_check = time.monotonic()
        self._check(session, items, codes, window)
        self._save(data, codes)
        rate = done / max(time.monotonic() - started, 1e-9)
        self._say(f"{done} mutants in {time.monotonic() - started:.0f} s ({rate:.2f}/s)")
        return True

    # -- helpers -------------------------------------------------------------------------
    def _watchdog(
        self, name: str, data: dict[str, Any], codes: dict[str, Any], started: float, clean: float
    ) -> threading.Timer:
        """A hang pytest-timeout cannot end (a loop that swallows its exception): a timeout.

        After 20x the tests' clean time plus 300 s the mutant is recorded as timed out (a
        kill, as in mutmut), and this script starts again in the same process (``exec``)
        with the budget that is left; the mutants already judged are not run again.
        """

        def fire() -> None:
            codes[name] = TIMEOUT
            self._save(data, codes)
            left = max(60.0, self.budget - (time.monotonic() - started))
            cleaned: list[str] = []
            skip = False
            for arg in self.argv:  # drop "--budget N" and "--budget=N"
                if skip:
                    skip = False
                elif arg == "--budget":
                    skip = True
                elif not arg.startswith("--budget="):
                    cleaned.append(arg)
            # pytest captures fds 1 and 2 during a test: give the next process the real ones.
            os.dup2(_REAL_STDOUT, 1)
            os.dup2(_REAL_STDERR, 2)
            self._say(f"timeout  {name} (hung past the watchdog; restarting the session)")
            command = [
                sys.executable,
                str(ROOT / "scripts" / Path(__file__).name),
                *cleaned,
                "--budget",
                str(left),
            ]
            os.execv(sys.executable, command)  # noqa: S606 - our interpreter, our own arguments

        timer = threading.Timer(20 * clean + 300, fire)
        timer.daemon = True
        timer.start()
        return timer

    def _run(self, item: Any, nextitem: Any, *, timeout: float) -> bool:
        """Run one test through pytest's whole protocol (fixtures, timeout); True if it passed."""
        import pytest

        for mark in [m for m in item.own_markers if m.name == "timeout"]:
            item.own_markers.remove(mark)
        item.add_marker(pytest.mark.timeout(max(1, round(timeout))))
        self.failed = self.timed_out = False
        item.session._setupstate.teardown_exact(item)  # what the item does not share goes
        item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem or item.parent)
        return not self.failed

    def _collect_leftovers(self, session: Any, name: str) -> None:
        """Free now what a mutant left for the garbage collector, so no later test pays for it.

        Why: a mutant that breaks ``close`` (``close_on_release(None)`` in a reader) leaves
        open files behind, kept alive by ``sys.last_traceback`` (pytest keeps the last
        failure's traceback) or by a reference cycle. Whenever the collector frees them, the
        ``ResourceWarning`` (an error under this project's filters) goes to pytest's
        unraisable hook and fails the test that happens to be running: the next mutant's
        test (a false kill) or a clean check (which voids the window's verdicts). Collected
        here, between mutants, the leftovers are dropped and logged; a leak is a kill only
        when the mutant's own tests notice it.
        """
        import gc
        import warnings

        from _pytest.unraisableexception import unraisable_exceptions

        for attr in ("last_type", "last_value", "last_traceback", "last_exc"):
            if hasattr(sys, attr):
                setattr(sys, attr, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.collect()
        pending = session.config.stash.get(unraisable_exceptions, None)
        if pending:
            self._say(f"         {name}: {len(pending)} unraisable leftovers dropped")
            pending.clear()

    @staticmethod
    def _teardown(session: Any, *, keep_session: bool) -> None:
        session._setupstate.teardown_exact(session if keep_session else None)

    def _check(
        self, session: Any, items: list[Any], codes: dict[str, Any], window: list[str]
    ) -> None:
        """Every test again with no mutant; on a failure the window's verdicts are void."""
        self._teardown(session, keep_session=True)
        bad = [i.nodeid for i in items if not self._run(i, None, timeout=600)]
        self._teardown(session, keep_session=True)
        if bad:
            for name in window:
                codes[name] = None
            self._teardown(session, keep_session=False)
            self._say(f"clean check FAILED ({bad[:3]}): {len(window)} verdicts voided")
        else:
            self._say(f"clean check passed after {len(window)} mutants")

    def _mark_running(self, name: str) -> None:
        """Note ``name`` as under test (and how often it was), in case it ends the session."""
        marker = running_marker(self.meta)
        tries = 1
        with contextlib.suppress(OSError, ValueError, AttributeError):
            before = json.loads(marker.read_text("utf-8"))
            if before.get("name") == name:
                tries = int(before.get("tries", 0)) + 1
        marker.write_text(json.dumps({"name": name, "tries": tries}), "utf-8")

    def _save(self, data: dict[str, Any], codes: dict[str, Any]) -> None:
        data["exit_code_by_key"] = codes
        self.meta.write_text(json.dumps(data), "utf-8")

    def _say(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()
        print(line, file=sys.stderr, flush=True)


def running_marker(meta: Path) -> Path:
    """Where the mutant under test is noted (see the module docstring)."""
    return meta.with_name(meta.name + ".running")


def settle_session_enders(meta: Path, names: list[str]) -> list[str]:
    """``names`` with a mutant that ended the last session first; killed if it did so twice.

    A mutant whose verdict was saved (the watchdog's timeout) leaves nothing to settle.
    """
    marker = running_marker(meta)
    try:
        noted = json.loads(marker.read_text("utf-8"))
        name, tries = str(noted["name"]), int(noted["tries"])
    except (OSError, ValueError, KeyError, TypeError):
        return names
    data = json.loads(meta.read_text("utf-8"))
    codes = data["exit_code_by_key"]
    if codes.get(name, KILLED) is not None:
        marker.unlink(missing_ok=True)
        return names
    if tries >= 2:
        codes[name] = KILLED
        meta.write_text(json.dumps(data), "utf-8")
        marker.unlink(missing_ok=True)
        print(f"killed   {name} (ended the pytest session {tries} times)", file=sys.stderr)
        return [n for n in names if n != name]
    return [name, *(n for n in names if n != name)] if name in names else names


def load_alembic_scripts_as_package_modules(src: Path) -> None:
    """Alembic loads ``env.py`` and each revision by path, as a module named after the file.

    mutmut's trampoline activates a mutant only in the module its name gives
    (``zstack_analyzer.service.db.migrations.versions.0006_metadata_table``), and the
    stats name the functions a test reaches by ``__module__``: under Alembic's own name
    (``0006_metadata_table_py``) no mutant would ever run and no test would reach one.
    Files below ``src`` are loaded under their dotted package name instead; nothing
    else about the load changes.
    """
    from alembic.util import pyfiles

    original = pyfiles.load_module_py

    def load_module_py(module_id: str, path: Any) -> Any:
        try:
            relative = Path(path).resolve().relative_to(src.resolve())
        except ValueError:
            return original(module_id, path)
        if relative.suffix != ".py":
            return original(module_id, path)
        return original(".".join(relative.with_suffix("").parts), path)

    pyfiles.load_module_py = load_module_py  # type: ignore[assignment]


def main() -> int:
    """Generate the module's mutants, then test the chosen ones in one pytest session."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "modules",
        nargs="*",
        help="paths under src/zstack_analyzer, e.g. batch/walk.py (default: every configured one)",
    )
    parser.add_argument(
        "--budget", type=float, help="seconds (default: the entry's budget_seconds, else 1800)"
    )
    parser.add_argument("--baseline", action="store_true", help="without the kill_tests")
    parser.add_argument("--kill-tests-only", action="store_true", help="only the kill_tests")
    parser.add_argument("--rerun", action="store_true", help="also re-run survivors")
    parser.add_argument("--only", action="append", help="function pattern (x_name*)")
    parser.add_argument("--check-every", type=int, default=40, help="mutants per clean check")
    args = parser.parse_args()

    config = tomllib.loads(mutate.CONFIG.read_text("utf-8"))
    unknown = [m for m in args.modules if m not in config["modules"]]
    if unknown:
        parser.error(f"not in {mutate.CONFIG.name}: {', '.join(unknown)}")
    if len(args.modules) != 1:
        # One pytest session per module, each in its own process (a session imports one
        # module's mutants); then mutate.py scores them all from their .meta files.
        chosen = args.modules or list(config["modules"])
        flags = [f for f in sys.argv[1:] if f not in args.modules]
        for module in chosen:
            subprocess.run([sys.executable, __file__, module, *flags], check=False)  # noqa: S603
        report = [sys.executable, str(ROOT / "scripts" / "mutate.py"), "--report-only", *chosen]
        return subprocess.run(report, check=False).returncode  # noqa: S603
    args.module = args.modules[0]
    entry = config["modules"][args.module]
    if args.budget is None:
        args.budget = float(entry.get("budget_seconds", 1800))
    tests = [] if args.kill_tests_only else [str(t) for t in entry["tests"]]
    if not args.baseline:
        tests += [str(t) for t in entry.get("kill_tests", [])]
    only = args.only or [str(p) for p in entry.get("only", [])]

    work = generate(args.module, tests)
    (work / "mutants" / "src" / "sitecustomize.py").write_text(_CHILD_STATS_HOOK, "utf-8")
    meta = mutate._meta(args.module)
    codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    patterns = mutate._names(args.module, only)
    chosen = [n for n in codes if not patterns or any(fnmatch.fnmatch(n, p) for p in patterns)]
    wanted = {None} | ({SURVIVED, NO_TESTS} if args.rerun else set())
    # A mutant judged equivalent survives any test: --rerun does not spend time on it.
    equivalent = set(config.get("equivalent", {})) | set(entry.get("equivalent", {}))
    names = [
        n
        for n in chosen
        if (codes[n] in wanted or codes[n] not in mutate._KILLED | {0, 5, 33})
        and not (codes[n] in mutate._SURVIVED | mutate._NO_TESTS and n in equivalent)
    ]
    names = settle_session_enders(meta, names)
    print(f"{args.module}: {len(chosen)} mutants, {len(names)} to run", file=sys.stderr)
    if not names:
        return 0

    # The tests run from a copy under .mutate/, where "../shared beside the checkout" does
    # not resolve: name the corpora, or their tests fail clean and are dropped.
    for variable, folder in (
        ("ZSTACK_TESTDATA", "testdata"),
        ("ZSTACK_TESTDATA_MORE", "testdata-more"),
    ):
        if (ROOT.parent / "shared" / folder).is_dir():
            os.environ.setdefault(variable, str(ROOT.parent / "shared" / folder))
    os.chdir(work / "mutants")
    sys.path.insert(0, str(work / "mutants" / "src"))
    os.environ["PYTHONPATH"] = str(work / "mutants" / "src")
    os.environ.setdefault("CI", "true")
    if args.module.startswith("service/db/migrations/"):
        load_alembic_scripts_as_package_modules(work / "mutants" / "src")
        # Alembic loads each revision file anew for every migration a test runs; with
        # PYTHONDONTWRITEBYTECODE set no bytecode is cached, and a revision's mutant file
        # (megabytes: every mutant's copy of every function) was compiled again each time,
        # 30-60 s a mutant under load. Compiled once here: 3-5 s (helper mut-mig10).
        compileall.compile_dir(
            str(work / "mutants" / "src" / "zstack_analyzer" / "service" / "db" / "migrations"),
            quiet=1,
        )
    import pytest

    every_test = mutate._names(args.module, [str(p) for p in entry.get("every_test", [])])
    loop = MutantLoop(meta, names, args.budget, args.check_every, every_test)
    code = pytest.main(
        ["--rootdir=.", "-q", "--tb=line", "-p", "no:randomly", *mutate._PYTEST_ARGS, *tests],
        plugins=[loop],
    )
    import zstack_analyzer

    if ".mutate" not in str(zstack_analyzer.__file__):
        print(f"tests imported {zstack_analyzer.__file__}, not the mutants", file=sys.stderr)
        return 2
    return 0 if code in (0, 1) else int(code)


if __name__ == "__main__":
    sys.exit(main())
