"""How the service is put on a socket (``service/server.py``), on a tiny ASGI app.

What the broader tests leave open: the exact 431 answer (status line, headers, body), the
options handed to uvicorn for each ``http`` setting, a head over the cap refused and the
connection closed while heads and bodies under it (several on one connection, a body far
larger than the cap) pass, and Alembic's INFO lines kept only at debug level.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

import pytest

from zstack_analyzer.service.config import Settings
from zstack_analyzer.service.server import (
    _refusal,
    bounded_httptools_protocol,
    configure_logging,
    uvicorn_config,
    uvicorn_options,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

CAP = 1024


def test_the_refusal_is_a_complete_431_problem() -> None:
    raw = _refusal(65536)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines == [
        "HTTP/1.1 431 Request Header Fields Too Large",
        "content-type: application/problem+json",
        "connection: close",
        f"content-length: {len(body)}",
    ]
    assert json.loads(body) == {
        "type": "https://zstack-analyzer.invalid/problems/headers-too-large",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": "the request line and headers are over 65,536 bytes",
        "code": "headers_too_large",
    }


def test_uvicorn_options_follow_the_http_settings() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        http={
            "max_header_bytes": 2048,
            "limit_concurrency": 7,
            "keep_alive_seconds": 1.5,
            "shutdown_grace_seconds": 2.5,
        },
    )
    options = uvicorn_options(settings)
    protocol = options.pop("http")
    assert options == {
        "h11_max_incomplete_event_size": 2048,
        "limit_concurrency": 7,
        "timeout_keep_alive": 1.5,
        "timeout_graceful_shutdown": 2.5,
        "ws": "none",
    }
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(protocol, HttpToolsProtocol)
    assert protocol.__name__ == "BoundedHttpToolsProtocol"
    app = _echo_length
    config = uvicorn_config(app, settings, limit_concurrency=3, log_level="error")
    assert config.app is app
    assert (config.limit_concurrency, config.timeout_keep_alive) == (3, 1.5)
    assert config.http is protocol or config.http.__name__ == "BoundedHttpToolsProtocol"


async def _echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """200 with the number of body bytes received (a plain ASGI app, no service)."""
    if scope["type"] != "http":
        return
    total = 0
    while True:
        message = await receive()
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(total).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def port() -> Iterator[int]:
    """A uvicorn server of its own per test (each test reaches the protocol's set-up)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        _echo_length,
        http=bounded_httptools_protocol(CAP),
        log_level="error",
        lifespan="off",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(30)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _request(path: str, *, body: bytes = b"", extra: str = "", close: bool = False) -> bytes:
    headers = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n{extra}"
    if close:
        headers += "connection: close\r\n"
    return headers.encode() + b"\r\n"


def _pause() -> None:
    """Let the server read what was sent (so the next send is a read of its own)."""
    threading.Event().wait(0.1)


def test_without_httptools_uvicorn_parses_with_h11(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "httptools", None)  # find_spec: not installed
    options = uvicorn_options(Settings(_env_file=None))  # type: ignore[call-arg]
    assert options["http"] == "h11"
    assert options["h11_max_incomplete_event_size"] == 64 * 1024


def test_a_head_over_the_cap_is_refused_and_closed(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 700)
        _pause()
        sock.sendall(b"b" * 700)
        answer = _read_all(sock)
    assert answer == _refusal(CAP)


def test_a_head_of_exactly_the_cap_passes(port: int) -> None:
    start = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-pad: "
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(start + b"a" * (CAP - len(start)))
        _pause()
        sock.sendall(b"\r\n\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK")


def test_heads_and_bodies_under_the_cap_pass(port: int) -> None:
    pad = "x-pad: " + "p" * 600 + "\r\n"
    big_body = b"z" * (20 * CAP)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_request("/one", body=big_body, extra=pad))
        _pause()
        sock.sendall(big_body[: 10 * CAP])
        _pause()
        sock.sendall(big_body[10 * CAP :])
        for _ in range(3):  # heads of 700 bytes each, 2100 on one connection
            _pause()
            half = _request("/again", extra=pad)
            sock.sendall(half[:400])  # a head in two reads, each under the cap
            _pause()
            sock.sendall(half[400:])
        _pause()
        sock.sendall(_request("/last", extra=pad, close=True))
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 200 OK") == 5
    assert b"431" not in answer
    assert answer.endswith(b"0")
    assert str(len(big_body)).encode() in answer


def test_logging_level_format_and_alembic_only_at_debug() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    alembic = logging.getLogger("alembic")
    try:
        for level, alembic_level in (
            ("info", logging.WARNING),
            ("debug", logging.NOTSET),
            ("warning", logging.WARNING),
        ):
            root.handlers = []  # as in a fresh process: basicConfig sets the level
            configure_logging(level)
            assert root.level == getattr(logging, level.upper())
            [handler] = root.handlers
            assert handler.formatter is not None
            assert handler.formatter._fmt == "%(asctime)s %(levelname)s %(name)s: %(message)s"
            assert alembic.level == alembic_level
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        alembic.setLevel(logging.NOTSET)


def test_whole_requests_in_one_read_each_are_not_head_bytes(port: int) -> None:
    pad = "x-pad: " + "p" * 600 + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for _ in range(3):  # 700 bytes a read, each a whole request: 2100 in all
            sock.sendall(_request("/whole", body=b"abc", extra=pad) + b"abc")
            _pause()
        sock.sendall(_request("/last", close=True))
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 200 OK") == 4


def test_the_next_head_on_a_connection_is_capped_too(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_request("/first"))
        _pause()
        start = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-pad: "
        sock.sendall(start + b"a" * (CAP - len(start)))  # exactly the cap: still fine
        _pause()
        sock.sendall(b"\r\n\r\n")
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_request("/first"))
        _pause()
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 700)
        _pause()
        sock.sendall(b"b" * 700)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(_refusal(CAP))
