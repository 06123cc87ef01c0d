"""The worker pool (``service/workers.py``): scopes, bounds, cancellation, background jobs.

What tests/service/test_workers.py leaves open: each job runs in a decode scope of the
pool's budget with the caller's cancel flag, the thread bound, a cancelled caller flagging
its job (and returning without waiting for the thread), ``run_while_connected`` (its result,
its error, a client that leaves), a spawned job's success callback and its failures in the
log, a waiter who leaves a background job running, a shutdown failing the waiters of a
running job, and ``settle`` waiting only for its own identity. No timing assertions: every
wait is on an event, with a generous bound that only a broken pool reaches.
"""

from __future__ import annotations

import logging
import threading

import anyio
import pytest

from zstack_analyzer import budget
from zstack_analyzer.errors import DecodeCancelledError
from zstack_analyzer.service.workers import WorkerPool

WAIT = 10.0


def _scope() -> budget.DecodeScope:
    scope = budget._scope.get()
    assert scope is not None
    return scope


def test_jobs_run_in_a_scope_of_the_pools_budget_and_are_bounded() -> None:
    own = budget.DecodeBudget(total_bytes=1 << 20)
    seen: list[tuple[budget.DecodeBudget, threading.Event]] = []
    running, most = [0], [0]
    lock = threading.Lock()
    flag = threading.Event()

    def job(n: int) -> int:
        scope = _scope()
        seen.append((scope.budget, scope.cancel))
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threading.Event().wait(0.05)
        with lock:
            running[0] -= 1
        return n * 2

    async def main() -> list[int]:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=1, budget=own)
            assert pool.budget is own
            assert pool.processes is None
            assert pool.limiter.total_tokens == 1
            results: list[int] = []

            async def one(n: int) -> None:
                results.append(await pool.run(job, n))

            async with anyio.create_task_group() as callers:
                for n in range(3):
                    callers.start_soon(one, n)
            assert await pool.run(job, 5, cancel=flag) == 10
            return sorted(results)

    assert anyio.run(main) == [0, 2, 4]
    assert most[0] == 1
    assert all(b is own for b, _ in seen)
    assert seen[-1][1] is flag
    assert len({id(c) for _, c in seen[:3]}) == 3  # each run its own flag


def test_a_cancelled_caller_returns_at_once_and_flags_its_job() -> None:
    saw_cancel: list[bool] = []
    started = threading.Event()

    def job() -> None:
        started.set()
        saw_cancel.append(_scope().cancel.wait(WAIT))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=1)
            with anyio.CancelScope() as scope:
                tg.start_soon(_cancel_when, started, scope)
                await pool.run(job)
            assert scope.cancelled_caught

    anyio.run(main)
    assert _when_filled(saw_cancel) == [True]


def _when_filled(values: list[bool]) -> list[bool]:
    """``values`` once an abandoned thread has appended to it (or after :data:`WAIT`)."""
    for _ in range(int(WAIT * 100)):
        if values:
            break
        threading.Event().wait(0.01)
    return values


async def _cancel_when(started: threading.Event, scope: anyio.CancelScope) -> None:
    while not started.is_set():
        await anyio.sleep(0.01)
    scope.cancel()


def test_run_while_connected() -> None:
    def fail() -> None:
        msg = "broken.tif: corrupt"
        raise ValueError(msg)

    saw_cancel: list[bool] = []
    started = threading.Event()

    def slow() -> None:
        started.set()
        saw_cancel.append(_scope().cancel.wait(WAIT))

    async def connected() -> bool:
        return False

    async def gone_once_started() -> bool:
        return started.is_set()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=2)
            assert await pool.run_while_connected(connected, lambda a, b: a + b, 2, 3) == 5
            with pytest.raises(ValueError, match="corrupt"):
                await pool.run_while_connected(connected, fail)
            with pytest.raises(DecodeCancelledError) as info:
                await pool.run_while_connected(gone_once_started, slow, poll_seconds=0.01)
            assert str(info.value) == "the client went away; its work was cancelled"

    anyio.run(main)
    assert _when_filled(saw_cancel) == [True]


def test_spawned_jobs_call_back_and_log_failures(caplog: pytest.LogCaptureFixture) -> None:
    got: list[tuple[int, bool]] = []
    caller = threading.get_ident()

    def on_success(value: int) -> None:
        got.append((value, threading.get_ident() != caller))

    def bad_callback(_value: int) -> None:
        msg = "callback broke"
        raise RuntimeError(msg)

    def fail() -> None:
        msg = "thumbnail failed"
        raise OSError(msg)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=2)
            pool.spawn("k1", "a", lambda: 7, on_success=on_success)
            pool.spawn("k2", "b", lambda: 8, on_success=bad_callback)
            pool.spawn("k3", "c", fail, on_success=on_success)
            pool.spawn("k4", "d", lambda: 9)
            for identity in "abcd":
                await pool.settle(identity)

    with caplog.at_level(logging.DEBUG, logger="zstack_analyzer.service.workers"):
        anyio.run(main)
    assert got == [(7, True)]
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, "background job k3 failed: thumbnail failed") in records
    after = [r for r in caplog.records if r.getMessage() == "after background job k2"]
    assert len(after) == 1
    assert after[0].levelno == logging.ERROR
    assert after[0].exc_info is not None
    assert len(records) == 2


def test_a_background_job_outlives_a_waiter_who_leaves() -> None:
    release = threading.Event()
    started = threading.Event()
    finished: list[int] = []
    flags: list[bool] = []

    def job() -> int:
        started.set()
        release.wait(WAIT)
        flags.append(_scope().cancel.is_set())
        return 4

    async def gone() -> bool:
        return started.is_set()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=1)
            pool.spawn("k", "ident", job, on_success=finished.append)
            with pytest.raises(DecodeCancelledError) as info:
                await pool.shared("k", "ident", job, is_disconnected=gone, poll_seconds=0.01)
            assert str(info.value) == "the client went away; its render was cancelled"
            release.set()
            await pool.settle("ident")

    anyio.run(main)
    assert flags == [False]  # not cancelled: it was started in the background
    assert finished == [4]


def test_a_shutdown_fails_the_waiters_of_a_running_job() -> None:
    started = threading.Event()

    def job() -> None:
        started.set()
        _scope().cancel.wait(WAIT)

    async def main() -> str:
        async with anyio.create_task_group() as callers:
            outcome: list[str] = []
            async with anyio.create_task_group() as server:
                pool = WorkerPool(server, workers=1)

                async def waiter() -> None:
                    try:
                        await pool.shared("k", "ident", job, poll_seconds=0.01)
                    except RuntimeError as exc:
                        outcome.append(str(exc))

                callers.start_soon(waiter)
                while not started.is_set():
                    await anyio.sleep(0.01)
                server.cancel_scope.cancel()
        return outcome[0]

    assert anyio.run(main) == "the server is shutting down"


def test_settle_waits_only_for_its_identity() -> None:
    release = threading.Event()
    order: list[str] = []

    def held() -> None:
        release.wait(WAIT)
        order.append("held")

    def quick() -> None:
        order.append("quick")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=2)
            pool.spawn("h", "other", held)
            pool.spawn("q", "mine", quick)
            await pool.settle("mine")
            order.append("settled")
            await pool.settle("nothing")
            release.set()
            await pool.settle("other")

    anyio.run(main)
    assert order == ["quick", "settled", "held"]


def test_start_soon_runs_in_the_pools_task_group() -> None:
    ran: list[int] = []

    async def later(n: int) -> None:
        ran.append(n)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            WorkerPool(tg, workers=1).start_soon(later, 3)

    anyio.run(main)
    assert ran == [3]


def test_settle_waits_for_a_shared_job_and_spawn_passes_its_arguments() -> None:
    release = threading.Event()
    order: list[str] = []
    doubled: list[int] = []
    children = object()

    def held() -> str:
        release.wait(WAIT)
        order.append("job")
        return "done"

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=2, processes=children)  # type: ignore[arg-type]
            assert pool.processes is children

            async def caller() -> None:
                order.append(await pool.shared("k", "ident", held))

            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_release_soon, release)
            await pool.settle("ident")
            order.append("settled")
            pool.spawn("d", "other", lambda a, b: a * b, 4, 5, on_success=doubled.append)
            await pool.settle("other")

    anyio.run(main)
    assert "settled" in order and order.index("job") < order.index("settled")
    assert doubled == [20]


async def _release_soon(release: threading.Event) -> None:
    await anyio.sleep(0.05)
    release.set()
