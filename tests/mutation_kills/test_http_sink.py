"""``zstack ingest --server`` file by file (``batch/remote.py``) against a live server.

The sink's own outcomes for each answer the server gives: an upload (201), the same bytes
again (looked up, present, with the record's id), a second copy of those bytes in one run,
registration in place (new, present, refreshed), an unsupported file, a refused token
(on the lookup and on the registration), a set in copy mode, a file that vanished, no server.
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import TYPE_CHECKING

import httpx

from tests.batch.conftest import make_archive
from tests.service.live import live_server
from zstack_analyzer.batch.ingest import Commit
from zstack_analyzer.batch.remote import HttpSink, Response
from zstack_analyzer.batch.runner import ThreadRunner
from zstack_analyzer.batch.walk import FileEntry

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "s3cret"  # noqa: S105 - a test server's token
WRONG = "wrong"  # a token the test server refuses


def _entry(path: Path, members: tuple[str, ...] = ()) -> FileEntry:
    st = path.stat()
    return FileEntry(str(path), st.st_size, st.st_mtime_ns, members=members)


def _through(sink: HttpSink, entry: FileEntry) -> Commit:
    return sink.commit(entry, sink.task()(sink.job(entry)))


def test_uploads_looked_up_first_and_their_outcomes(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    files = make_archive(archive, n=2)
    twin = archive / "twin.ome.tif"
    shutil.copyfile(files[0], twin)
    note = archive / "readme.md"
    note.write_text("# not an image")
    with live_server(tmp_path / "data", api_token=TOKEN) as base:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with HttpSink(base + "/", token=TOKEN, threads=3) as sink:
            assert not sink.is_present(_entry(files[0]))
            assert sink.job(_entry(files[0])) == _entry(files[0])
            runner = sink.local_runner().__enter__()
            assert isinstance(runner, ThreadRunner)
            assert runner.description == "3 threads"
            first = _through(sink, _entry(files[0]))
            assert first.outcome == "ingested"
            assert first.reason == ""
            listed = httpx.get(f"{base}/api/images/", headers=headers).json()
            assert [item["id"] for item in listed["data"]] == [first.image_id]
            again = _through(sink, _entry(twin))
            assert again == Commit("present", "Already present", first.image_id)
            unsupported = _through(sink, _entry(note))
            assert unsupported.outcome == "unsupported"
            assert unsupported.reason
            assert not unsupported.reason.startswith("HTTP")
        # a wrong token: the lookup is refused, and that refusal is the file's outcome
        with HttpSink(base, token=WRONG) as refused:
            failed = _through(refused, _entry(files[1]))
            assert failed.outcome == "failed"
            assert failed.reason.startswith("HTTP 401: ")
        # no token at all: refused the same
        with HttpSink(base) as anonymous:
            assert _through(anonymous, _entry(files[1])).reason.startswith("HTTP 401: ")
        listed = httpx.get(f"{base}/api/images/", headers=headers).json()
        assert listed["count"] == 1


def test_the_same_bytes_twice_at_once_are_uploaded_once(tmp_path: Path) -> None:
    files = make_archive(tmp_path / "archive", n=1)
    twin = tmp_path / "archive" / "twin.ome.tif"
    shutil.copyfile(files[0], twin)
    with live_server(tmp_path / "data") as base, HttpSink(base) as sink:
        hold = threading.Event()
        original = sink._upload_unless_present

        def slow_upload(entry: FileEntry, sha256: str) -> Response:
            hold.wait(30)  # the first upload is still in flight when the twin comes
            return original(entry, sha256)

        sink._upload_unless_present = slow_upload  # type: ignore[method-assign]
        outcomes: list[Commit] = []
        worker = threading.Thread(target=lambda: outcomes.append(_through(sink, _entry(files[0]))))
        worker.start()
        try:
            while not sink._in_flight:
                threading.Event().wait(0.01)
            twin_commit = _through(sink, _entry(twin))
        finally:
            hold.set()
            worker.join(60)
        assert twin_commit == Commit("present", "Already present (same bytes in this run)", "None")
        assert outcomes[0].outcome == "ingested"
        assert not sink._in_flight
        # once done, the same bytes are looked up (and found) as usual
        assert _through(sink, _entry(twin)).outcome == "present"
        assert httpx.get(f"{base}/api/images/").json()["count"] == 1


def test_registration_in_place_new_present_refreshed(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    files = make_archive(archive, n=1)
    link = tmp_path / "link.ome.tif"
    link.symlink_to(files[0])
    with (
        live_server(tmp_path / "data", import_roots=[archive], api_token=TOKEN) as base,
        HttpSink(base, token=TOKEN, in_place=True) as sink,
    ):
        new = _through(sink, _entry(link))  # registered by its real path, inside the root
        assert new.outcome == "ingested"
        assert new.reason == ""
        present = _through(sink, _entry(files[0]))
        assert present.outcome == "present"
        assert present.image_id == new.image_id
        assert present.reason.startswith("Already")
        data = files[0].read_bytes()
        files[0].write_bytes(data)  # same bytes, a new mtime
        later = files[0].stat().st_mtime_ns + 5_000_000_000
        os.utime(files[0], ns=(later, later))
        refreshed = _through(sink, _entry(files[0]))
        assert refreshed == Commit("ingested", "refreshed", new.image_id)
        outside = tmp_path / "outside.ome.tif"
        shutil.copyfile(files[0], outside)
        refused = _through(sink, _entry(outside))
        assert refused.outcome == "failed"
        assert refused.reason.startswith("HTTP 403: ") or refused.reason.startswith("HTTP 400: ")
    with HttpSink(base, in_place=True) as gone:  # the server has stopped
        down = _through(gone, _entry(files[0]))
    assert down.outcome == "failed"
    assert down.reason.startswith("no answer from the server: ")


def test_what_never_reaches_the_server(tmp_path: Path) -> None:
    files = make_archive(tmp_path / "archive", n=1)
    with live_server(tmp_path / "data") as base, HttpSink(base) as sink:
        as_set = _entry(files[0], members=("a.tif", "b.tif"))
        commit = _through(sink, as_set)
        assert commit == Commit(
            "failed",
            f"{files[0].name}: a multi-file image (3 files) cannot be uploaded over HTTP; "
            "register it in place (--in-place) or run the ingest on the server's machine",
        )
        gone = _entry(files[0])
        files[0].unlink()
        assert _through(sink, gone) == Commit(
            "failed", f"{files[0].name}: No such file or directory"
        )
        assert httpx.get(f"{base}/api/images/").json()["count"] == 0


def test_answers_without_json_or_without_a_dict(tmp_path: Path) -> None:
    from zstack_analyzer.batch.remote import _answer

    text = httpx.Response(502, text="x" * 600)
    assert _answer(text) == Response(502, {"detail": "x" * 500})
    listed = httpx.Response(200, json=[1, 2])
    assert _answer(listed) == Response(200, {"data": [1, 2]})
    sink = HttpSink("http://127.0.0.1:9")
    entry = FileEntry("/x", 1, 1)
    try:
        assert sink.commit(entry, Response(0, {}, "why")) == Commit("failed", "why")
        assert sink.commit(entry, Response(500, {})) == Commit("failed", "HTTP 500: HTTP 500")
        assert sink.commit(entry, Response(502, {"x": 1})) == Commit("failed", "HTTP 502: {'x': 1}")
        assert sink.commit(entry, Response(400, {"detail": "bad"})) == Commit(
            "failed", "HTTP 400: bad"
        )
        assert sink.commit(
            entry, Response(400, {"detail": "no", "code": "unsupported_format"})
        ) == Commit("unsupported", "no")
        assert sink.commit(entry, Response(200, {})) == Commit("present", "", "None")
    finally:
        sink.close()
