"""The client's retry arithmetic: Retry-After parsed either way, and every wait bounded."""

from __future__ import annotations

import email.utils
import time

from zstack_analyzer.client import RetryPolicy
from zstack_analyzer.client._http import parse_retry_after
from zstack_analyzer.client.errors import (
    AuthError,
    ClientError,
    NotFoundError,
    RemoteCorruptFileError,
    ServiceUnavailableError,
    error_for,
)
from zstack_analyzer.errors import CorruptFileError


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    parsed = parse_retry_after(later)
    assert parsed is not None and 55 <= parsed <= 61
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_waits_are_capped() -> None:
    policy = RetryPolicy(attempts=5, max_wait_s=3.0, backoff_s=0.5)
    assert policy.wait(0, 30.0) == 3.0  # a storage outage's 30 s is capped
    assert policy.wait(0, 1.0) == 1.0
    assert [policy.wait(n, None) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]


def test_errors_by_code_then_status() -> None:
    corrupt = error_for(422, {"code": "corrupt_file", "detail": "x.czi: truncated"})
    assert isinstance(corrupt, RemoteCorruptFileError)
    assert isinstance(corrupt, CorruptFileError)
    assert (corrupt.status, corrupt.code, corrupt.message) == (
        422,
        "corrupt_file",
        "x.czi: truncated",
    )
    assert isinstance(error_for(404, {"code": "image_not_found"}), NotFoundError)
    assert isinstance(error_for(401, {}), AuthError)
    unavailable = error_for(503, {"code": "storage_unavailable"}, retry_after=30)
    assert isinstance(unavailable, ServiceUnavailableError)
    assert unavailable.retry_after == 30
    other = error_for(409, {"code": "original_changed", "detail": "changed"})
    assert type(other) is ClientError
    assert str(other) == "409 original_changed: changed"


def test_a_server_that_is_not_there_is_retried_then_a_transport_error() -> None:
    import socket

    import pytest

    from zstack_analyzer.client import Client, TransportError

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=3, backoff_s=0.01))
        waits: list[float] = []
        client.transport._sleep = waits.append
        with client, pytest.raises(TransportError) as failed:
            client.images.get("00000000-0000-0000-0000-000000000001")
    assert failed.value.status == 0
    assert failed.value.code == "transport_error"
    assert waits == [0.01, 0.02]
