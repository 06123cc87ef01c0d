"""Where batch tasks run: in this process, or on dask.distributed (a LocalCluster or a scheduler).

Why dask.distributed and not a home-made queue: it already does processes on
this machine (``LocalCluster``), workers on other machines behind one scheduler
address, retries of lost workers, and a dashboard. Why a bounded window of
submitted tasks: a batch is a stream of 10^6 files; submitting them all at once
would hold a future per file. At most ``window`` tasks are in flight; the next
is submitted as one completes, and results come back in completion order.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "SMALL_BATCH",
    "DaskRunner",
    "Runner",
    "SerialRunner",
    "StartingRunner",
    "ThreadRunner",
    "open_runner",
]

logger = logging.getLogger(__name__)

#: Batches up to this many files run in this process: a LocalCluster costs seconds to start.
SMALL_BATCH = 8
#: How a LocalCluster starts its worker processes (see ``open_runner``).
MP_METHOD = "forkserver"
#: What the forkserver imports before it forks a worker (see ``_preload_forkserver``).
FORKSERVER_PRELOAD = (
    "distributed",
    "dask",
    "numpy",
    "msgpack",
    "cloudpickle",
    "tornado",
    "toolz",
    "zstack_analyzer.batch.preload",
)

T = TypeVar("T")
R = TypeVar("R")


class Runner(Protocol):
    """Runs ``func(item)`` for a stream of items, yielding ``(item, result)`` as each finishes."""

    @property
    def description(self) -> str:
        """Where the work runs, for the summary."""
        ...

    def map_unordered(self, func: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Results in completion order; an exception a task raised is re-raised here."""
        ...


class SerialRunner:
    """One item after another in this process (single files, small batches)."""

    description = "in process"

    def map_unordered(self, func: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """``(item, func(item))`` in order."""
        for item in items:
            yield item, func(item)


class ThreadRunner:
    """A few threads in this process: for I/O-bound work such as HTTP requests."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self.description = f"{self.threads} threads"

    def map_unordered(self, func: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """At most ``2 * threads`` items in flight."""
        window = 2 * self.threads
        with ThreadPoolExecutor(self.threads, thread_name_prefix="zstack-batch") as pool:
            pending: dict[Future[R], T] = {}
            source = iter(items)
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < window:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[pool.submit(func, item)] = item
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()


#: Files per dask task. One task costs a few ms of scheduler, client and worker CPU, as
#: much as a small file's own work; a few files a task amortise it. Measured on 2 cores,
#: 200 small stacks through a LocalCluster: 5.8 s with one file a task, 5.0 s with 4
#: (the same as 8).
CHUNK_FILES = 4


def _call_each(func: Callable[[T], R], items: list[T]) -> list[tuple[bool, Any]]:
    """``func`` over ``items`` in a worker: each result, or the exception it raised.

    Why not let the task raise: one bad item must fail alone, as it would in its own task.
    """
    outcomes: list[tuple[bool, Any]] = []
    for item in items:
        try:
            outcomes.append((True, func(item)))
        except Exception as exc:  # re-raised for that item by map_unordered
            outcomes.append((False, exc))
    return outcomes


class DaskRunner(Generic[T]):
    """Tasks on a dask.distributed cluster through ``client``, a bounded window in flight.

    Items go in chunks of ``chunk`` per task; results still come back one per item.
    """

    def __init__(self, client: Any, *, window: int | None = None, chunk: int = CHUNK_FILES) -> None:
        self.client = client
        threads = sum(client.nthreads().values()) or 1
        self.window = window or max(4, 4 * threads)
        self.chunk = max(1, chunk)
        self.description = f"dask.distributed at {client.scheduler.address} ({threads} threads)"

    def map_unordered(self, func: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Submit up to ``window`` chunks, then one more per completed one.

        An item whose call raised re-raises here, when its turn comes.
        """
        from distributed import as_completed

        source = iter(items)
        futures: deque[Any] = deque()
        owner: dict[str, list[T]] = {}

        def submit_next() -> Any | None:
            chunk = list(itertools.islice(source, self.chunk))
            if not chunk:
                return None
            future = self.client.submit(_call_each, func, chunk, pure=False)
            owner[future.key] = chunk
            return future

        for _ in range(self.window):
            future = submit_next()
            if future is None:
                break
            futures.append(future)
        if not futures:
            return
        completed = as_completed(list(futures), loop=self.client.loop)
        futures.clear()
        for future in completed:
            chunk = owner.pop(future.key)
            try:
                outcomes = future.result()
            finally:
                future.release()
            following = submit_next()
            if following is not None:
                completed.add(following)
            for item, (ok, value) in zip(chunk, outcomes, strict=True):
                if not ok:
                    raise value
                yield item, value


@contextlib.contextmanager
def open_runner(
    *,
    scheduler: str | None = None,
    expected: int = 0,
    workers: int | None = None,
    dashboard: str | None = None,
    on_dashboard: Callable[[str | None], None] | None = None,
) -> Iterator[Runner]:
    """The runner for a batch of ``expected`` files.

    Parameters
    ----------
    scheduler
        A dask scheduler address (``tcp://host:8786``): tasks run on its workers,
        which must see the same paths.
    expected
        Files in the batch; above :data:`SMALL_BATCH` (and with no scheduler) a
        ``LocalCluster`` of processes sized to the machine runs them.
    workers
        Processes of that LocalCluster (default: one per core).
    dashboard
        ``HOST:PORT`` of that LocalCluster's dask dashboard (port 0: a free one);
        ``None``: no dashboard (never dask's default 8787, often taken).
    on_dashboard
        Told the dashboard's URL once it serves (a scheduler's own, with
        ``scheduler``), or ``None`` when this batch has no dashboard.

    Examples
    --------
    >>> with open_runner(expected=1) as runner:
    ...     [r for _, r in runner.map_unordered(abs, [-1, 2])]
    [1, 2]
    """
    tell = on_dashboard or (lambda _link: None)
    if scheduler is None and expected <= SMALL_BATCH:
        tell(None)
        yield SerialRunner()
        return
    if scheduler is None:
        starting = StartingRunner(workers or os.cpu_count() or 1, dashboard, tell)
        try:
            yield starting
        finally:
            starting.close()
        return
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client:
        runner: DaskRunner[Any] = DaskRunner(client)
        logger.info("batch runs on %s", runner.description)
        tell(_served_dashboard(client))
        yield runner


def _served_dashboard(client: Any) -> str | None:
    """The dashboard URL of ``client``'s scheduler, or None when it serves none.

    Why ask the page itself: a scheduler lists its HTTP server as the ``dashboard``
    service whether or not it serves the dashboard (``dask scheduler --no-dashboard``,
    or no bokeh), and that server answers 404 at ``/status``; only a page that answers
    is worth telling the user about.
    """
    import httpx

    try:
        served = client.scheduler_info().get("services", {})
    except Exception:  # a scheduler that cannot say has no dashboard for us
        return None
    if "dashboard" not in served:
        return None
    link = str(client.dashboard_link)
    try:
        answer = httpx.get(link, timeout=10, follow_redirects=True)
    except httpx.HTTPError:
        return None
    return link if answer.status_code == 200 else None


def _preload_forkserver() -> None:
    """Make the forkserver import the per-file task's code once, before it forks a worker.

    Why: each worker otherwise imports the readers, renderer and numba kernels on
    its first task (:mod:`zstack_analyzer.batch.preload`). distributed sets the
    forkserver's preload list itself the first time it needs the context, to its
    own packages plus pandas and lz4, importing each in *this* process first; the
    workers never use pandas (1 s of CPU in this process and again in the
    server). Its flag says the list is set; without it (another distributed)
    distributed overwrites our list and the workers import lazily, as before.
    Only the first call of a process counts: the server starts once.
    """
    import multiprocessing

    from distributed import utils as dask_utils

    if getattr(dask_utils, "_forkserver_preload_set", True):
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(FORKSERVER_PRELOAD))
    dask_utils._forkserver_preload_set = True


def _local_cluster(
    stack: contextlib.ExitStack, workers: int, dashboard: str | None = None
) -> DaskRunner[Any]:
    """A LocalCluster of ``workers`` processes (one thread each) and its client, on ``stack``.

    ``dashboard`` is the dashboard's ``HOST:PORT``; ``None`` serves none.
    """
    import dask
    from distributed import Client, LocalCluster

    # forkserver: workers fork from a clean server process that distributed preloads
    # (numpy, dask, ...), instead of each starting a fresh interpreter (spawn): 2.0 s
    # instead of 3.3 s to a running cluster on 2 loaded cores, without fork's risk of
    # inheriting this process's threads and locks.
    # Without MALLOC_TRIM_THRESHOLD_, which the nanny sets by default: a fixed trim
    # threshold turns off glibc's adaptive mmap threshold, so every plane-sized buffer
    # became a fresh mmap + page faults; a render took 3x as long in a worker (measured:
    # 210 ms -> 72 ms a file; serial 45 ms on the same loaded machine).
    environ = {
        key: value
        for key, value in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
        if key != "MALLOC_TRIM_THRESHOLD_"
    }
    settings = {
        "distributed.worker.multiprocessing-method": MP_METHOD,
        "distributed.nanny.pre-spawn-environ": environ,
        # The statistical profiler samples every thread's stack every 10 ms, in every
        # worker, for the dashboard's profile page: CPU taken from the files.
        "distributed.worker.profile.enabled": False,
    }
    if MP_METHOD == "forkserver":
        _preload_forkserver()
    with dask.config.set(settings):
        cluster = stack.enter_context(
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                # The dashboard only when asked for, where asked; otherwise none, and the
                # scheduler's HTTP server on a free loopback port: the default 8787 is
                # often taken by another cluster, which costs a warning.
                dashboard_address=dashboard,
                scheduler_kwargs=(
                    {} if dashboard else {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
                ),
                silence_logs=logging.ERROR,
            )
        )
    client = stack.enter_context(Client(cluster, set_as_default=False))
    runner: DaskRunner[Any] = DaskRunner(client)
    logger.info("batch runs on %s", runner.description)
    return runner


class StartingRunner:
    """A LocalCluster that starts in the background while this process does the first items.

    Why: starting the worker processes takes seconds (2 s here); a batch of a few
    hundred files should not wait idle for them. Items run here, one at a time,
    until the cluster is up; the rest go to the cluster.
    """

    def __init__(
        self,
        workers: int,
        dashboard: str | None = None,
        on_dashboard: Callable[[str | None], None] | None = None,
    ) -> None:
        self._stack = contextlib.ExitStack()
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="zstack-cluster-start")
        self._cluster: Future[DaskRunner[Any]] = self._starter.submit(
            self._start, workers, dashboard, on_dashboard or (lambda _link: None)
        )
        self.in_process = 0

    def _start(
        self, workers: int, dashboard: str | None, tell: Callable[[str | None], None]
    ) -> DaskRunner[Any]:
        try:
            runner = _local_cluster(self._stack, workers, dashboard)
        except BaseException:
            tell(None)
            raise
        tell(_served_dashboard(runner.client) if dashboard else None)
        return runner

    @property
    def description(self) -> str:
        """What ran the batch (so far)."""
        if self._cluster.done() and self._cluster.exception() is None:
            return f"LocalCluster {self._cluster.result().description}; first {self.in_process} in process"
        return "in process (LocalCluster starting)"

    def map_unordered(self, func: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Here until the cluster is up, then there."""
        source = iter(items)
        while not self._cluster.done():
            try:
                item = next(source)
            except StopIteration:
                return
            self.in_process += 1
            yield item, func(item)
        yield from self._cluster.result().map_unordered(func, source)

    def close(self) -> None:
        """Wait for the start-up (if still running), then shut the cluster down."""
        try:
            self._cluster.exception()
        finally:
            self._starter.shutdown(wait=True)
            self._stack.close()
