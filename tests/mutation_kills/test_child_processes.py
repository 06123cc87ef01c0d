"""``service/children.py``: the background jobs' child processes, for real (spawned children).

What a child is given (the server's decode budget and Bio-Formats options, a
watcher thread that ends it with its server), how many processes a pool of
``workers`` runs, that a second job reuses the child and cancels the idle timer
(no timer threads pile up), that a child that died while idle is replaced
before the job is sent, that a waiting thread stops when its job is cancelled,
and what ``close`` does to an idle pool and to a pool never started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import pytest

from zstack_analyzer.budget import DecodeBudget, decode_scope
from zstack_analyzer.errors import DecodeCancelledError
from zstack_analyzer.service.children import ChildProcesses
from zstack_analyzer.service.config import BioformatsSettings, LimitsSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

LIMITS = LimitsSettings(
    max_decode_bytes=96 * 1024**2,
    max_render_plane_bytes=32 * 1024**2,
    max_request_decode_bytes=48 * 1024**2,
    decode_wait_seconds=7.5,
)
BIOFORMATS = BioformatsSettings(workers=3, heap_mb=333, timeout_s=44.0, start_timeout_s=55.0)


def child_state(pause: float = 0.0) -> dict[str, Any]:
    """What a child process was given (runs in the child; module level: it is pickled)."""
    from zstack_analyzer import budget
    from zstack_analyzer.readers.bioformats import pool

    time.sleep(pause)
    current = budget.current_budget()
    options = pool.pool_options()
    return {
        "pid": os.getpid(),
        "budget": (
            current.total_bytes,
            current.block_bytes,
            current.request_bytes,
            current.wait_seconds,
        ),
        "pool": (options.workers, options.heap_mb, options.timeout_s, options.start_timeout_s),
        "watchers": sorted(
            (t.name, t.daemon) for t in threading.enumerate() if t.name == "exit-with-server"
        ),
    }


def _children(workers: int = 1, idle_seconds: float = 60.0) -> ChildProcesses:
    return ChildProcesses(
        workers=workers, idle_seconds=idle_seconds, limits=LIMITS, bioformats=BIOFORMATS
    )


@contextlib.contextmanager
def _pool(workers: int = 1, idle_seconds: float = 60.0) -> Iterator[ChildProcesses]:
    """A pool closed afterwards, whatever the test did (no child outlives its test)."""
    children = _children(workers, idle_seconds)
    try:
        yield children
    finally:
        children.close()


def _wait_until_gone(pid: int, what: str) -> None:
    """Wait (up to 60 s) until process ``pid`` has ended and been reaped."""
    deadline = time.monotonic() + 60
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"child {pid} {what}"
        time.sleep(0.05)


def _pids_of_two_jobs_given_at_once(children: ChildProcesses) -> set[int]:
    """The processes two 1-second jobs, started together from two threads, ran in."""
    seen: set[int] = set()
    gate = threading.Barrier(2)

    def one() -> None:
        gate.wait(timeout=60)
        seen.add(children.call(child_state, 1.0)["pid"])

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return seen


def _timers(children: ChildProcesses) -> list[threading.Timer]:
    return [
        t
        for t in threading.enumerate()
        if isinstance(t, threading.Timer)
        and t.is_alive()
        and not t.finished.is_set()  # a cancelled timer's thread may not have woken yet
        and t.function == children._stop_if_idle
    ]


def test_a_child_gets_the_servers_budget_options_and_watcher() -> None:
    with _pool() as children:
        assert children.starts == 0
        assert children.running is False
        first = children.call(child_state)
        assert first["pid"] != os.getpid()
        assert first["budget"] == (96 * 1024**2, 32 * 1024**2, 48 * 1024**2, 7.5)
        assert first["pool"] == (3, 333, 44.0, 55.0)
        assert first["watchers"] == [("exit-with-server", True)]
        # The watcher lets a child whose server is alive live on (past its first check).
        again = children.call(child_state, 1.5)
        assert again["pid"] == first["pid"]
        assert again["watchers"] == [("exit-with-server", True)]
        assert children.starts == 1
        assert children.running is True


def test_a_pool_runs_as_many_processes_as_workers() -> None:
    with _pool(workers=2) as children:
        seen = _pids_of_two_jobs_given_at_once(children)
        assert len(seen) == 2  # both ran at once, each in its own process
        assert children.starts == 1


def test_each_job_resets_the_idle_timer_and_none_pile_up() -> None:
    with _pool(idle_seconds=600) as children:
        assert _timers(children) == []
        pids = {children.call(os.getpid) for _ in range(4)}
        assert len(pids) == 1
        timers = _timers(children)
        assert len(timers) == 1
        assert timers[0].interval == 600
        assert timers[0].daemon is True
    assert timers[0].finished.is_set()  # close cancels it


def test_a_child_killed_while_idle_is_replaced_before_the_job(tmp_path: Any) -> None:
    import signal

    with _pool() as children:
        first = children.call(os.getpid)
        os.kill(first, signal.SIGKILL)
        _wait_until_gone(first, "never went away after SIGKILL")  # seen on the executor's thread
        time.sleep(0.5)
        assert children.call(pow, 2, 10) == 1024  # the job, with its arguments, on a new child
        second = children.call(os.getpid)
        assert second not in (first, os.getpid())
        assert children.starts == 2


def test_a_job_that_dies_with_its_child_leaves_an_idle_pool_with_nothing_running() -> None:
    with _pool() as children:
        with pytest.raises(BrokenProcessPool):
            children.call(os._exit, 5)
        assert children.running is False
        assert _timers(children) == []  # no executor: nothing to stop later
        assert children.call(os.getpid) != os.getpid()
        assert children.starts == 2


def test_a_cancelled_job_stops_waiting() -> None:
    cancel = threading.Event()
    outcome: list[BaseException] = []
    with _pool() as children:

        def wait() -> None:
            with decode_scope(DecodeBudget(), cancel=cancel):
                try:
                    children.call(time.sleep, 60)
                except BaseException as exc:
                    outcome.append(exc)

        children.call(os.getpid)
        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)
        cancel.set()
        waiter.join(timeout=30)
        assert not waiter.is_alive(), "a cancelled job kept its thread waiting"
        assert len(outcome) == 1
        assert isinstance(outcome[0], DecodeCancelledError)
        assert str(outcome[0]).startswith("background job: cancelled")


def test_close_of_an_idle_or_never_started_pool() -> None:
    never = _children()
    never.close()
    assert never.running is False
    with pytest.raises(RuntimeError, match=r"^the server is shutting down$"):
        never.call(os.getpid)
    assert never.starts == 0

    idle = _children()
    pid = idle.call(os.getpid)
    idle.close()
    assert idle.running is False
    _wait_until_gone(pid, "outlived close()")  # the idle child was ended with the pool
    idle.close()  # twice: nothing left to do


def test_an_idle_pool_stops_its_processes_and_only_when_idle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="zstack_analyzer.service.children")
    with _pool(idle_seconds=0.2) as children:
        pid = children.call(os.getpid)
        deadline = time.monotonic() + 30
        while children.running:
            assert time.monotonic() < deadline, "the idle child never stopped"
            time.sleep(0.05)
        for timer in _timers(children):  # the timer's thread is still shutting it down
            timer.join(timeout=30)
        # The stop waits for the process to exit (it is reaped, not left to end later).
        with pytest.raises(ProcessLookupError):  # stopped means ended, not only forgotten
            os.kill(pid, 0)
        assert caplog.messages.count("background worker process idle for 0.2 s: stopped") == 1
        # A job longer than the idle time is not stopped under it.
        assert children.call(time.sleep, 0.6) is None
        assert children.starts == 2


def test_one_worker_runs_jobs_given_at_once_one_after_the_other() -> None:
    """``workers`` is the pool's size, not the machine's core count (2 here)."""
    with _pool(workers=1) as children:
        seen = _pids_of_two_jobs_given_at_once(children)
        assert len(seen) == 1


#: Set in the server process only: a forked child would inherit it, a spawned one imports
#: this module afresh.
_SET_IN_THE_SERVER: list[str] = []


def inherited_state() -> tuple[list[str], int]:
    """What a child sees of its server's state (runs in the child)."""
    return _SET_IN_THE_SERVER, os.getppid()


def test_children_are_spawned_not_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork of a threaded server copies its locks and state; children start afresh."""
    monkeypatch.setattr(f"{__name__}._SET_IN_THE_SERVER", ["server"])
    with _pool() as children:
        assert children.call(inherited_state) == ([], os.getpid())


def test_a_late_idle_timer_leaves_a_busy_or_stopped_pool_alone() -> None:
    """The timer may fire just as a job starts (it waits for the lock): the job goes on."""
    never = _children()
    never._stop_if_idle()  # nothing started: nothing to stop
    assert never.running is False

    with _pool() as children:
        result: list[dict[str, Any]] = []
        job = threading.Thread(target=lambda: result.append(children.call(child_state, 1.0)))
        job.start()
        deadline = time.monotonic() + 60
        while not children._active:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.01)
        children._stop_if_idle()
        assert children.running is True
        job.join(timeout=120)
        assert len(result) == 1
        assert children.running is True
