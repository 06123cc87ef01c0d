"""Blocking work off the event loop, bounded, with identical jobs shared.

Why: reading and rendering a stack takes seconds of CPU and I/O; on the event
loop that would stall every other request, and unbounded it would thrash two
cores. A :class:`anyio.CapacityLimiter` bounds the worker threads; a job map
keyed by the render's cache key makes twenty identical thumbnail requests (or
a request arriving while the post-upload thumbnail renders) wait for one
render. Jobs run in the app's task group, so a client that disconnects does
not cancel a render others are waiting for.

Every job runs in its own decode scope (:mod:`zstack_analyzer.budget`): its
decodes count against one request's share of the server's decode budget, and
a job whose caller is cancelled (a client that went away, a server shutting
down) stops at its next decode instead of running on unseen.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio
import anyio.to_thread

from zstack_analyzer.budget import decode_scope
from zstack_analyzer.errors import DecodeCancelledError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from anyio.abc import TaskGroup

    from zstack_analyzer.budget import DecodeBudget
    from zstack_analyzer.service.children import ChildProcesses

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False)
class _Job(Generic[T]):
    identity: str
    done: anyio.Event = field(default_factory=anyio.Event)
    result: T | None = None
    error: BaseException | None = None
    #: Set when no one wants the result any more: the render stops at its next decode.
    cancel: threading.Event = field(default_factory=threading.Event)
    waiters: int = 0
    #: Started by spawn (a post-upload thumbnail): kept running without waiters.
    background: bool = False


class WorkerPool:
    """Bounded worker threads plus a map of in-flight shared jobs.

    Parameters
    ----------
    task_group
        The app's task group (lives as long as the app).
    workers
        How many blocking jobs run at once.
    budget
        The server's decode budget; each job is one request's scope of it
        (``None``: the process's budget).
    processes
        Child processes for background jobs that must not grow the server
        (the post-upload thumbnail and quality job); ``None``: those run in
        the worker threads too.
    """

    def __init__(
        self,
        task_group: TaskGroup,
        *,
        workers: int,
        budget: DecodeBudget | None = None,
        processes: ChildProcesses | None = None,
    ) -> None:
        self._task_group = task_group
        self.budget = budget
        self.processes = processes
        self.limiter = anyio.CapacityLimiter(workers)
        self._jobs: dict[str, _Job[Any]] = {}

    async def run(
        self, func: Callable[..., T], *args: Any, cancel: threading.Event | None = None
    ) -> T:
        """Run ``func(*args)`` in a worker thread under the limiter, in a decode scope of its own.

        Cancelling the caller returns at once and flags the scope (``cancel``),
        so the thread stops at its next decode (it cannot be interrupted in between).
        """
        cancel = cancel if cancel is not None else threading.Event()

        def scoped() -> T:
            with decode_scope(self.budget, cancel=cancel):
                return func(*args)

        try:
            return await anyio.to_thread.run_sync(
                scoped, limiter=self.limiter, abandon_on_cancel=True
            )
        except anyio.get_cancelled_exc_class():
            cancel.set()
            raise

    async def run_while_connected(
        self,
        is_disconnected: Callable[[], Awaitable[bool]],
        func: Callable[..., T],
        *args: Any,
        poll_seconds: float = 0.5,
    ) -> T:
        """:meth:`run`, cancelled when ``is_disconnected()`` turns true (the client left).

        Raises
        ------
        DecodeCancelledError
            The client went away before the work finished.
        """
        outcome: list[T] = []
        failure: list[BaseException] = []

        async def work() -> None:
            try:
                outcome.append(await self.run(func, *args))
            except Exception as exc:  # re-raised below, outside the task group
                failure.append(exc)
            group.cancel_scope.cancel()

        async def watch() -> None:
            while not await is_disconnected():
                await anyio.sleep(poll_seconds)
            group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(work)
            group.start_soon(watch)
        if failure:
            raise failure[0]
        if not outcome:
            msg = "the client went away; its work was cancelled"
            raise DecodeCancelledError(msg)
        return outcome[0]

    def _start(self, key: str, identity: str, func: Callable[..., T], *args: Any) -> _Job[T]:
        job: _Job[T] | None = self._jobs.get(key)
        if job is None:
            job = _Job(identity)
            self._jobs[key] = job
            self._task_group.start_soon(self._execute, key, job, func, args)
        return job

    async def _execute(
        self, key: str, job: _Job[T], func: Callable[..., T], args: tuple[Any, ...]
    ) -> None:
        try:
            job.result = await self.run(func, *args, cancel=job.cancel)
        except anyio.get_cancelled_exc_class():
            job.error = RuntimeError("the server is shutting down")
            raise
        except Exception as exc:  # handed to every waiter, who re-raises it
            job.error = exc
        finally:
            self._jobs.pop(key, None)
            job.done.set()

    async def shared(
        self,
        key: str,
        identity: str,
        func: Callable[..., T],
        *args: Any,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
        poll_seconds: float = 0.5,
    ) -> T:
        """``func(*args)`` once for all concurrent callers with the same ``key``.

        The job keeps running while anyone waits for it (or it was spawned in
        the background); when its last caller is cancelled or its client goes
        away (``is_disconnected``), the job is cancelled at its next decode.
        Its exception, if any, is raised in every caller.

        Raises
        ------
        DecodeCancelledError
            This caller's client went away.
        """
        job = self._start(key, identity, func, *args)
        job.waiters += 1
        gone = False
        try:
            while not job.done.is_set():
                with anyio.move_on_after(poll_seconds):
                    await job.done.wait()
                if (
                    not job.done.is_set()
                    and is_disconnected is not None
                    and await is_disconnected()
                ):
                    gone = True
                    break
        except anyio.get_cancelled_exc_class():
            gone = True
            raise
        finally:
            job.waiters -= 1
            if gone and job.waiters == 0 and not job.background:
                job.cancel.set()
        if gone:
            msg = "the client went away; its render was cancelled"
            raise DecodeCancelledError(msg)
        if job.error is not None:
            raise job.error
        return cast("T", job.result)

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run the coroutine ``func(*args)`` in the app's task group (outlives the request)."""
        self._task_group.start_soon(func, *args)

    def spawn(
        self,
        key: str,
        identity: str,
        func: Callable[..., T],
        *args: Any,
        on_success: Callable[[T], Any] | None = None,
    ) -> None:
        """Start a shared job in the background; failures are logged, never raised."""
        job = self._start(key, identity, func, *args)
        job.background = True

        async def _follow() -> None:
            await job.done.wait()
            if job.error is not None:
                logger.warning("background job %s failed: %s", key, job.error)
            elif on_success is not None:
                try:
                    await anyio.to_thread.run_sync(on_success, cast("T", job.result))
                except Exception:
                    logger.exception("after background job %s", key)

        self._task_group.start_soon(_follow)

    async def settle(self, identity: str) -> None:
        """Wait until no job for ``identity`` is running (before deleting its cache)."""
        while True:
            pending = [job for job in self._jobs.values() if job.identity == identity]
            if not pending:
                return
            for job in pending:
                await job.done.wait()
