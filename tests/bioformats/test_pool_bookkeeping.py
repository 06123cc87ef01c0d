"""The pool's bookkeeping: which options run, what a closed or full pool says, how a worker's
answer becomes a result or a typed error.

Most of it needs no worker at all (a pool starts workers only on a request); the rest uses
the session's warm worker, and one test starts a pool of its own to see ``warm``.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from zstack_analyzer.errors import (
    CorruptFileError,
    DecodeBusyError,
    ReaderTimeoutError,
    UnsupportedFormatError,
)
from zstack_analyzer.readers.bioformats.pool import (
    _CURRENT,
    PoolOptions,
    WorkerPool,
    _Answer,
    _raise,
    _Worker,
    configure,
    get_pool,
    pool_options,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.xdist_group("bioformats")


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[PoolOptions]:
    """The process's options before the test; its pool and options put back untouched after.

    Set aside rather than closed (the session's warm worker survives), and put back by
    monkeypatch, not by ``configure``: a mutation test of ``configure`` must not leave a
    broken pool behind for the tests that follow.
    """
    previous = _CURRENT.options
    monkeypatch.setattr(_CURRENT, "pool", None)
    monkeypatch.setattr(_CURRENT, "options", previous)
    yield previous
    if _CURRENT.pool is not None:
        _CURRENT.pool.close()


def test_raise_turns_each_kind_into_its_error() -> None:
    path = Path("/data/a.dm3")
    with pytest.raises(FileNotFoundError) as missing:
        _raise({"ok": False, "kind": "missing", "message": "gone"}, path)
    assert str(missing.value) == "/data/a.dm3: no such file"
    long = "x" * 3000
    with pytest.raises(UnsupportedFormatError) as unsupported:
        _raise({"ok": False, "kind": "unsupported", "message": long}, path)
    assert str(unsupported.value) == "a.dm3: Bio-Formats recognises no format in its content"
    assert unsupported.value.path == path
    assert unsupported.value.detail == "x" * 2000
    with pytest.raises(CorruptFileError) as corrupt:
        _raise({"ok": False, "kind": "corrupt", "message": long}, path)
    assert str(corrupt.value) == f"a.dm3: Bio-Formats could not read it: {'x' * 300}"
    assert corrupt.value.path == path
    assert corrupt.value.detail == "x" * 2000
    with pytest.raises(CorruptFileError) as bare:
        _raise({"ok": False}, path)
    assert str(bare.value) == "a.dm3: Bio-Formats could not read it: "
    assert bare.value.detail == ""


def test_configure_replaces_the_pool_only_when_the_options_change(
    restored: PoolOptions,
) -> None:
    first = PoolOptions(workers=1, heap_mb=300)
    assert configure(first) == restored
    pool = get_pool()
    assert pool.options == first and pool_options() == first
    assert configure(PoolOptions(workers=1, heap_mb=300)) == first  # equal: kept running
    assert get_pool() is pool
    second = PoolOptions(workers=1, heap_mb=301)
    assert configure(second) == first
    assert pool._closed  # the old pool is closed
    assert get_pool() is not pool and get_pool().options == second
    # A reader's options configure a pool only when none runs yet.
    assert get_pool(PoolOptions(workers=3)).options == second
    configure(PoolOptions(workers=1, heap_mb=302))
    third = PoolOptions(workers=1, heap_mb=303)
    assert get_pool(third).options == third
    assert pool_options() == third


def test_a_closed_pool_refuses_and_a_full_one_says_busy() -> None:
    path = Path("/data/a.dm3")
    closed = WorkerPool(PoolOptions(workers=1))
    assert closed.restarts == 0 and closed.pids() == []
    closed.close()
    with pytest.raises(DecodeBusyError) as info:
        closed.request(path, {"op": "ping"})
    assert str(info.value) == "the Bio-Formats worker pool is closed"
    assert info.value.path == path
    full = WorkerPool(PoolOptions(workers=0, timeout_s=0.05))  # never a free worker
    with pytest.raises(DecodeBusyError) as busy:
        full.request(path, {"op": "ping"})
    assert str(busy.value) == "a.dm3: all 0 Bio-Formats workers stayed busy; try again shortly"
    assert busy.value.path == path
    with pytest.raises(DecodeBusyError, match=r"^Bio-Formats: all 0 Bio-Formats workers"):
        full.warm(1)


@pytest.fixture
def own_pool(bf_runtime: None) -> Iterator[WorkerPool]:
    """A one-worker pool of the test's own (not the process's), warm."""
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128))
    pool.warm()
    yield pool
    pool.close()


def test_answers_payloads_and_errors_of_a_warm_worker(own_pool: WorkerPool, tmp_path: Path) -> None:
    bf_pool = own_pool
    path = tmp_path / "a&sizeX=4&sizeY=3&pixelType=uint16.fake"
    path.write_bytes(b"fake")
    (pid,) = bf_pool.pids()
    answer = bf_pool.request(path, {"op": "ping"})
    assert answer.header == {"ok": True, "result": pid} and answer.payload is None
    assert bf_pool.pids() == [pid]  # released, healthy, reused
    # Its worker is known to have the file open (its next request goes there first).
    assert [w.opened for w in bf_pool._idle] == [{str(path)}]
    bf_pool.request(path, {"op": "open", "path": str(path)})
    read = {"op": "read", "path": str(path), "series": 0, "t": 0, "c": 0, "z": 0}
    answer = bf_pool.request(path, {**read, "region": [1, 1, 2, 2]})
    assert answer.header == {"ok": True, "nbytes": 8}
    assert answer.payload is not None and len(answer.payload) == 8
    with pytest.raises(CorruptFileError, match=r"could not read it: unknown op 'nope'"):
        bf_pool.request(path, {"op": "nope"})
    assert bf_pool.pids() == [pid]  # an error answer is a healthy worker
    restarts = bf_pool.restarts
    with pytest.raises(FileNotFoundError):
        bf_pool.request(tmp_path / "gone.fake", {"op": "open", "path": str(tmp_path / "gone.fake")})
    assert bf_pool.restarts == restarts


def test_warm_starts_the_configured_number_and_close_ends_them(
    bf_runtime: None, caplog: pytest.LogCaptureFixture
) -> None:
    import psutil

    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128))
    try:
        with caplog.at_level("INFO", logger="zstack_analyzer.readers.bioformats.pool"):
            pool.warm()
        (pid,) = pool.pids()
        assert f"Bio-Formats worker {pid} started" in caplog.messages
        assert psutil.pid_exists(pid)
        assert pool._live == 1
        pool.warm()  # already warm: the same worker
        assert pool.pids() == [pid]
    finally:
        pool.close()
    assert pool.pids() == [] and pool._live == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def _fake(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"fake")
    return path


class _InThread:
    """A request run in a thread (a render thread of the server), its answer or error kept."""

    def __init__(self, pool: WorkerPool, path: Path, message: dict[str, object]) -> None:
        self.result: object = None
        self.thread = threading.Thread(target=self._run, args=(pool, path, message))
        self.thread.start()

    def _run(self, pool: WorkerPool, path: Path, message: dict[str, object]) -> None:
        try:
            self.result = pool.request(path, message)
        except Exception as exc:  # handed to the test
            self.result = exc

    def join(self) -> object:
        self.thread.join(120)
        assert not self.thread.is_alive()
        return self.result


def _until(condition: Callable[[], bool]) -> None:
    """Wait (at most a minute: a loaded machine) until ``condition`` holds."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)


def _slow(folder: Path, name: str, millis: int = 3000) -> tuple[Path, dict[str, object]]:
    """An open request Bio-Formats takes ``millis`` ms to answer (FakeReader's sleepInitFile)."""
    path = _fake(folder, f"{name}&sleepInitFile={millis}.fake")
    return path, {"op": "open", "path": str(path)}


def test_a_request_waits_for_the_busy_worker_and_gets_it(bf_runtime: None, tmp_path: Path) -> None:
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=90.0))
    try:
        pool.warm()
        (pid,) = pool.pids()
        busy = _InThread(pool, *_slow(tmp_path, "slow"))
        _until(lambda: pool.pids() == [])  # the thread holds the only worker
        answer = pool.request(tmp_path / "b.fake", {"op": "ping"})  # waits, then is served
        assert answer.header == {"ok": True, "result": pid}
        assert not isinstance(busy.join(), Exception)
        assert pool.pids() == [pid] and pool._live == 1 and pool.restarts == 0
    finally:
        pool.close()


def test_a_request_goes_to_the_worker_that_has_its_file_open(
    bf_runtime: None, tmp_path: Path
) -> None:
    pool = WorkerPool(PoolOptions(workers=2, heap_mb=128, timeout_s=90.0))
    mine = tmp_path / "mine.fake"
    try:
        pool.warm()
        assert len(pool.pids()) == 2 and pool._live == 2
        busy = _InThread(pool, *_slow(tmp_path, "slow"))
        _until(lambda: len(pool.pids()) == 1)
        (free,) = pool.pids()
        # The free worker answers for `mine` (and now has it), while the other is busy.
        assert pool.request(mine, {"op": "ping"}).header["result"] == free
        assert not isinstance(busy.join(), Exception)
        assert sorted(pool.pids()) != [free] and len(pool.pids()) == 2
        # Whichever worker was released last, `mine` goes to its own. (These opens only
        # need to run and end one at a time, nothing waits beside them: 0.1 s, not 3.)
        for _ in range(3):
            assert pool.request(mine, {"op": "ping"}).header["result"] == free
            other = _InThread(pool, *_slow(tmp_path, "again", millis=100))
            assert not isinstance(other.join(), Exception)
        assert pool._live == 2 and pool.restarts == 0
    finally:
        pool.close()


def test_a_worker_busy_when_the_pool_closes_ends_when_it_is_released(
    bf_runtime: None, tmp_path: Path
) -> None:
    import psutil

    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=90.0))
    pool.warm()
    (pid,) = pool.pids()
    busy = _InThread(pool, *_slow(tmp_path, "slow"))
    _until(lambda: pool.pids() == [])
    pool.close()
    assert psutil.pid_exists(pid)  # busy: not killed under the request
    result = busy.join()
    assert not isinstance(result, Exception)  # the request in flight was answered
    assert pool.pids() == [] and pool._live == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_a_worker_that_died_while_idle_is_replaced(bf_runtime: None, tmp_path: Path) -> None:
    import psutil

    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=90.0))
    try:
        pool.warm()
        (pid,) = pool.pids()
        victim = psutil.Process(pid)
        victim.kill()  # the kernel's OOM killer, an operator, a crash of the JVM
        victim.wait(30)
        answer = pool.request(tmp_path / "a.fake", {"op": "ping"})
        assert answer.header["ok"] is True and answer.header["result"] != pid
        assert pool.pids() == [answer.header["result"]]
        assert pool._live == 1 and pool.restarts == 1
        again = psutil.Process(answer.header["result"])  # and its replacement: counted again
        again.kill()
        again.wait(30)
        last = pool.request(tmp_path / "a.fake", {"op": "ping"})
        assert last.header["result"] not in {pid, again.pid}
        assert pool._live == 1 and pool.restarts == 2
    finally:
        pool.close()


def test_a_worker_that_does_not_start_in_time_is_stopped(bf_runtime: None, tmp_path: Path) -> None:
    import psutil

    # A JVM with Bio-Formats' readers loaded takes seconds to start, never a fifth of one.
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, start_timeout_s=0.2))
    path = tmp_path / "a.fake"
    before = {p.pid for p in psutil.Process().children()}
    try:
        with pytest.raises(ReaderTimeoutError) as info:
            pool.request(path, {"op": "ping"})
        assert str(info.value) == (
            "a.fake: Bio-Formats gave no answer to start within 0.2 s; "
            "the worker was stopped and will be restarted"
        )
        assert info.value.path == path
        assert pool.pids() == [] and pool._live == 0
        # Stopped and reaped, not left running (nor as a zombie) beside the server.
        assert {p.pid for p in psutil.Process().children()} - before == set()
        with pytest.raises(ReaderTimeoutError) as warming:  # no file: the pool names itself
            pool.warm()
        assert str(warming.value) == (
            "Bio-Formats: Bio-Formats gave no answer to start within 0.2 s; "
            "the worker was stopped and will be restarted"
        )
        assert warming.value.path is None
    finally:
        pool.close()


def _dead_unreaped(pid: int) -> None:
    """SIGKILL the worker ``pid`` and wait until it is dead (its socket closed), not reaped."""
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def test_a_worker_that_dies_after_the_check_is_replaced_and_the_request_sent_again(
    bf_runtime: None, tmp_path: Path
) -> None:
    """The worker dies between ``_acquire``'s ``poll()`` and the send: the send fails.

    The race made certain: the worker is dead before the request, and ``poll()`` cannot
    see it while another thread holds its Popen's waitpid lock (as a thread busy waiting
    for it does: "we know nothing yet", says ``poll``). The lock is let go once the pool
    has closed that worker's socket, so that its ``kill()`` can reap it.
    """
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=90.0))
    try:
        pool.warm()
        (worker,) = pool._idle
        _dead_unreaped(worker.pid)
        with worker.popen._waitpid_lock:  # type: ignore[attr-defined]
            request = _InThread(pool, tmp_path / "a.fake", {"op": "ping"})
            _until(lambda: worker.conn.closed)
        answer = request.join()
        assert isinstance(answer, _Answer), answer  # not a BrokenPipeError
        assert answer.header["ok"] is True and answer.header["result"] != worker.pid
        assert worker.popen.returncode == -signal.SIGKILL  # reaped by the pool
        assert pool.pids() == [answer.header["result"]]
        assert pool._live == 1 and pool.restarts == 1
        # The worker that answered is the one known to have the file open now.
        assert [w.opened for w in pool._idle] == [{str(tmp_path / "a.fake")}]
    finally:
        pool.close()


def _unread_bytes(worker: _Worker) -> int:
    """Bytes sent to ``worker`` that it has not read yet (Linux's SIOCOUTQ of our end)."""
    out = fcntl.ioctl(worker.conn.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    return int(struct.unpack("i", out)[0])


def test_a_worker_that_dies_with_the_request_unread_is_replaced_and_it_sent_again(
    bf_runtime: None, tmp_path: Path
) -> None:
    """The send succeeds (the socket buffers it) but the worker dies before it reads it."""
    import psutil

    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=90.0))
    try:
        pool.warm()
        (worker,) = pool._idle
        os.kill(worker.pid, signal.SIGSTOP)  # alive for poll(), but reads nothing
        _until(lambda: psutil.Process(worker.pid).status() == psutil.STATUS_STOPPED)
        request = _InThread(pool, tmp_path / "a.fake", {"op": "ping"})
        _until(lambda: _unread_bytes(worker) > 0)
        os.kill(worker.pid, signal.SIGKILL)  # the request's thread sees it die (and reaps it)
        answer = request.join()
        assert isinstance(answer, _Answer), answer  # not "the worker died during ping"
        assert answer.header["ok"] is True and answer.header["result"] != worker.pid
        assert worker.popen.returncode == -signal.SIGKILL
        assert pool.pids() == [answer.header["result"]]
        assert pool._live == 1 and pool.restarts == 1
    finally:
        pool.close()


def test_a_request_whose_worker_dies_unread_twice_is_busy(bf_runtime: None, tmp_path: Path) -> None:
    """Two workers in a row die before they read it: a 503 to try again, never a raw OSError."""
    pool = WorkerPool(PoolOptions(workers=2, heap_mb=128, timeout_s=90.0))
    path = tmp_path / "a.fake"
    try:
        pool.warm()
        workers = list(pool._idle)
        for worker in workers:
            _dead_unreaped(worker.pid)
        held = list(workers)
        for worker in held:
            worker.popen._waitpid_lock.acquire()  # type: ignore[attr-defined]
        try:
            request = _InThread(pool, path, {"op": "ping"})
            while held:  # each lock let go once the pool has closed that worker's socket
                _until(lambda: any(w.conn.closed for w in held))
                for worker in [w for w in held if w.conn.closed]:
                    worker.popen._waitpid_lock.release()  # type: ignore[attr-defined]
                    held.remove(worker)
        finally:
            for worker in held:
                worker.popen._waitpid_lock.release()  # type: ignore[attr-defined]
        error = request.join()
        assert isinstance(error, DecodeBusyError), error
        assert str(error) == (
            "a.fake: two Bio-Formats workers died before they read the request; try again shortly"
        )
        assert error.path == path
        assert [w.popen.returncode for w in workers] == [-signal.SIGKILL] * 2
        assert pool.pids() == [] and pool._live == 0 and pool.restarts == 2
    finally:
        pool.close()


def _sleepy(folder: Path, name: str, ms: int) -> tuple[Path, dict[str, object]]:
    """An open request Bio-Formats takes at least ``ms`` to answer (FakeReader's sleepInitFile)."""
    path = _fake(folder, f"{name}&sleepInitFile={ms}.fake")
    return path, {"op": "open", "path": str(path)}


def test_a_request_without_an_answer_in_time_stops_its_worker(
    bf_runtime: None, tmp_path: Path
) -> None:
    """The deadline is the request's (``timeout_s``), not the start's; the worker is stopped.

    Why an answer that comes after 0.4 s against a 0.2 s deadline: it never comes in time
    (the sleep is a lower bound), and a deadline stretched to a second would see it.
    """
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=0.2))
    path, message = _sleepy(tmp_path, "slow", 400)
    try:
        with pytest.raises(ReaderTimeoutError) as info:
            pool.request(path, message)  # the start has its own deadline (start_timeout_s)
        assert str(info.value) == (
            f"{path.name}: Bio-Formats gave no answer to open within 0.2 s; "
            "the worker was stopped and will be restarted"
        )
        assert info.value.path == path
        assert pool.pids() == [] and pool._live == 0 and pool.restarts == 1
    finally:
        pool.close()


def test_a_worker_that_dies_while_it_works_on_a_request_is_not_sent_it_again(
    bf_runtime: None, tmp_path: Path
) -> None:
    """Once the worker has read the request, its death may be the file's doing: no retry."""
    import psutil

    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=90.0))
    path, message = _sleepy(tmp_path, "hang", 600_000)
    try:
        pool.warm()
        (worker,) = pool._idle
        os.kill(worker.pid, signal.SIGSTOP)
        _until(lambda: psutil.Process(worker.pid).status() == psutil.STATUS_STOPPED)
        request = _InThread(pool, path, message)
        _until(lambda: _unread_bytes(worker) > 0)  # sent
        os.kill(worker.pid, signal.SIGCONT)
        _until(lambda: _unread_bytes(worker) == 0)  # read: it works on it (for 10 minutes)
        os.kill(worker.pid, signal.SIGKILL)
        error = request.join()
        assert isinstance(error, CorruptFileError), error
        assert str(error) == (
            f"{path.name}: the Bio-Formats worker died during open (exit -9); it was restarted"
        )
        assert error.path == path
        assert pool.pids() == [] and pool._live == 0 and pool.restarts == 1
    finally:
        pool.close()


def test_a_request_sent_again_keeps_its_file_its_op_and_its_deadline(
    bf_runtime: None, tmp_path: Path
) -> None:
    """The second attempt is the same request: its errors name the file and the op."""
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=0.2))
    path, message = _sleepy(tmp_path, "slow", 400)
    try:
        pool.warm()
        (worker,) = pool._idle
        _dead_unreaped(worker.pid)
        with worker.popen._waitpid_lock:  # type: ignore[attr-defined]
            request = _InThread(pool, path, message)
            _until(lambda: worker.conn.closed)
        error = request.join()
        assert isinstance(error, ReaderTimeoutError), error
        assert str(error) == (
            f"{path.name}: Bio-Formats gave no answer to open within 0.2 s; "
            "the worker was stopped and will be restarted"
        )
        assert error.path == path
        assert pool.pids() == [] and pool._live == 0 and pool.restarts == 2
    finally:
        pool.close()


_CHILD = """
import os, signal
from zstack_analyzer.readers.bioformats.pool import PoolOptions, WorkerPool, get_pool, pool_options
assert pool_options() == PoolOptions(), pool_options()
pool = get_pool()
assert isinstance(pool, WorkerPool) and pool.options == PoolOptions() and get_pool() is pool
pool.warm(1)
(pid,) = pool.pids()
# Not this process's stdin, stdout or stderr (pipes here): a worker holding a pipe of the
# server's would keep its reader from ever seeing the end of it.
fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)]
assert fds == ["/dev/null"] * 3, fds
os.kill(pid, signal.SIGSTOP)  # a worker that would not notice its parent went away
print(pid, flush=True)
"""


def test_a_process_starts_with_the_default_options_and_ends_its_workers_at_exit(
    bf_runtime: None,
) -> None:
    """In a process of its own: the options it starts with, its workers' stdio (/dev/null,
    whatever the process's own is), and its workers killed at exit.

    The worker is stopped before the exit: one that would notice that its parent went
    away (its socket's end) ends by itself, but one hung or stopped would stay forever.
    """
    import psutil

    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input="",  # its stdin a pipe too, as stdout and stderr: none may reach the worker
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing failed at exit either
    pid = int(done.stdout)
    left = psutil.pid_exists(pid)
    if left:  # not killed at exit: end it here
        psutil.Process(pid).kill()
    # Killed and reaped by the process's own exit, not left to notice its parent went away.
    assert not left
