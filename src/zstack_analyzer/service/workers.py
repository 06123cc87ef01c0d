"""Blocking work off the event loop, bounded, with identical jobs shared.

Why: reading and rendering a stack takes seconds of CPU and I/O; on the event
loop that would stall every other request, and unbounded it would thrash two
cores. A :class:`anyio.CapacityLimiter` bounds the worker threads; a job map
keyed by the render's cache key makes twenty identical thumbnail requests (or
a request arriving while the post-upload thumbnail renders) wait for one
render. Jobs run in the app's task group, so a client that disconnects does
not cancel a render others are waiting for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False)
class _Job(Generic[T]):
    identity: str
    done: anyio.Event = field(default_factory=anyio.Event)
    result: T | None = None
    error: BaseException | None = None


class WorkerPool:
    """Bounded worker threads plus a map of in-flight shared jobs.

    Parameters
    ----------
    task_group
        The app's task group (lives as long as the app).
    workers
        How many blocking jobs run at once.
    """

    def __init__(self, task_group: TaskGroup, *, workers: int) -> None:
        self._task_group = task_group
        self.limiter = anyio.CapacityLimiter(workers)
        self._jobs: dict[str, _Job[Any]] = {}

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in a worker thread under the limiter."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)

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
            job.result = await self.run(func, *args)
        except anyio.get_cancelled_exc_class():
            job.error = RuntimeError("the server is shutting down")
            raise
        except Exception as exc:  # handed to every waiter, who re-raises it
            job.error = exc
        finally:
            self._jobs.pop(key, None)
            job.done.set()

    async def shared(self, key: str, identity: str, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` once for all concurrent callers with the same ``key``.

        The job keeps running if this caller is cancelled; its exception, if
        any, is raised in every caller.
        """
        job = self._start(key, identity, func, *args)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return cast("T", job.result)

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
