"""The streaming multipart upload (``service/upload.py``) behind a small app of one route.

Why a small app: what ``receive_upload`` does depends only on the request it is given and
its settings (the real service adds detection, storage and a record after it), so every rule
can be checked exactly and quickly: the bytes, name, size and SHA-256 kept; the first
``file`` part only; the boundary, Content-Length, size and part caps with their messages;
bodies that end early, stall or are abandoned; the mirror written, completed or aborted; no
temp file left by any refusal; and the slots that cap uploads in flight.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.requests import Request  # noqa: TC002 - FastAPI reads the annotation

from tests.service.conftest import _testclient_class
from zstack_analyzer.service.config import UploadSettings
from zstack_analyzer.service.errors import UploadBusyError, install_error_handlers
from zstack_analyzer.service.upload import (
    CHUNK_BYTES,
    FRAMING_ALLOWANCE,
    UploadSlots,
    receive_upload,
)

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient

MAX = 3 * CHUNK_BYTES


class FailingMirror:
    """An object store that fails: on the second write, or when asked to abort."""

    def __init__(self, log: list[str], *, fail_write: bool, fail_abort: bool) -> None:
        self.log, self.fail_write, self.fail_abort, self.writes = log, fail_write, fail_abort, 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self.writes += 1
        if self.fail_write and self.writes == 2:
            self.log.append("write failed")
            raise OSError("the store refused a part")
        return len(data)

    def close(self) -> None:
        self.log.append("close")

    def abort(self) -> None:
        self.log.append("abort")
        if self.fail_abort:
            raise OSError("the store refused the abort")


class FileMirror:
    """A mirror that writes next to the upload and becomes visible only on ``close``."""

    def __init__(self, folder: Path, name: str | None, log: list[str]) -> None:
        self.part = folder / "mirror.part"
        self.final = folder / "mirror.done"
        self.log = log
        self.fh = self.part.open("wb")
        log.append(f"open {name}")

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        return self.fh.write(data)

    def close(self) -> None:
        self.fh.close()
        self.part.rename(self.final)
        self.log.append("close")

    def abort(self) -> None:
        self.fh.close()
        self.part.unlink()
        self.log.append("abort")


def _app(
    tmp_path: Path,
    *,
    max_bytes: int = MAX,
    mirror: bool = False,
    no_mirror: bool = False,
    failing: dict[str, bool] | None = None,
    settings: UploadSettings | None = None,
) -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    install_error_handlers(app)
    log: list[str] = []
    (tmp_path / "mirror").mkdir(exist_ok=True)

    def open_mirror(name: str | None) -> FileMirror | FailingMirror | None:
        if failing is not None:
            return FailingMirror(log, **failing)
        if no_mirror:
            log.append(f"declined {name}")
            return None
        return FileMirror(tmp_path / "mirror", name, log)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        destination = tmp_path / "staging.upload"
        received = await receive_upload(
            request,
            destination,
            max_bytes=max_bytes,
            settings=settings,
            open_mirror=open_mirror if (mirror or no_mirror or failing) else None,
        )
        return {
            "path": str(received.path),
            "filename": received.filename,
            "size": received.size_bytes,
            "sha256": received.sha256,
            "mirrored": received.mirrored,
            "written": hashlib.sha256(received.path.read_bytes()).hexdigest(),
        }

    return app, log


def _client(app: FastAPI) -> TestClient:
    return _testclient_class()(app)


def _body(parts: list[tuple[str, bytes]], boundary: str = "bnd", *, end: bool = True) -> bytes:
    out = b""
    for disposition, data in parts:
        out += f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if end else b"")


def _post(client: TestClient, body: bytes, boundary: str = "bnd", **headers: str) -> Any:
    return client.post(
        "/upload",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}", **headers},
    )


def _pixels(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _left(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.rglob("*") if p.is_file())


def test_the_file_part_is_kept_whole_across_write_steps(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    data = _pixels(2 * CHUNK_BYTES + 12345)
    body = _body(
        [
            ('name="note"', b"before"),
            ('name="file"; filename="stack.ome.tif"', data),
            ('name="file"; filename="second.tif"', b"ignored: only the first file part counts"),
            ('name="after"', b"x" * 100),
        ]
    )
    with _client(app) as client:
        answer = _post(client, body).json()
    digest = hashlib.sha256(data).hexdigest()
    assert answer == {
        "path": str(tmp_path / "staging.upload"),
        "filename": "stack.ome.tif",
        "size": len(data),
        "sha256": digest,
        "mirrored": False,
        "written": digest,
    }
    assert (tmp_path / "staging.upload").read_bytes() == data


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1])
def test_sizes_around_one_write_step(tmp_path: Path, size: int) -> None:
    app, _ = _app(tmp_path)
    data = _pixels(size)
    with _client(app) as client:
        answer = _post(client, _body([('name="file"; filename="a.tif"', data)])).json()
    assert answer["size"] == size
    assert answer["sha256"] == answer["written"] == hashlib.sha256(data).hexdigest()


def test_filenames_as_sent(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    with _client(app) as client:
        unnamed = _post(client, _body([('name="file"', b"abc")])).json()
        assert unnamed["filename"] is None
        assert unnamed["size"] == 3
        odd = 'name="file"; filename="caf\xe9.tif"'.encode("latin-1")
        body = b"--bnd\r\nContent-Disposition: form-data; " + odd + b"\r\n\r\nabc\r\n--bnd--\r\n"
        assert _post(client, body).json()["filename"] == "caf\ufffd.tif"
        utf8 = _post(client, _body([('name="file"; filename="Zellkern-µ.tif"', b"a")]))
        assert utf8.json()["filename"] == "Zellkern-µ.tif"


def test_not_multipart_or_a_bad_boundary_is_400(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    body = _body([('name="file"; filename="a.tif"', b"abc")])
    with _client(app) as client:
        for content_type in (
            "application/octet-stream",
            "multipart/form-data",
            "text/plain; boundary=bnd",
        ):
            refused = client.post("/upload", content=body, headers={"content-type": content_type})
            assert refused.status_code == 400, content_type
            assert refused.json()["code"] == "bad_upload"
            assert refused.json()["detail"] == (
                "upload must be multipart/form-data with a boundary and a 'file' field"
            )
        assert client.post("/upload", content=body).status_code == 400  # no content type
        longest = "b" * 70
        ok = _post(client, _body([('name="file"', b"abc")], longest), longest)
        assert ok.json()["size"] == 3
        over = "b" * 71
        refused = _post(client, _body([('name="file"', b"abc")], over), over)
        assert refused.status_code == 400
        assert refused.json()["detail"] == "multipart boundary of 71 characters; at most 70"
    assert _left(tmp_path) == ["staging.upload"]  # only the accepted upload


def test_content_length_is_checked_before_reading(tmp_path: Path) -> None:
    app, _ = _app(tmp_path, max_bytes=1000)
    with _client(app) as client:
        file_part = ('name="file"; filename="a.tif"', b"f" * 1000)
        base = len(_body([file_part, ('name="pad"', b"")]))
        room = 1000 + FRAMING_ALLOWANCE - base
        at_cap = _body([file_part, ('name="pad"', b"p" * room)])
        assert len(at_cap) == 1000 + FRAMING_ALLOWANCE
        assert _post(client, at_cap).json()["size"] == 1000  # the framing allowance
        over = _body([file_part, ('name="pad"', b"p" * (room + 1))])
        refused = _post(client, over)
        assert refused.status_code == 413
        assert refused.json()["code"] == "upload_too_large"
        assert refused.json()["detail"] == (
            f"upload of {len(over):,} bytes is over the limit of 1,000 bytes"
        )


def test_the_file_part_is_capped_while_streaming(tmp_path: Path) -> None:
    app, _ = _app(tmp_path, max_bytes=1000)
    with _client(app) as client:
        exact = _post(client, _body([('name="file"', b"f" * 1000)]))
        assert exact.json()["size"] == 1000
        refused = _post(client, _body([('name="file"', b"f" * 1001)]))
        assert refused.status_code == 413
        assert refused.json()["detail"] == "upload is over the limit of 1,000 bytes"
        other_parts = _post(client, _body([('name="x"', b"o" * 5000), ('name="file"', b"f" * 10)]))
        assert other_parts.json()["size"] == 10  # only the file part counts
    assert (tmp_path / "staging.upload").read_bytes() == b"f" * 10


def test_a_big_upload_over_the_cap_leaves_nothing(tmp_path: Path) -> None:
    """Refused mid-stream, after some of it was written: temp file removed, mirror aborted."""
    app, log = _app(tmp_path, max_bytes=2 * CHUNK_BYTES, mirror=True)
    whole = _body([('name="file"; filename="big.tif"', _pixels(2 * CHUNK_BYTES + 1))])
    status, body = _answer(_drive(app, _messages(whole)))
    assert status == 413
    assert b"upload is over the limit of 2,097,152 bytes" in body
    assert log == ["open big.tif", "abort"]
    assert _left(tmp_path) == []


def test_parts_and_their_headers_are_capped(tmp_path: Path) -> None:
    app, _ = _app(tmp_path, settings=UploadSettings(max_parts=3, max_part_headers=2))
    with _client(app) as client:
        three = [('name="a"', b"1"), ('name="b"', b"2"), ('name="file"', b"abc")]
        assert _post(client, _body(three)).json()["size"] == 3
        refused = _post(client, _body([('name="z"', b"0"), *three]))
        assert refused.status_code == 400
        assert refused.json()["detail"] == "the multipart body has more than 3 parts"
        headers = b'Content-Disposition: form-data; name="file"\r\nX-A: 1\r\nX-B: 2\r\n'
        many = b"--bnd\r\n" + headers + b"\r\nabc\r\n--bnd--\r\n"
        refused = _post(client, many)
        assert refused.status_code == 400
        assert refused.json()["detail"].startswith("malformed multipart body: ")
    default, _ = _app(tmp_path)  # no settings: the defaults (16 parts)
    with _client(default) as client:
        sixteen = [(f'name="p{i}"', b"v") for i in range(15)] + [('name="file"', b"abc")]
        assert _post(client, _body(sixteen)).json()["size"] == 3
        refused = _post(client, _body([('name="x"', b"v"), *sixteen]))
        assert refused.json()["detail"] == "the multipart body has more than 16 parts"
    assert _left(tmp_path) == []  # the refusal removed its own temp file


def test_a_missing_file_part_is_422_naming_the_field(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    with _client(app) as client:
        missing = _post(client, _body([('name="other"; filename="a.tif"', b"abc")]))
    assert missing.status_code == 422
    assert missing.json()["code"] == "validation_error"
    assert missing.json()["detail"] == "body.file: Field required"
    assert missing.json()["errors"] == [
        {"type": "missing", "loc": ["body", "file"], "msg": "Field required"}
    ]
    assert _left(tmp_path) == []


def test_bodies_that_end_early_or_are_malformed_are_400(tmp_path: Path) -> None:
    app, log = _app(tmp_path, mirror=True)
    with _client(app) as client:
        early = _post(client, _body([('name="file"; filename="cut.tif"', b"abc")], end=False))
        assert early.status_code == 400
        assert early.json()["detail"] == "the multipart body ended early (upload interrupted?)"
        bad = _post(client, b"--bnd\r\nno headers end here\r\n" + b"\x00" * 10 + b"--bnd--\r\n")
        assert bad.status_code == 400
        assert bad.json()["detail"].startswith("malformed multipart body: ")
    assert "close" not in log
    assert _left(tmp_path) == []


def test_the_mirror_gets_every_byte_and_is_completed(tmp_path: Path) -> None:
    app, log = _app(tmp_path, mirror=True)
    data = _pixels(CHUNK_BYTES + 999)
    with _client(app) as client:
        answer = _post(client, _body([('name="file"; filename="m.tif"', data)])).json()
    assert answer["mirrored"] is True
    assert log == ["open m.tif", "close"]
    assert (tmp_path / "mirror" / "mirror.done").read_bytes() == data
    assert (tmp_path / "staging.upload").read_bytes() == data


def test_an_empty_file_still_opens_and_completes_its_mirror(tmp_path: Path) -> None:
    app, log = _app(tmp_path, mirror=True)
    with _client(app) as client:
        answer = _post(client, _body([('name="file"; filename="e.tif"', b"")])).json()
    assert answer["mirrored"] is True
    assert answer["sha256"] == hashlib.sha256(b"").hexdigest()
    assert log == ["open e.tif", "close"]
    assert (tmp_path / "mirror" / "mirror.done").read_bytes() == b""


def test_a_declined_mirror_is_not_mirrored(tmp_path: Path) -> None:
    app, log = _app(tmp_path, no_mirror=True)
    with _client(app) as client:
        answer = _post(client, _body([('name="file"; filename="n.tif"', b"abc")])).json()
    assert answer["mirrored"] is False
    assert log == ["declined n.tif"]


def _drive(
    app: FastAPI, chunks: list[dict[str, Any]], sent: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Send ``chunks`` as the ASGI receive messages of one upload, then stall; return what was sent."""
    sent = [] if sent is None else sent
    body = b"".join(c.get("body", b"") for c in chunks)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"multipart/form-data; boundary=bnd"),
            (b"content-length", str(len(body) + 100).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent


def _answer(sent: list[dict[str, Any]]) -> tuple[int, bytes]:
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def test_a_stalled_body_is_408_and_leaves_nothing(tmp_path: Path) -> None:
    app, log = _app(tmp_path, mirror=True, settings=UploadSettings(idle_timeout_seconds=0.25))
    start = _body([('name="file"; filename="s.tif"', _pixels(CHUNK_BYTES + 5))], end=False)
    status, body = _answer(_drive(app, _messages(start)[:-1]))  # then nothing more comes
    assert status == 408
    assert (
        json.loads(body)["detail"] == "the upload body stalled for 0.25 s; the upload was abandoned"
    )
    assert log == ["open s.tif", "abort"]
    assert _left(tmp_path) == []


def test_a_client_gone_mid_upload_is_400_and_leaves_nothing(tmp_path: Path) -> None:
    app, log = _app(tmp_path, mirror=True)
    start = _body([('name="file"; filename="g.tif"', _pixels(CHUNK_BYTES + 5))], end=False)
    status, body = _answer(
        _drive(
            app,
            [
                {"type": "http.request", "body": start, "more_body": True},
                {"type": "http.disconnect"},
            ],
        )
    )
    assert status == 400
    assert json.loads(body)["detail"] == "the client disconnected before the upload finished"
    assert log == ["open g.tif", "abort"]
    assert _left(tmp_path) == []


def _messages(whole: bytes, step: int = 65536) -> list[dict[str, Any]]:
    pieces = [whole[i : i + step] for i in range(0, len(whole), step)]
    messages = [{"type": "http.request", "body": p, "more_body": True} for p in pieces]
    messages.insert(3, {"type": "http.request", "body": b"", "more_body": True})
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    return messages


def test_a_body_in_many_small_messages(tmp_path: Path) -> None:
    app, log = _app(tmp_path, mirror=True)
    data = _pixels(2 * CHUNK_BYTES + 70_000)
    whole = _body([('name="file"; filename="p.tif"', data)])
    status, body = _answer(_drive(app, _messages(whole)))
    assert status == 200
    assert hashlib.sha256(data).hexdigest().encode() in body
    assert (tmp_path / "staging.upload").read_bytes() == data
    assert (tmp_path / "mirror" / "mirror.done").read_bytes() == data
    assert log == ["open p.tif", "close"]


def test_a_batch_of_more_pieces_than_one_writev_takes(tmp_path: Path) -> None:
    """Messages of 300 bytes: one write batch holds over 3,000 pieces, more than IOV_MAX (1024)."""
    app, log = _app(tmp_path, mirror=True)
    data = _pixels(CHUNK_BYTES + 4321)
    whole = _body([('name="file"; filename="t.tif"', data)])
    status, body = _answer(_drive(app, _messages(whole, step=300)))
    assert status == 200
    assert hashlib.sha256(data).hexdigest().encode() in body
    assert (tmp_path / "staging.upload").read_bytes() == data
    assert (tmp_path / "mirror" / "mirror.done").read_bytes() == data
    assert log == ["open t.tif", "close"]


def test_slots_cap_uploads_per_client_then_in_all() -> None:
    slots = UploadSlots(
        UploadSettings(max_concurrent=3, max_concurrent_per_client=2, retry_after_seconds=7)
    )
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(UploadBusyError) as busy, slots.hold("a"):
            pass
        assert busy.value.status == 429
        assert busy.value.retry_after == 7
        assert str(busy.value) == (
            "this client already has 2 uploads in flight (at most 2); retry later"
        )
        with slots.hold("b"):
            with pytest.raises(UploadBusyError) as full, slots.hold("c"):
                pass
            assert full.value.status == 503
            assert full.value.retry_after == 7
            assert str(full.value) == "the server has 3 uploads in flight (at most 3)"
        with slots.hold("c"):  # b's slot is free again
            assert (slots.total, dict(slots.per_client)) == (3, {"a": 2, "c": 1})
    assert (slots.total, dict(slots.per_client)) == (0, {})  # nothing kept per past client
    with pytest.raises(RuntimeError), slots.hold("a"):
        raise RuntimeError
    assert (slots.total, dict(slots.per_client)) == (0, {})  # released on failure too


def test_parts_with_odd_or_no_names_are_skipped(tmp_path: Path) -> None:
    """A part whose name is not UTF-8, or that has no name or no Content-Disposition, is not the file."""
    app, _ = _app(tmp_path)
    body = (
        b'--bnd\r\nContent-Disposition: form-data; name="\xff\xfe"\r\n\r\nodd\r\n'
        b'--bnd\r\nContent-Disposition: form-data; filename="nameless.tif"\r\n\r\nnone\r\n'
        b"--bnd\r\nContent-Type: text/plain\r\n\r\nbare\r\n"
        b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="real.tif"\r\n\r\n'
        b"the file\r\n--bnd--\r\n"
    )
    with _client(app) as client:
        answer = _post(client, body).json()
    assert answer["filename"] == "real.tif"
    assert answer["size"] == len(b"the file")
    assert (tmp_path / "staging.upload").read_bytes() == b"the file"


def test_part_header_lines_are_capped_as_configured(tmp_path: Path) -> None:
    app, _ = _app(tmp_path, settings=UploadSettings(max_part_header_bytes=256))
    with _client(app) as client:
        for size, status in ((200, 200), (300, 400)):
            header = f"X-Note: {'n' * size}\r\n".encode()
            body = (
                b'--bnd\r\nContent-Disposition: form-data; name="file"\r\n'
                + header
                + b"\r\nabc\r\n--bnd--\r\n"
            )
            assert _post(client, body).status_code == status, size


def test_a_failing_mirror_write_leaves_nothing(tmp_path: Path) -> None:
    """The object store refuses a part mid-upload: the error is answered, the temp file removed."""
    app, log = _app(tmp_path, failing={"fail_write": True, "fail_abort": False})
    whole = _body([('name="file"; filename="f.tif"', _pixels(3 * CHUNK_BYTES - 1000))])
    sent: list[dict[str, Any]] = []
    with pytest.raises(OSError, match="the store refused a part"):  # re-raised after the 500
        _drive(app, _messages(whole), sent)
    assert _answer(sent)[0] == 500
    assert log == ["write failed", "abort"]
    assert _left(tmp_path) == []


def test_a_failing_abort_does_not_hide_the_refusal(tmp_path: Path) -> None:
    """Over the cap with a store that cannot abort: still 413, and the temp file is removed."""
    app, log = _app(
        tmp_path, max_bytes=2 * CHUNK_BYTES, failing={"fail_write": False, "fail_abort": True}
    )
    whole = _body([('name="file"; filename="f.tif"', _pixels(2 * CHUNK_BYTES + 1))])
    status, body = _answer(_drive(app, _messages(whole)))
    assert status == 413
    assert json.loads(body)["code"] == "upload_too_large"
    assert log == ["abort"]
    assert _left(tmp_path) == []


def test_a_cancelled_upload_still_cleans_up(tmp_path: Path) -> None:
    """The server stops (the request's task is cancelled) mid-upload: temp file and mirror go."""
    app, log = _app(tmp_path, mirror=True)
    start = _body([('name="file"; filename="c.tif"', _pixels(CHUNK_BYTES + 5))], end=False)
    pending = _messages(start)[:-1]
    stalled = anyio.Event()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), (b"content-type", b"multipart/form-data; boundary=bnd")],
        "client": ("127.0.0.1", 50000),
        "server": ("t", 80),
    }

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        stalled.set()
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        pass

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(app, scope, receive, send)
            await stalled.wait()
            await anyio.sleep(0.2)  # the first write is in flight or done
            group.cancel_scope.cancel()

    anyio.run(main)
    assert log == ["open c.tif", "abort"]
    assert _left(tmp_path) == []
