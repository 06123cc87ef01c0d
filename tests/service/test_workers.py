"""The worker pool: identical concurrent jobs run once; errors reach every waiter."""

from __future__ import annotations

import threading

import anyio
import pytest

from zstack_analyzer.service.workers import WorkerPool


def test_identical_jobs_share_one_run() -> None:
    calls: list[int] = []
    release = threading.Event()

    def work(value: int) -> int:
        calls.append(value)
        release.wait(30)
        return value * 2

    async def main() -> list[int]:
        results: list[int] = []
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=2)

            async def ask() -> None:
                results.append(await pool.shared("same-key", "ident", work, 21))

            async with anyio.create_task_group() as callers:
                for _ in range(20):
                    callers.start_soon(ask)
                await anyio.wait_all_tasks_blocked()
                release.set()
        return results

    assert anyio.run(main) == [42] * 20
    assert calls == [21]


def test_errors_reach_every_waiter_and_settle_waits() -> None:
    def fail() -> None:
        msg = "broken.tif: corrupt"
        raise ValueError(msg)

    async def main() -> list[str]:
        messages: list[str] = []
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=1)

            async def ask() -> None:
                with pytest.raises(ValueError, match="corrupt") as info:
                    await pool.shared("k", "ident", fail)
                messages.append(str(info.value))

            async with anyio.create_task_group() as callers:
                for _ in range(3):
                    callers.start_soon(ask)
            await pool.settle("ident")
            # A later call with the same key runs again (failures are not cached).
            with pytest.raises(ValueError, match="corrupt"):
                await pool.shared("k", "ident", fail)
        return messages

    assert anyio.run(main) == ["broken.tif: corrupt"] * 3


def test_background_failure_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        msg = "thumbnail failed"
        raise RuntimeError(msg)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=1)
            pool.spawn("bg", "ident", fail)
            await pool.settle("ident")

    anyio.run(main)
    assert any("thumbnail failed" in r.getMessage() for r in caplog.records)


def test_a_shared_render_stops_when_its_last_client_leaves() -> None:
    """Issue #21: work whose client went away is cancelled (at its next decode), unless
    someone else still waits for it."""
    from zstack_analyzer.budget import reserve
    from zstack_analyzer.errors import DecodeCancelledError

    decodes: list[int] = []

    def runaway() -> None:
        while True:  # a render that would not end on its own
            with reserve(1024, what="runaway.tif: a strip"):
                decodes.append(1)
            threading.Event().wait(0.01)

    async def main() -> tuple[bool, bool]:
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg, workers=1)
            leaving = anyio.Event()
            staying = anyio.CancelScope()

            async def gone() -> bool:
                return leaving.is_set()

            async def never() -> bool:
                return False

            async def leaver() -> None:
                with pytest.raises(DecodeCancelledError):
                    await pool.shared(
                        "k", "ident", runaway, is_disconnected=gone, poll_seconds=0.05
                    )

            async def stayer() -> None:
                with staying:
                    await pool.shared("k", "ident", runaway, is_disconnected=never)

            async with anyio.create_task_group() as callers:
                callers.start_soon(leaver)
                callers.start_soon(stayer)
                while not decodes:
                    await anyio.sleep(0.01)
                leaving.set()  # one client leaves: the other still waits, the job goes on
                await anyio.sleep(0.3)
                ran_on = len(decodes)
                await anyio.sleep(0.1)
                still_running = len(decodes) > ran_on
                staying.cancel()  # the last one leaves (its request is cancelled)
            with anyio.fail_after(10):
                await pool.settle("ident")
            return still_running, True

    still_running, settled = anyio.run(main)
    assert still_running
    assert settled
