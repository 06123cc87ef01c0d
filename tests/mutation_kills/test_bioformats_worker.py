"""The worker's protocol loop and error classes, in this process, over a real socket pair.

Why without a JVM: a JVM cannot be stopped or started twice in a process, so the pytest
process never hosts one. ``serve`` and ``classify`` are the worker's parts that answer
without Bio-Formats (ping, an unknown op, a request for a file that is not there, a
request missing its fields, the parent closing the socket); they run here on a
``_Worker`` made without its ``__init__`` (which is what starts the JVM). What needs
Bio-Formats is tested through real worker processes in tests/bioformats/.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import pytest

from zstack_analyzer.readers.bioformats.worker import _Worker, serve

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def served() -> Iterator[tuple[Connection, threading.Thread]]:
    """The parent's end of a socket pair whose other end ``serve`` answers in a thread."""
    parent, child = socket.socketpair()
    ours, theirs = Connection(parent.detach()), Connection(child.detach())
    worker = _Worker.__new__(_Worker)  # no JVM: only the paths that never reach one
    thread = threading.Thread(target=serve, args=(theirs, worker), daemon=True)
    thread.start()
    yield ours, thread
    ours.close()
    thread.join(10)
    theirs.close()


def _ask(conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
    conn.send_bytes(json.dumps(request).encode("utf-8"))
    assert conn.poll(10), "no answer"
    answer: dict[str, Any] = json.loads(conn.recv_bytes())
    return answer


def test_ping_unknown_ops_and_the_end_of_the_loop(
    served: tuple[Connection, threading.Thread],
) -> None:
    conn, thread = served
    assert _ask(conn, {"op": "ping"}) == {"ok": True, "result": os.getpid()}
    assert _ask(conn, {"op": "shutdown"}) == {
        "ok": False,
        "kind": "protocol",
        "message": "unknown op 'shutdown'",
    }
    assert _ask(conn, {}) == {"ok": False, "kind": "protocol", "message": "unknown op None"}
    conn.close()  # the parent goes: serve returns
    thread.join(10)
    assert not thread.is_alive()


def test_a_missing_file_is_missing_for_open_and_read(
    served: tuple[Connection, threading.Thread], tmp_path: Path
) -> None:
    conn, _ = served
    gone = str(tmp_path / "gone.dm3")
    answer = _ask(conn, {"op": "open", "path": gone})
    assert answer["ok"] is False and answer["kind"] == "missing"
    assert gone in answer["message"]
    request = {"op": "read", "path": gone, "series": 0, "t": 0, "c": 0, "z": 0}
    answer = _ask(conn, {**request, "region": [0, 0, 1, 1]})
    assert answer["ok"] is False and answer["kind"] == "missing"
    # No payload follows an error: the next answer is the next request's.
    assert _ask(conn, {"op": "ping"})["ok"] is True


def test_a_request_missing_its_fields_is_corrupt_not_fatal(
    served: tuple[Connection, threading.Thread],
) -> None:
    conn, _ = served
    assert _ask(conn, {"op": "open"}) == {"ok": False, "kind": "corrupt", "message": "'path'"}
    answer = _ask(conn, {"op": "read", "path": "/x"})
    assert answer == {"ok": False, "kind": "corrupt", "message": "'series'"}
    assert _ask(conn, {"op": "ping"})["ok"] is True


def test_classify_python_errors() -> None:
    worker = _Worker.__new__(_Worker)
    assert worker.classify(FileNotFoundError(2, "No such file", "/a")) == (
        "missing",
        "[Errno 2] No such file: '/a'",
    )
    assert worker.classify(ValueError("bad header")) == ("corrupt", "bad header")
    assert worker.classify(ValueError()) == ("corrupt", "ValueError")  # no text: its type
