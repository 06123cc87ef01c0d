"""A warm, bounded pool of Bio-Formats worker processes, one per process that reads.

Why a pool: starting a JVM and loading Bio-Formats' classes costs seconds;
a worker pays it once and then answers in milliseconds. Why bounded: each
worker holds a JVM heap (``heap_mb``), so ``workers`` x ``heap_mb`` is the
memory the fallback can take. Why a deadline per request: Bio-Formats can
loop forever on a hostile file; a request that gets no answer within
``timeout_s`` kills its worker (the next request starts a fresh one) and
raises :class:`~zstack_analyzer.errors.ReaderTimeoutError`.

**The time a caller waits at most:** ``start_timeout_s`` for a worker to
start (only when none is warm), plus ``timeout_s`` for the request itself;
a request that finds every worker busy waits for one at most ``timeout_s``
and then gets :class:`~zstack_analyzer.errors.DecodeBusyError` (503). A worker
found dead before it read the request (it died after the pool saw it alive)
did nothing: the request is sent once more, to another worker, within as much
time again.

The pool is per process (:func:`get_pool`): the server, the CLI and each dask
worker of a batch ingest have their own, configured by :func:`configure` (the
service does it from ``ZSTACK_BIOFORMATS__*``; the options also travel with a
pickled reader, so a dask worker uses the same ones).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from zstack_analyzer.errors import (
    CorruptFileError,
    DecodeBusyError,
    LimitExceededError,
    ReaderTimeoutError,
    UnsupportedFormatError,
)
from zstack_analyzer.readers.bioformats.jar import require_runtime
from zstack_analyzer.readers.bioformats.worker import OOM_EXIT_CODE

__all__ = ["PoolOptions", "WorkerPool", "configure", "get_pool", "pool_options"]

logger = logging.getLogger(__name__)

_WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))
_WORKER_MODULE = "zstack_analyzer.readers.bioformats.worker"
#: Runs worker.py under its module name without importing the package. Why not
#: ``python worker.py``: its code would live in ``__main__`` (so a name such as
#: ``__module__`` says ``__main__``, and mutation testing, which switches mutants per
#: module, never reaches it); why not ``python -m``: that imports ``zstack_analyzer``
#: and with it pydantic and the package's modules, memory every worker would carry beside
#: its JVM (numpy comes anyway: JPype imports it).
#: ``-P`` keeps the current folder off ``sys.path``: a ``json.py`` in the server's
#: working folder must not be imported by a worker.
_LAUNCHER = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location(sys.argv[1], sys.argv[2])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "sys.exit(module.main(sys.argv[3:]))\n"
)


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """How many workers, how much heap each, how long a request may take.

    Examples
    --------
    >>> PoolOptions(workers=1, heap_mb=256).timeout_s
    60.0
    """

    workers: int = 2
    heap_mb: int = 1024
    timeout_s: float = 60.0
    start_timeout_s: float = 120.0
    jar: str | None = None


class _Unread(Exception):
    """The worker died before it read the request: nothing was done, another may answer it."""


@dataclass
class _Answer:
    header: dict[str, Any]
    payload: bytes | None = None


@dataclass(eq=False)
class _Worker:
    """One child process with its JVM, and the paths it has open."""

    popen: subprocess.Popen[bytes]
    conn: Connection
    opened: set[str] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.popen.poll() is None:
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


class WorkerPool:
    """Bio-Formats worker processes, started on demand and reused.

    Thread-safe: dask's threads and the server's render threads share it.

    Examples
    --------
    >>> pool = WorkerPool(PoolOptions(workers=1))  # doctest: +SKIP
    >>> pool.request("/data/a.dm3", {"op": "open", "path": "/data/a.dm3"})  # doctest: +SKIP
    """

    def __init__(self, options: PoolOptions) -> None:
        self.options = options
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._live = 0  # started or starting
        self._closed = False
        #: Workers killed because a request timed out or their JVM died (for tests and logs).
        self.restarts = 0

    # ---------------------------------------------------------------- lifecycle
    def _start(self, path: Path | None) -> _Worker:
        jar = require_runtime(self.options.jar, path=path)
        parent, child = socket.socketpair()
        try:
            popen = subprocess.Popen(  # noqa: S603  (our own script, no shell)
                [
                    sys.executable,
                    "-P",
                    "-c",
                    _LAUNCHER,
                    _WORKER_MODULE,
                    _WORKER_SCRIPT,
                    str(child.fileno()),
                    str(jar),
                    str(self.options.heap_mb),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            child.close()
        worker = _Worker(popen, Connection(parent.detach()))
        try:
            answer = self._receive(worker, self.options.start_timeout_s, path=path, what="start")
        except BaseException:
            worker.kill()
            raise
        if not answer.header.get("ok"):
            worker.kill()
            msg = f"Bio-Formats worker did not start: {answer.header.get('message')}"
            raise CorruptFileError(msg, path=path)
        logger.info("Bio-Formats worker %d started", worker.pid)
        return worker

    def warm(self, count: int | None = None) -> None:
        """Start workers now (up to ``count``, default all), so no request pays the JVM start."""
        started = []
        try:
            for _ in range(count or self.options.workers):
                started.append(self._acquire(None, None))
        finally:
            for worker in started:
                self._release(worker, healthy=True)

    def close(self) -> None:
        """Kill every idle worker and refuse new requests; busy ones die when released."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._live -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.kill()

    def pids(self) -> list[int]:
        """Process ids of the idle workers (tests watch their memory)."""
        with self._cond:
            return [w.pid for w in self._idle]

    # ---------------------------------------------------------------- checkout
    def _acquire(self, path: Path | None, key: str | None) -> _Worker:
        deadline = time.monotonic() + self.options.timeout_s
        with self._cond:
            while True:
                if self._closed:
                    msg = "the Bio-Formats worker pool is closed"
                    raise DecodeBusyError(msg, path=path)
                if self._idle:
                    chosen = next((w for w in self._idle if key in w.opened), self._idle[-1])
                    self._idle.remove(chosen)
                    if chosen.popen.poll() is None:
                        return chosen
                    # It died while idle (the kernel's OOM killer, a signal): its place is free.
                    chosen.kill()
                    self._live -= 1
                    self.restarts += 1
                    continue
                if self._live < self.options.workers:
                    self._live += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = (
                        f"{path.name if path else 'Bio-Formats'}: all {self.options.workers} "
                        "Bio-Formats workers stayed busy; try again shortly"
                    )
                    raise DecodeBusyError(msg, path=path)
                self._cond.wait(left)
        try:
            return self._start(path)
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker, *, healthy: bool) -> None:
        with self._cond:
            if healthy and not self._closed and worker.popen.poll() is None:
                self._idle.append(worker)
                self._cond.notify()
                return
            self._live -= 1
            self._cond.notify()
        worker.kill()

    # ---------------------------------------------------------------- requests
    def request(self, path: Path, message: dict[str, Any]) -> _Answer:
        """Send ``message`` about ``path`` to a worker; the answer, or the typed error.

        A worker that turns out dead before it read the request (it died after
        :meth:`_acquire` saw it alive: the kernel's OOM killer, a signal) did no
        harm: the request goes once more to another worker.

        Raises
        ------
        ReaderTimeoutError
            No answer within ``timeout_s`` (the worker is killed and replaced).
        LimitExceededError
            The file exhausted the worker's heap (the worker is replaced).
        CorruptFileError, UnsupportedFormatError, FileNotFoundError
            What Bio-Formats said of the file.
        DecodeBusyError
            The pool is closed, every worker stayed busy, or two workers in a row died
            before they read the request.
        """
        key = str(path)
        data = json.dumps(message).encode("utf-8")
        answer = self._attempt(path, key, data, message["op"])
        if answer is None:
            answer = self._attempt(path, key, data, message["op"])
        if answer is None:
            msg = (
                f"{path.name}: two Bio-Formats workers died before they read the request; "
                "try again shortly"
            )
            raise DecodeBusyError(msg, path=path)
        if not answer.header.get("ok"):
            _raise(answer.header, path)
        return answer

    def _attempt(self, path: Path, key: str, data: bytes, what: str) -> _Answer | None:
        """One worker's answer to ``data``; None if the worker died before it read it."""
        worker = self._acquire(path, key)
        answer = None
        try:
            with contextlib.suppress(_Unread):
                try:
                    worker.conn.send_bytes(data)
                except OSError:  # its end of the socket is closed: it died after _acquire looked
                    raise _Unread from None
                answer = self._receive(worker, self.options.timeout_s, path=path, what=what)
        finally:
            if answer is not None:
                worker.opened.add(key)
            else:
                with self._cond:
                    self.restarts += 1
            self._release(worker, healthy=answer is not None)
        return answer

    def _receive(self, worker: _Worker, timeout: float, *, path: Path | None, what: str) -> _Answer:
        deadline = time.monotonic() + timeout
        header = json.loads(self._recv(worker, deadline, path=path, what=what))
        payload = None
        if header.get("ok") and "nbytes" in header:
            payload = self._recv(worker, deadline, path=path, what=what)
        return _Answer(header, payload)

    def _recv(self, worker: _Worker, deadline: float, *, path: Path | None, what: str) -> bytes:
        name = path.name if path is not None else "Bio-Formats"
        try:
            ready = worker.conn.poll(max(0.0, deadline - time.monotonic()))
            if ready:
                return worker.conn.recv_bytes()
        except ConnectionResetError:
            # Linux resets (rather than ends) a socket whose peer closed with bytes unread, and
            # the request is all a worker is sent: it died before it read it, let alone acted.
            raise _Unread from None
        except (EOFError, OSError):
            worker.kill()
            code = worker.popen.returncode
            if code == OOM_EXIT_CODE:
                msg = (
                    f"{name}: reading it exhausted the Bio-Formats worker's heap "
                    f"({self.options.heap_mb} MiB); the worker was restarted"
                )
                raise LimitExceededError(msg, path=path) from None
            msg = (
                f"{name}: the Bio-Formats worker died during {what} (exit {code}); it was restarted"
            )
            raise CorruptFileError(msg, path=path) from None
        worker.kill()
        seconds = self.options.start_timeout_s if what == "start" else self.options.timeout_s
        msg = (
            f"{name}: Bio-Formats gave no answer to {what} within {seconds:g} s; "
            "the worker was stopped and will be restarted"
        )
        raise ReaderTimeoutError(msg, path=path)


def _raise(header: dict[str, Any], path: Path) -> None:
    kind, detail = header.get("kind"), str(header.get("message", ""))
    if kind == "missing":
        msg = f"{path}: no such file"
        raise FileNotFoundError(msg)
    if kind == "unsupported":
        msg = f"{path.name}: Bio-Formats recognises no format in its content"
        raise UnsupportedFormatError(msg, path=path, detail=detail[:2000])
    msg = f"{path.name}: Bio-Formats could not read it: {detail[:300]}"
    raise CorruptFileError(msg, path=path, detail=detail[:2000])


# --------------------------------------------------------------------------- per process
class _Current:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.options = PoolOptions()
        self.pool: WorkerPool | None = None


_CURRENT = _Current()


def configure(options: PoolOptions) -> PoolOptions:
    """Use ``options`` for this process's pool from now on; returns the previous ones.

    A running pool with other options is closed (its workers end); the next
    request starts the new one.
    """
    with _CURRENT.lock:
        previous = _CURRENT.options
        if options == previous:
            return previous
        _CURRENT.options = options
        old, _CURRENT.pool = _CURRENT.pool, None
    if old is not None:
        old.close()
    return previous


def pool_options() -> PoolOptions:
    """The options this process's pool runs with."""
    return _CURRENT.options


def get_pool(options: PoolOptions | None = None) -> WorkerPool:
    """The pool of this process (started lazily); a pickled reader's ``options`` configure it once.

    Why "once": in a dask worker the first reader unpickled brings the
    service's options; later readers bring the same.
    """
    with _CURRENT.lock:
        if options is not None and _CURRENT.pool is None:
            _CURRENT.options = options
        if _CURRENT.pool is None:
            _CURRENT.pool = WorkerPool(_CURRENT.options)
        return _CURRENT.pool


@atexit.register
def _shutdown() -> None:
    with _CURRENT.lock:
        pool, _CURRENT.pool = _CURRENT.pool, None
    if pool is not None:
        pool.close()
