"""Issue #15, service half, over real sockets against ``zstack serve``.

Request heads before auth, idle and aborted uploads, upload caps, the
Content-Length refusal and kill -9 during uploads: the server's answers, its
temp files and its peak memory.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.service.conftest import write_ome_tiff
from tests.service.served import raw_request, read_response, served

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1024 * 1024
TOKEN = "live-s3cret"  # noqa: S105  (a test server's token)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _wait_until(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def _upload_head(boundary: str, length: int, *, token: str = TOKEN) -> bytes:
    return (
        f"POST /api/images/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.tif"\r\n\r\n'
    ).encode()


def _send_big_header(port: int, header_bytes: int, result: list[object]) -> None:
    """Send a request whose one header is ``header_bytes`` long, in 64 KiB pieces."""
    try:
        sock = raw_request(port, b"GET /api/images/ HTTP/1.1\r\nHost: x\r\nX-Big: ")
    except OSError as exc:
        result.append(exc)
        return
    piece = b"a" * 65536
    sent = 0
    try:
        while sent < header_bytes:
            sock.sendall(piece)
            sent += len(piece)
        sock.sendall(b"\r\n\r\n")
        status, _, _ = read_response(sock)
        result.append(status)
    except OSError:
        result.append("closed")  # refused mid-header: the server closed the connection
    finally:
        result.append(sent)
        sock.close()


def test_huge_request_heads_are_refused_before_auth_in_bounded_memory(tmp_path: Path) -> None:
    """Four 32 MiB headers at once: each refused after the 64 KiB cap, server memory flat.

    Before: the header was buffered whole (httptools) and only then answered
    401, so four of them cost the server hundreds of MiB.
    """
    with served(tmp_path / "data", ZSTACK_API_TOKEN=TOKEN) as server:
        before = server.peak_rss_bytes()
        results: list[list[object]] = [[] for _ in range(4)]
        threads = [
            threading.Thread(target=_send_big_header, args=(server.port, 32 * MiB, r))
            for r in results
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        growth = server.peak_rss_bytes() - before
        for outcome in results:
            status, sent = outcome
            assert status in (400, 431, "closed"), outcome
            assert isinstance(sent, int) and sent < 32 * MiB, "the server read the whole header"
        assert growth < 48 * MiB, f"peak RSS grew by {growth / MiB:.0f} MiB"
        # Reads that end a head or a body are not head bytes, however long: a head with
        # a 120 KiB body in one write, then a body whose last 120 KiB come in one write;
        # each time the next request on the same connection is read afresh.
        body = b"\0" * (120 * 1024)
        head = (
            "POST /api/images/upload HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        health = f"GET /api/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        sock = raw_request(server.port, head + body)
        try:
            assert read_response(sock)[0] == 400  # not multipart: bad_upload, not 431
            sock.sendall(health.encode())
            assert read_response(sock)[0] == 200
            sock.sendall(head + body[:10])
            assert read_response(sock)[0] == 400  # answered before the body is read
            time.sleep(0.3)  # the rest of the body arrives as a read of its own
            sock.sendall(body[10:])
            time.sleep(0.3)
            sock.sendall(health.encode())
            assert read_response(sock)[0] == 200
        finally:
            sock.close()
        # The server is fine, and a normal request still needs its token.
        assert httpx.get(f"{server.base_url}/api/health", headers=AUTH).status_code == 200
        assert httpx.get(f"{server.base_url}/api/health").status_code == 401
        print(f"big-header peak RSS growth: {growth / MiB:.1f} MiB (4 x 32 MiB headers)")


def test_idle_and_aborted_uploads_leave_nothing(tmp_path: Path) -> None:
    """A stalled upload gets 408 and its temp file goes at once; so does a dropped one."""
    data_dir = tmp_path / "data"
    tmp_dir = data_dir / "tmp"
    with served(
        data_dir, ZSTACK_API_TOKEN=TOKEN, ZSTACK_UPLOADS__IDLE_TIMEOUT_SECONDS="1"
    ) as server:
        stalled = raw_request(
            server.port, _upload_head("bnd", 10 * MiB) + b"II*\x00" + b"\0" * 5000
        )
        _wait_until(lambda: any(tmp_dir.iterdir()), "the upload's temp file appears")
        status, _, body = read_response(stalled)  # no more bytes: the server gives up
        stalled.close()
        assert status == 408, body
        assert json.loads(body)["code"] == "upload_timeout"
        _wait_until(lambda: not any(tmp_dir.iterdir()), "the stalled upload's temp file goes")

        dropped = raw_request(server.port, _upload_head("bnd", 10 * MiB) + b"\0" * 200_000)
        _wait_until(lambda: any(tmp_dir.iterdir()), "the second temp file appears")
        dropped.close()  # the client goes away mid-body
        _wait_until(lambda: not any(tmp_dir.iterdir()), "the dropped upload's temp file goes")
        assert httpx.get(f"{server.base_url}/api/health", headers=AUTH).status_code == 200
        listing = httpx.get(f"{server.base_url}/api/images/", headers=AUTH).json()
        assert listing["count"] == 0


def test_upload_caps_answer_429_and_503_with_retry_after(tmp_path: Path) -> None:
    """Two uploads in flight per client address, three in all (127.0.0.2 is another client)."""
    data_dir = tmp_path / "data"
    env = {
        "ZSTACK_API_TOKEN": TOKEN,
        "ZSTACK_UPLOADS__MAX_CONCURRENT_PER_CLIENT": "2",
        "ZSTACK_UPLOADS__MAX_CONCURRENT": "3",
        "ZSTACK_UPLOADS__RETRY_AFTER_SECONDS": "7",
    }
    with served(data_dir, **env) as server:
        held = [raw_request(server.port, _upload_head("bnd", MiB)) for _ in range(2)]
        _wait_until(lambda: len(list((data_dir / "tmp").iterdir())) == 2, "two uploads in flight")
        third = raw_request(server.port, _upload_head("bnd", MiB))
        status, headers, body = read_response(third)
        assert status == 429, body
        assert headers["retry-after"] == "7"
        assert json.loads(body)["code"] == "too_many_uploads"
        other = raw_request(server.port, _upload_head("bnd", MiB), source="127.0.0.2")
        _wait_until(lambda: len(list((data_dir / "tmp").iterdir())) == 3, "three in flight")
        fourth = raw_request(server.port, _upload_head("bnd", MiB), source="127.0.0.3")
        status, headers, body = read_response(fourth)
        assert status == 503, body
        assert headers["retry-after"] == "7"
        for sock in [*held, other, third, fourth]:
            sock.close()
        _wait_until(lambda: not any((data_dir / "tmp").iterdir()), "temp files of the held go")
        # Slots are given back: a real upload goes through.
        source = write_ome_tiff(tmp_path / "ok.ome.tif")
        with source.open("rb") as fh:
            response = httpx.post(
                f"{server.base_url}/api/images/upload",
                files={"file": ("ok.ome.tif", fh)},
                headers=AUTH,
            )
        assert response.status_code == 201, response.text


def test_oversized_content_length_is_refused_before_the_body(tmp_path: Path) -> None:
    """413 from the declared length alone, without waiting for (or storing) the body."""
    data_dir = tmp_path / "data"
    with served(
        data_dir,
        ZSTACK_API_TOKEN=TOKEN,
        ZSTACK_LIMITS__MAX_UPLOAD_BYTES=str(MiB),
        ZSTACK_UPLOADS__IDLE_TIMEOUT_SECONDS="60",
    ) as server:
        sock = raw_request(server.port, _upload_head("bnd", 1024 * MiB), timeout=20)
        try:
            status, _, body = read_response(sock)
        except TimeoutError:
            pytest.fail("the server waited for the body instead of refusing the declared size")
        finally:
            sock.close()
        assert status == 413, body
        assert json.loads(body)["code"] == "upload_too_large"
        assert not any((data_dir / "tmp").iterdir())


def test_kill_9_during_uploads_and_deletes_leaves_no_half_state(tmp_path: Path) -> None:
    """kill -9 with uploads mid-body and deletes in flight; after a restart every row has its
    whole file, no file lacks a row, and no temp file is left."""
    data_dir = tmp_path / "data"
    sources = [write_ome_tiff(tmp_path / f"k{i}.ome.tif", seed=i) for i in range(6)]
    with served(data_dir, ZSTACK_API_TOKEN=TOKEN) as server:
        ids = []
        for path in sources:
            with path.open("rb") as fh:
                response = httpx.post(
                    f"{server.base_url}/api/images/upload",
                    files={"file": (path.name, fh)},
                    headers=AUTH,
                )
            ids.append(response.json()["id"])
        partial = [
            raw_request(server.port, _upload_head("bnd", 50 * MiB) + b"\0" * MiB) for _ in range(3)
        ]
        _wait_until(lambda: len(list((data_dir / "tmp").iterdir())) == 3, "uploads in flight")

        def delete(image_id: str) -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                httpx.delete(f"{server.base_url}/api/images/{image_id}", headers=AUTH, timeout=10)

        deleters = [threading.Thread(target=delete, args=(i,)) for i in ids[:3]]
        for thread in deleters:
            thread.start()
        server.kill9()
        for thread in deleters:
            thread.join(30)
        for sock in partial:
            sock.close()
        server.start()  # the same data dir: start-up sweep, then serve
        listing = httpx.get(
            f"{server.base_url}/api/images/", params={"limit": 1000}, headers=AUTH
        ).json()
        remaining = {item["id"] for item in listing["data"]}
        assert set(ids[3:]) <= remaining <= set(ids)
        by_id = dict(zip(ids, sources, strict=True))
        for image_id in remaining:
            download = httpx.get(f"{server.base_url}/api/images/{image_id}/download", headers=AUTH)
            assert download.content == by_id[image_id].read_bytes()
        assert len(list((data_dir / "images").iterdir())) == len(remaining)
        assert not any((data_dir / "tmp").iterdir())


def test_loopback_sources_are_distinct_clients() -> None:
    """The cap test relies on 127.0.0.2 being a separate client address on this host."""
    with socket.socket() as server_sock:
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        port = server_sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0)):
            conn, address = server_sock.accept()
            conn.close()
    assert address[0] == "127.0.0.2"


def test_100_concurrent_mixed_requests(tmp_path: Path, database_url: str | None) -> None:
    """Uploads, renders, lists, ranged downloads, deletes and hostile requests at once.

    No answer is a 5xx, each kind gets its documented status, and afterwards rows,
    files and temp files agree.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tests.service.live import live_server

    sources = [
        write_ome_tiff(tmp_path / f"m{i}.ome.tif", (2, 3, 16, 20), seed=i) for i in range(20)
    ]
    with (
        live_server(
            tmp_path / "data", database_url=database_url, uploads={"max_concurrent_per_client": 64}
        ) as base,
        httpx.Client(base_url=base, timeout=120) as client,
    ):

        def post(path: Path) -> httpx.Response:
            with path.open("rb") as fh:
                return client.post("/api/images/upload", files={"file": (path.name, fh)})

        ids = [post(path).json()["id"] for path in sources[:10]]
        doomed = ids[5:]
        kept = ids[:5]
        boundary = "b" * 1000
        jobs: list[tuple[str, Any]] = []
        jobs += [("upload", lambda p=p: post(p)) for p in sources[10:]]
        jobs += [
            ("render", lambda i=i, k=k: client.get(f"/api/images/{kept[i % 5]}/{k}"))
            for i in range(10)
            for k in ("thumbnail", "mip?axis=1", "slice/2?channel=1")
        ]
        jobs += [
            ("list", lambda n=n: client.get("/api/images/", params={"limit": n + 1}))
            for n in range(20)
        ]
        jobs += [
            (
                "range",
                lambda i=i: client.get(
                    f"/api/images/{kept[i % 5]}/download", headers={"Range": "bytes=0-99"}
                ),
            )
            for i in range(10)
        ]
        jobs += [
            ("metadata", lambda i=i: client.get(f"/api/images/{kept[i % 5]}/metadata"))
            for i in range(10)
        ]
        jobs += [
            ("metadata", lambda i=i: client.get(f"/api/images/{kept[i]}/histogram"))
            for i in range(5)
        ]
        jobs += [("delete", lambda i=i: client.delete(f"/api/images/{i}")) for i in doomed]
        jobs += [
            ("render-deleted", lambda i=i: client.get(f"/api/images/{i}/orthogonal"))
            for i in doomed
        ]
        jobs += [
            ("hostile", lambda: client.get("/api/images/", params={"skip": 2**63})),
            ("hostile", lambda: client.get("/api/images/", params={"q": "\x00%_"})),
            ("hostile", lambda: client.put(f"/api/images/{kept[0]}")),
            (
                "hostile",
                lambda: client.post(
                    "/api/images/upload",
                    content=b"--x--",
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                ),
            ),
            (
                "hostile",
                lambda: client.get(
                    f"/api/images/{kept[0]}/download", headers={"Range": "bytes=oops"}
                ),
            ),
        ]
        assert len(jobs) == 100
        details: list[str] = []

        def call(job: tuple[str, Any]) -> tuple[str, int]:
            response = job[1]()
            if response.status_code >= 500:
                details.append(f"{job[0]}: {response.status_code} {response.text[:300]}")
            return job[0], response.status_code

        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(call, jobs))
        expected = {
            "upload": {201},
            "render": {200},
            "list": {200},
            "metadata": {200},
            "range": {206},
            "delete": {204},
            "render-deleted": {200, 404},
            "hostile": {200, 400, 405, 422},
        }
        outcomes: Counter[tuple[str, int]] = Counter(results)
        assert all(status in expected[kind] for kind, status in results), (outcomes, details)
        print(f"100 mixed requests: {dict(sorted(outcomes.items()))}")
        listing = client.get("/api/images/", params={"limit": 1000}).json()
        assert listing["count"] == 15
        data_dir = tmp_path / "data"
        assert len(list((data_dir / "images").iterdir())) == 15
        assert not any((data_dir / "tmp").iterdir())
