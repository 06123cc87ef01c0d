"""Background jobs in a child process: the post-upload thumbnail and its quality measures.

Why a child process: the quality measures import numba and load their compiled
kernels (about 130 MiB together), and once loaded they stay for the life of the
process. Run in the server, the first upload's background job raised the
server's resident memory for good (``upload-rss/c``: 263 MiB, of which the
request itself was about 130). In a child, the server never imports numba; the
child goes away after ``idle_seconds`` without work, so the memory is held only
while uploads keep coming, and a decoder that crashes on a hostile file takes
the child down, never the server (the job then fails and only logs).

The child is started with ``spawn`` (never ``fork``: the server has threads,
and a forked copy of a 200 MiB process would share nothing useful), lazily, on
the first job. It gets the server's decode budget and Bio-Formats options, and
its import roots stay confined as the server's are (the job is given them).
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, TypeVar

from zstack_analyzer.budget import check_cancelled

if TYPE_CHECKING:
    from collections.abc import Callable

    from zstack_analyzer.service.config import BioformatsSettings, LimitsSettings

__all__ = ["ChildProcesses"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a thread waiting for a child checks whether its job was cancelled.
POLL_SECONDS = 0.25


#: How often a child checks that the server that started it is still there.
PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent(parent: int) -> None:
    """End this child once its server is gone (killed, or crashed past its shutdown)."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)


def _child_start(limits: LimitsSettings, bioformats: BioformatsSettings) -> None:
    """In the child: the server's decode budget and Bio-Formats options, process-wide.

    Also a watcher that ends the child when the server is gone. Why: a server
    killed with SIGKILL (or a test app never shut down) never runs
    :meth:`ChildProcesses.close`, and its idle timer dies with it; the child,
    waiting for work that cannot come, would otherwise stay for good.
    """
    from zstack_analyzer import budget
    from zstack_analyzer.readers.bioformats import pool

    threading.Thread(
        target=_exit_with_parent, args=(os.getppid(),), name="exit-with-server", daemon=True
    ).start()
    budget.configure(limits.decode_budget())
    pool.configure(bioformats.pool_options())


class ChildProcesses:
    """A small pool of worker processes, started on the first job and stopped when idle.

    Parameters
    ----------
    workers
        Jobs run at once (each in its own process).
    idle_seconds
        The processes exit after this long without a job (their memory goes
        back to the system); the next job starts them again.
    limits, bioformats
        The server's settings, applied in every child.
    """

    def __init__(
        self,
        *,
        workers: int,
        idle_seconds: float,
        limits: LimitsSettings,
        bioformats: BioformatsSettings,
    ) -> None:
        self.workers = workers
        self.idle_seconds = idle_seconds
        self._initargs = (limits, bioformats)
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._active = 0
        self._idle_timer: threading.Timer | None = None
        self._closed = False
        #: How many times the processes were started (a figure for tests and logs).
        self.starts = 0

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a child process; blocks the calling (worker) thread until done.

        ``func`` and ``args`` must be picklable (a module-level function of plain
        values). While it waits, the thread checks its decode scope: a job
        cancelled (the server shutting down) stops waiting at once.

        Raises
        ------
        BrokenProcessPool
            The child died (a crash or a kill): the job is lost, the next one
            starts a new child.
        DecodeCancelledError
            The job was cancelled while it waited.
        """
        with self._lock:
            if self._closed:
                msg = "the server is shutting down"
                raise RuntimeError(msg)
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            executor = self._start()
            self._active += 1
        try:
            try:
                future = executor.submit(func, *args)
            except BrokenProcessPool:
                # The child died while idle (the OOM killer, an operator): a new one.
                with self._lock:
                    self._executor = None
                    executor = self._start()
                future = executor.submit(func, *args)
            while True:
                try:
                    return future.result(timeout=POLL_SECONDS)
                except concurrent.futures.TimeoutError:
                    check_cancelled("background job")
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0 and not self._closed and self._executor is not None:
                    self._idle_timer = threading.Timer(self.idle_seconds, self._stop_if_idle)
                    self._idle_timer.daemon = True
                    self._idle_timer.start()

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        """The executor, created when there is none (call with the lock held)."""
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_start,
                initargs=self._initargs,
            )
            self.starts += 1
        return self._executor

    @property
    def running(self) -> bool:
        """Whether the processes are up (started and not yet stopped for idleness)."""
        with self._lock:
            return self._executor is not None

    def _stop_if_idle(self) -> None:
        with self._lock:
            if self._active or self._executor is None:
                return
            executor, self._executor = self._executor, None
            self._idle_timer = None
        logger.debug("background worker process idle for %g s: stopped", self.idle_seconds)
        executor.shutdown(wait=True)

    def close(self) -> None:
        """Stop the processes now, a job running in them included (server shutdown)."""
        with self._lock:
            self._closed = True
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            executor, self._executor = self._executor, None
        if executor is None:
            return
        # A running job cannot be cancelled through the executor: end its process.
        processes: dict[int, Any] = dict(getattr(executor, "_processes", None) or {})
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes.values():
            if process.is_alive():
                process.terminate()
        for process in processes.values():
            process.join(timeout=5)
