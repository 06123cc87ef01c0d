"""``batch/filing.py``: which dataset a file goes to, the sink that files it, the HTTP filer.

On a real service (SQLite, in-process test client) and the real sinks: the local
sink runs its per-file task on a real OME-TIFF, the HTTP sink interprets the
server's answers and the HTTP filer makes and finds projects and datasets through
the API. The filing of a record whose commit did not store it, a failure of the
filer (reported as the file's failure, the record kept), and the server's error
messages as the filer raises them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.mutation_kills.service_db import _template
from tests.service.conftest import upload, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.batch.filing import Filing, FilingSink, HttpFiler, _raise, filing_roots
from zstack_analyzer.batch.ingest import Commit
from zstack_analyzer.batch.remote import HttpSink, Response
from zstack_analyzer.batch.runner import ThreadRunner
from zstack_analyzer.batch.walk import FileEntry

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings


# ---------------------------------------------------------------- Filing.dataset_for


def test_a_fixed_dataset_or_none() -> None:
    assert Filing(dataset="Plate").dataset_for("/any/where/x.tif") == "Plate"
    assert Filing().dataset_for("/any/where/x.tif") is None
    assert Filing(project="P").dataset_for("/x.tif") is None
    # The fixed dataset even when roots are given: only --dataset-from-folder reads them.
    assert Filing(dataset="D", roots=("/data",)).dataset_for("/data/a/b/x.tif") == "D"


def test_active_only_with_a_dataset_or_from_folders() -> None:
    assert Filing().active is False
    assert Filing(project="P").active is False
    assert Filing(dataset="D").active is True
    assert Filing(from_folder=True).active is True


def test_datasets_from_folders_below_the_root(tmp_path: Path) -> None:
    root = tmp_path / "screen"
    (root / "p1" / "A01").mkdir(parents=True)
    filing = Filing(from_folder=True, roots=(str(root),))
    assert filing.dataset_for(str(root / "p1" / "A01" / "x.tif")) == "p1/A01"
    assert filing.dataset_for(str(root / "p1" / "x.tif")) == "p1"
    assert filing.dataset_for(str(root / "x.tif")) == "screen"  # at the top: the root's name
    # Outside every root: the file's own folder.
    assert filing.dataset_for(str(tmp_path / "elsewhere" / "y.tif")) == "elsewhere"


def test_the_first_root_that_holds_the_file_names_it(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "w1").mkdir(parents=True)
    filing = Filing(from_folder=True, roots=(str(first), str(second)))
    assert filing.dataset_for(str(second / "w1" / "x.tif")) == "w1"
    nested = Filing(from_folder=True, roots=(str(tmp_path), str(second)))
    assert nested.dataset_for(str(second / "w1" / "x.tif")) == "b/w1"


def test_a_file_given_as_its_own_root_goes_to_its_folder(tmp_path: Path) -> None:
    plate = tmp_path / "plate1"
    plate.mkdir()
    single = plate / "x.tif"
    single.write_bytes(b"II*\x00")
    other = tmp_path / "other.tif"
    filing = Filing(from_folder=True, roots=(str(single),))
    assert filing.dataset_for(str(single)) == "plate1"
    # A root that is a file names its folder whatever path is asked (it is the only file).
    assert filing.dataset_for(str(other)) == "plate1"
    # A path equal to its root (a file not there any more): its folder too.
    gone = tmp_path / "gone" / "z.tif"
    assert Filing(from_folder=True, roots=(str(gone),)).dataset_for(str(gone)) == "gone"
    # At the top of the file system the folder has no name: the file's own.
    assert Filing(from_folder=True, roots=("/z.tif",)).dataset_for("/z.tif") == "z.tif"


def test_relative_paths_and_roots_are_taken_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "run" / "w2").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert filing_roots(["run", Path("run/w2")]) == (
        str(tmp_path / "run"),
        str(tmp_path / "run" / "w2"),
    )
    filing = Filing(from_folder=True, roots=("run",))
    assert filing.dataset_for("run/w2/x.tif") == "w2"
    assert filing.dataset_for(str(tmp_path / "run" / "w2" / "x.tif")) == "w2"


# ---------------------------------------------------------------- the sink


def _settings(data: Path) -> Settings:
    """A service's settings on a copy of the migrated database (migrating costs seconds).

    No thumbnail after an upload or ingest: filing never needs one.
    """
    data.mkdir(parents=True)
    shutil.copyfile(_template(), data / "zstack.db")
    return make_settings(data, render={"thumbnail_on_upload": False})


def _entry(path: Path) -> FileEntry:
    stat = path.stat()
    return FileEntry(str(path), stat.st_size, stat.st_mtime_ns)


def _datasets(client: TestClient) -> dict[str, tuple[int, list[int]]]:
    rows = client.get("/api/datasets", params={"limit": 1000}).json()["data"]
    return {row["name"]: (row["child_count"], row["project_ids"]) for row in rows}


def _projects(client: TestClient) -> dict[str, int]:
    rows = client.get("/api/projects", params={"limit": 1000}).json()["data"]
    return {row["name"]: row["id"] for row in rows}


def test_the_local_sink_is_wrapped_and_each_new_record_filed(tmp_path: Path) -> None:
    """Every Sink call goes to the local sink; its commit then links the record."""
    from tests.service.conftest import _testclient_class
    from zstack_analyzer.service.annotations.filing import LocalFiler
    from zstack_analyzer.service.app import create_app
    from zstack_analyzer.service.local_ingest import LocalSink

    settings = _settings(tmp_path / "data")
    (tmp_path / "plate" / "w1").mkdir(parents=True)
    source = write_ome_tiff(tmp_path / "plate" / "w1" / "a.ome.tif", (1, 2, 16, 16))
    entry = _entry(source)
    filing = Filing(project="Screen", from_folder=True, roots=(str(tmp_path / "plate"),))
    with LocalSink(settings, in_place=False) as local:
        sink = FilingSink(local, LocalFiler(local.database), filing)
        assert sink.uses_cluster is True
        assert sink.local_runner() is None
        assert sink.task() is local.task()
        assert sink.is_present(entry) is False
        job = sink.job(entry)
        assert job.path == str(source.resolve())
        commit = sink.commit(entry, sink.task()(job))
        assert commit.outcome == "ingested", commit
        assert commit.image_id is not None
        assert sink.is_present(entry) is True  # what the local sink says, after its commit
    with _testclient_class()(create_app(settings)) as client:
        projects = _projects(client)
        assert list(projects) == ["Screen"]
        assert _datasets(client) == {"w1": (1, [projects["Screen"]])}
        listed = client.get(f"/api/images/{commit.image_id}").json()
        assert listed["filename"] == "a.ome.tif"


def test_the_http_sink_is_wrapped_as_it_is(tmp_path: Path) -> None:
    with HttpSink("http://127.0.0.1:9", threads=3) as http:
        sink = FilingSink(http, HttpFiler(http.client), Filing(dataset="D"))
        assert sink.uses_cluster is False
        entry = FileEntry(str(tmp_path / "x.tif"), 1, 1)
        assert sink.job(entry) is entry
        assert sink.task() == http.task()
        with sink.local_runner() as runner:  # type: ignore[union-attr]
            assert isinstance(runner, ThreadRunner)
            assert runner.threads == 3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[TestClient, list[str]]]:
    """The service and three images stored in it."""
    from tests.service.conftest import _testclient_class
    from zstack_analyzer.service.app import create_app

    settings = _settings(tmp_path / "data")
    with _testclient_class()(create_app(settings)) as client:
        ids = []
        for i in range(3):
            path = write_ome_tiff(tmp_path / f"i{i}.ome.tif", (1, 1, 8, 8), seed=i)
            created = upload(client, path)
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        yield client, ids


def _http_sink(client: TestClient, filing: Filing) -> tuple[FilingSink, HttpSink]:
    http = HttpSink("http://127.0.0.1:9")
    return FilingSink(http, HttpFiler(client), filing), http


def test_ingested_and_present_records_are_filed_the_others_not(
    server: tuple[TestClient, list[str]], tmp_path: Path
) -> None:
    client, ids = server
    sink, http = _http_sink(client, Filing(project="Screen", dataset="Plate"))
    entry = FileEntry(str(tmp_path / "x.tif"), 1, 1)
    try:
        made = sink.commit(entry, Response(201, {"id": ids[0]}))
        assert made == Commit("ingested", "", ids[0])
        there = sink.commit(entry, Response(200, {"id": ids[1], "message": "Already stored"}))
        assert there == Commit("present", "Already stored", ids[1])
        # Not stored by this commit: nothing is filed, the commit is the inner one.
        refused = sink.commit(entry, Response(400, {"code": "unsupported_format", "detail": "no"}))
        assert refused == Commit("unsupported", "no")
        failed = sink.commit(entry, Response(0, {}, "connection refused"))
        assert failed == Commit("failed", "connection refused")
    finally:
        http.close()
    projects = _projects(client)
    assert list(projects) == ["Screen"]
    assert _datasets(client) == {"Plate": (2, [projects["Screen"]])}
    images = client.get(f"/api/datasets/{_dataset_id(client, 'Plate')}/images").json()
    assert sorted(row["id"] for row in images["data"]) == sorted(ids[:2])


def _dataset_id(client: TestClient, name: str) -> int:
    rows = client.get("/api/datasets", params={"name": name}).json()["data"]
    return int(next(row["id"] for row in rows if row["name"] == name))


def test_a_record_stored_but_not_filed_fails_the_file_and_names_why(
    server: tuple[TestClient, list[str]], tmp_path: Path
) -> None:
    client, ids = server
    sink, http = _http_sink(client, Filing(dataset="Plate"))
    missing = "0123456789abcdef0123456789abcdef"
    try:
        commit = sink.commit(
            FileEntry(str(tmp_path / "x.tif"), 1, 1), Response(201, {"id": missing})
        )
    finally:
        http.close()
    assert commit.outcome == "failed"
    assert commit.image_id == missing
    assert commit.reason.startswith(f"stored as {missing} but not filed in 'Plate': HTTP 404: ")
    assert ids  # the server's own images are untouched


def test_a_commit_that_failed_after_storing_is_not_filed_again(
    server: tuple[TestClient, list[str]], tmp_path: Path
) -> None:
    """Filing in two datasets (a sink around a sink): a first failure stops the second."""
    client, ids = server
    http = HttpSink("http://127.0.0.1:9")
    filer = HttpFiler(client)
    inner = FilingSink(http, filer, Filing(dataset="First"))
    outer = FilingSink(inner, filer, Filing(dataset="Second"))
    missing = "0123456789abcdef0123456789abcdef"
    entry = FileEntry(str(tmp_path / "x.tif"), 1, 1)
    try:
        good = outer.commit(entry, Response(201, {"id": ids[0]}))
        bad = outer.commit(entry, Response(201, {"id": missing}))
    finally:
        http.close()
    assert good == Commit("ingested", "", ids[0])
    assert bad.outcome == "failed"
    assert "not filed in 'First'" in bad.reason
    assert "Second" not in bad.reason
    assert _datasets(client) == {"First": (1, []), "Second": (1, [])}


def test_a_folder_at_the_top_of_a_root_is_filed_under_the_roots_name(
    server: tuple[TestClient, list[str]], tmp_path: Path
) -> None:
    client, ids = server
    root = tmp_path / "plate7"
    root.mkdir()
    sink, http = _http_sink(client, Filing(from_folder=True, roots=(str(root),)))
    try:
        commit = sink.commit(FileEntry(str(root / "x.tif"), 1, 1), Response(201, {"id": ids[2]}))
    finally:
        http.close()
    assert commit == Commit("ingested", "", ids[2])
    assert _datasets(client) == {"plate7": (1, [])}


# ---------------------------------------------------------------- the HTTP filer


def _counting(client: TestClient) -> list[str]:
    """The requests ``client`` sends from now on, as ``METHOD path``."""
    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.path}")

    client.event_hooks["request"].append(hook)
    return seen


def test_projects_and_datasets_are_made_once_and_then_remembered(
    server: tuple[TestClient, list[str]],
) -> None:
    client, ids = server
    filer = HttpFiler(client)
    seen = _counting(client)
    filer.file(ids[0], "Screen", "Plate")
    first = list(seen)
    seen.clear()
    filer.file(ids[1], "Screen", "Plate")
    second = list(seen)
    plate = _dataset_id(client, "Plate")
    assert first == [
        "GET /api/projects",
        "POST /api/projects",
        "GET /api/datasets",
        "POST /api/datasets",
        f"POST /api/datasets/{plate}/images",
    ]
    assert second == [f"POST /api/datasets/{plate}/images"]
    projects = _projects(client)
    assert _datasets(client) == {"Plate": (2, [projects["Screen"]])}


def test_existing_containers_are_found_by_their_exact_name_and_project(
    server: tuple[TestClient, list[str]],
) -> None:
    client, ids = server
    screen = client.post("/api/projects", json={"name": "Screen"}).json()["id"]
    other = client.post("/api/projects", json={"name": "Other"}).json()["id"]
    in_other = client.post("/api/datasets", json={"name": "Plate", "project_id": other}).json()
    in_screen = client.post("/api/datasets", json={"name": "Plate", "project_id": screen}).json()
    # A name that differs only in case is another container.
    lower = client.post("/api/datasets", json={"name": "plate", "project_id": screen}).json()
    HttpFiler(client).file(ids[0], "Screen", "Plate")
    counts = {
        row["id"]: row["child_count"]
        for row in client.get("/api/datasets", params={"limit": 1000}).json()["data"]
    }
    assert counts == {in_other["id"]: 0, in_screen["id"]: 1, lower["id"]: 0}
    assert _projects(client) == {"Other": other, "Screen": screen}
    # No project: any dataset of that name (here the oldest one listed).
    HttpFiler(client).file(ids[1], None, "Plate")
    rows = client.get("/api/datasets", params={"limit": 1000}).json()["data"]
    assert sum(row["child_count"] for row in rows) == 2
    assert len(rows) == 3


def test_a_dataset_without_a_project_is_made_outside_every_project(
    server: tuple[TestClient, list[str]],
) -> None:
    client, ids = server
    filer = HttpFiler(client)
    seen = _counting(client)
    filer.file(ids[0], None, "Loose")
    assert seen[0] == "GET /api/datasets"
    assert _projects(client) == {}
    assert _datasets(client) == {"Loose": (1, [])}


def _answer(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "http://server/api/x"), **kwargs)


def test_errors_are_raised_with_the_servers_detail() -> None:
    _raise(_answer(200, json={"data": []}))
    _raise(_answer(399, text="odd but fine"))
    with pytest.raises(RuntimeError, match=r"^HTTP 400: bad name$"):
        _raise(_answer(400, json={"detail": "bad name"}))
    with pytest.raises(RuntimeError, match=r"^HTTP 403: \{'code': 'x'\}$"):
        _raise(_answer(403, json={"detail": {"code": "x"}}))
    # JSON without a detail, or no JSON at all: the body as text.
    with pytest.raises(RuntimeError, match=r'^HTTP 409: \{"error":"taken"\}$'):
        _raise(_answer(409, content=b'{"error":"taken"}'))
    with pytest.raises(RuntimeError, match=r"^HTTP 502: <html>bad gateway</html>$"):
        _raise(_answer(502, text="<html>bad gateway</html>"))
    with pytest.raises(RuntimeError) as long:
        _raise(_answer(500, json={"detail": "x" * 1000}))
    assert str(long.value) == "HTTP 500: " + "x" * 300


def test_an_error_body_that_is_json_but_no_object_is_said_as_text() -> None:
    """A proxy's or an old server's JSON list or string: the text, not an AttributeError."""
    with pytest.raises(RuntimeError, match=r'^HTTP 502: \["down"\]$'):
        _raise(_answer(502, content=b'["down"]'))
    with pytest.raises(RuntimeError, match=r'^HTTP 503: "busy"$'):
        _raise(_answer(503, content=b'"busy"'))


def test_a_refused_lookup_or_creation_is_raised(server: tuple[TestClient, list[str]]) -> None:
    client, ids = server
    filer = HttpFiler(client)
    with pytest.raises(RuntimeError, match=r"^HTTP 422: "):
        filer.file(ids[0], None, "x" * 300)  # longer than a name may be
    with pytest.raises(RuntimeError, match=r"^HTTP 422: "):
        filer.file(ids[0], "p" * 300, "Plate")
    assert _datasets(client) == {}


def _bulk_datasets(client: TestClient, names: list[str]) -> None:
    """Many datasets at once, straight into the service's database (as the API would own them)."""
    from zstack_analyzer.service.annotations.models import Dataset

    like = client.post("/api/datasets", json={"name": "template"}).json()
    database = client.app.state.database  # type: ignore[attr-defined]
    with database.sessions() as session:
        session.add_all(
            Dataset(name=name, owner_id=like["owner_id"], group_id=like["group_id"])
            for name in names
        )
        session.commit()


def _named(client: TestClient, name: str) -> list[int]:
    rows = client.get("/api/datasets", params={"limit": 1000, "name": name}).json()["data"]
    return [row["child_count"] for row in rows if row["name"] == name]


def test_the_lookup_asks_for_the_name_among_many_containers(
    server: tuple[TestClient, list[str]],
) -> None:
    """1,000 other datasets sort before ours: only a lookup by name finds it."""
    client, ids = server
    _bulk_datasets(client, [f"a{i:04d}" for i in range(1000)])
    client.post("/api/datasets", json={"name": "zz"})
    HttpFiler(client).file(ids[0], None, "zz")
    assert _named(client, "zz") == [1]


def test_the_lookup_reads_up_to_a_thousand_of_one_name(
    server: tuple[TestClient, list[str]],
) -> None:
    """Past the API's default page of 100 names that differ only in case, ours is still found."""
    client, ids = server
    _bulk_datasets(client, ["PLATE"] * 100)
    client.post("/api/datasets", json={"name": "plate"})
    HttpFiler(client).file(ids[0], None, "plate")
    assert _named(client, "plate") == [1]


def test_nothing_is_filed_without_a_dataset(
    server: tuple[TestClient, list[str]], tmp_path: Path
) -> None:
    client, ids = server
    sink, http = _http_sink(client, Filing(project="P"))
    try:
        commit = sink.commit(
            FileEntry(str(tmp_path / "x.tif"), 1, 1), Response(201, {"id": ids[0]})
        )
    finally:
        http.close()
    assert commit == Commit("ingested", "", ids[0])
    assert _datasets(client) == {}
    assert _projects(client) == {}
