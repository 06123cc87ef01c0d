"""Downloads over HTTP as RFC 9110, 6266 and 5987 describe them (service/routes/images.py).

Found by mutation testing of ``parse_range``, ``_RangedFileResponse``, ``etag_matches``
and ``content_disposition`` through the app: the route tests sent one range at a
time, so the answer to several ranges (one multipart/byteranges body whose parts
carry their own Content-Range), a suffix range, a list whose unsatisfiable parts are
dropped rather than refused, the 16-range cap and a malformed header (the whole
file, where Starlette alone answers 400) were only checked on the helper, not on
what a client receives; likewise a weak or listed If-None-Match and a non-ASCII
display name. Also: a later scene's metadata in the JSON form of scene 0, the metadata
route's lost file (500) and image deleted meanwhile (404), and the upload's child job
(``render_and_measure_in_child``) given the server's confined roots and read limits. One
app for the module, real uploaded files.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from tests.service.conftest import _testclient_class, upload, write_ome_tiff
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ranges-archive")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, roots: Path) -> Iterator[TestClient]:
    """One app: local storage, in-place registration under ``roots``, no upload renders."""
    from zstack_analyzer.service.app import create_app

    settings = make_settings(tmp_path_factory.mktemp("ranges-data"), import_roots=[roots])
    settings.render.thumbnail_on_upload = False
    with _testclient_class()(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def stored(client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """An uploaded OME-TIFF: its download URL and bytes."""
    folder = tmp_path_factory.mktemp("ranges-files")
    source = write_ome_tiff(folder / "ranged.ome.tif", seed=uuid.uuid4().int % 1000 + 40)
    image_id = upload(client, source).json()["id"]
    return f"/api/images/{image_id}/download", source.read_bytes()


def _parts(response: Any) -> list[tuple[str, str, bytes]]:
    """A multipart/byteranges body as (Content-Type, Content-Range, bytes) per part."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    assert message.is_multipart()
    return [
        (part["Content-Type"], part["Content-Range"], part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


def test_several_ranges_are_one_multipart_answer(
    client: TestClient, stored: tuple[str, bytes]
) -> None:
    url, data = stored
    size = len(data)
    answer = client.get(url, headers={"Range": "bytes=0-3, 10-19, -5"})
    assert answer.status_code == 206
    assert answer.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert _parts(answer) == [
        ("application/octet-stream", f"bytes 0-3/{size}", data[0:4]),
        ("application/octet-stream", f"bytes 10-19/{size}", data[10:20]),
        ("application/octet-stream", f"bytes {size - 5}-{size - 1}/{size}", data[-5:]),
    ]
    assert answer.headers["etag"].startswith('"')
    assert answer.headers["content-disposition"].startswith("attachment; ")


def test_sixteen_ranges_are_served_and_seventeen_ignored(
    client: TestClient, stored: tuple[str, bytes]
) -> None:
    url, data = stored
    sixteen = ",".join(f"{3 * i}-{3 * i}" for i in range(16))
    answer = client.get(url, headers={"Range": f"bytes={sixteen}"})
    assert answer.status_code == 206
    assert [body for _type, _range, body in _parts(answer)] == [
        data[3 * i : 3 * i + 1] for i in range(16)
    ]
    whole = client.get(url, headers={"Range": f"bytes={sixteen},60-61"})
    assert (whole.status_code, whole.content) == (200, data)
    assert "content-range" not in whole.headers


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=-7", -7, -1),
        ("bytes=-1", -1, -1),
        ("bytes=5-", 5, -1),
        ("bytes=5-100000000", 5, -1),
        ("bytes=0-0", 0, 0),
        ("bytes=3-4", 3, 4),
        ("bytes=-100000000", 0, -1),
        ("BYTES = 3-4", 3, 4),
        ("bytes=, 3-4,", 3, 4),
    ],
)
def test_one_range_is_its_bytes_and_content_range(
    client: TestClient, stored: tuple[str, bytes], header: str, first: int, last: int
) -> None:
    url, data = stored
    size = len(data)
    start, end = first % size, last % size
    answer = client.get(url, headers={"Range": header})
    assert answer.status_code == 206, header
    assert answer.headers["content-range"] == f"bytes {start}-{end}/{size}"
    assert answer.headers["content-length"] == str(end - start + 1)
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.content == data[start : end + 1]


def test_unsatisfiable_parts_of_a_list_are_dropped(
    client: TestClient, stored: tuple[str, bytes]
) -> None:
    """RFC 9110 14.2: the satisfiable parts are served (Starlette alone would answer 416)."""
    url, data = stored
    size = len(data)
    answer = client.get(url, headers={"Range": f"bytes={size}-, 3-4, -0"})
    assert answer.status_code == 206
    assert answer.headers["content-range"] == f"bytes 3-4/{size}"
    assert answer.content == data[3:5]


@pytest.mark.parametrize(
    "header", ["bytes=x-1", "items=0-1", "bytes 0-1", "bytes=9-3", "bytes=", "bytes=,", "bytes=1"]
)
def test_a_malformed_or_foreign_range_gets_the_whole_file(
    client: TestClient, stored: tuple[str, bytes], header: str
) -> None:
    url, data = stored
    answer = client.get(url, headers={"Range": header})
    assert (answer.status_code, answer.content) == (200, data), header
    assert answer.headers["accept-ranges"] == "bytes"
    assert "content-range" not in answer.headers


@pytest.mark.parametrize("spec", ["{size}-", "{size}-{big}", "-0", "{size}-, {big}-"])
def test_no_satisfiable_range_is_416_with_the_size(
    client: TestClient, stored: tuple[str, bytes], spec: str
) -> None:
    url, data = stored
    size = len(data)
    answer = client.get(url, headers={"Range": "bytes=" + spec.format(size=size, big=size + 9)})
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{size}"
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "range_not_satisfiable"


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ("{etag}", True),
        ("W/{etag}", True),
        ('"other", {etag}', True),
        ('"other",W/{etag}', True),
        ("*", True),
        ('"other"', False),
        ('W/"other"', False),
        ("", False),
    ],
)
def test_if_none_match_weakly_and_in_lists(
    client: TestClient, stored: tuple[str, bytes], header: str, matches: bool
) -> None:
    url, data = stored
    etag = client.get(url, headers={"Range": "bytes=0-0"}).headers["etag"]
    answer = client.get(url, headers={"If-None-Match": header.format(etag=etag)})
    if matches:
        assert (answer.status_code, answer.content) == (304, b"")
        assert answer.headers["etag"] == etag
    else:
        assert (answer.status_code, answer.content) == (200, data)


def test_a_non_ascii_name_has_an_ascii_fallback_and_the_exact_name(
    client: TestClient, tmp_path: Path
) -> None:
    # (no '"': an HTML form, and httpx, send it as %22 in a multipart filename)
    name = "Zellkern ü 細胞;1.ome.tif"
    source = write_ome_tiff(tmp_path / "n.ome.tif", seed=uuid.uuid4().int % 1000 + 60)
    image_id = upload(client, source, name=name).json()["id"]
    answer = client.get(f"/api/images/{image_id}/download")
    assert answer.status_code == 200
    disposition = answer.headers["content-disposition"]
    assert disposition == (
        'attachment; filename="Zellkern _ ___1.ome.tif"; filename*=UTF-8'
        "''Zellkern%20%C3%BC%20%E7%B4%B0%E8%83%9E%3B1.ome.tif"
    )
    # RFC 5987: a client decodes filename* back to the exact name.
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    from urllib.parse import unquote

    assert unquote(encoded, encoding="utf-8") == name
    assert client.get(f"/api/images/{image_id}").json()["filename"] == name


def _descriptors_on(path: Path) -> list[int]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(int(fd))
        except OSError:
            continue
    return found


def test_an_in_place_original_serves_several_ranges_and_is_closed(
    client: TestClient, roots: Path
) -> None:
    source = write_ome_tiff(roots / f"kept{uuid.uuid4().hex[:6]}.ome.tif", seed=17)
    data = source.read_bytes()
    size = len(data)
    created = client.post("/api/images/register", json={"path": str(source)})
    assert created.status_code == 201, created.text
    url = f"/api/images/{created.json()['id']}/download"
    answer = client.get(url, headers={"Range": "bytes=1-2, -3"})
    assert answer.status_code == 206
    assert _parts(answer) == [
        ("application/octet-stream", f"bytes 1-2/{size}", data[1:3]),
        ("application/octet-stream", f"bytes {size - 3}-{size - 1}/{size}", data[-3:]),
    ]
    one = client.get(url, headers={"Range": "bytes=-4"})
    assert (one.status_code, one.content) == (206, data[-4:])
    assert one.headers["content-range"] == f"bytes {size - 4}-{size - 1}/{size}"
    assert client.get(url, headers={"Range": "bytes=x"}).content == data
    assert _descriptors_on(source) == []


def _two_scenes(path: Path) -> Path:
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(np.zeros((3, 16, 20), np.uint16), metadata={"axes": "ZYX"})
        tif.write(np.ones((2, 6, 10), np.uint8), metadata={"axes": "ZYX"})
    return path


def test_metadata_of_an_image_deleted_meanwhile_is_404_and_of_a_lost_file_500(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The file goes between the record's lookup and the read of a later scene: if the
    record went too (a delete in progress) the image is gone (404); if only the file
    went, a server fault (500, the FileNotFoundError logged)."""
    from zstack_analyzer.service.db import crud
    from zstack_analyzer.service.routes import images as routes

    app: Any = client.app
    real = routes.readable_source
    ids = [
        upload(client, _two_scenes(tmp_path / f"{i}.ome.tif"), name=f"s{i}.ome.tif").json()["id"]
        for i in range(2)
    ]

    def losing_the_file(record: Any, storage: Any) -> Any:
        Path(app.state.storage.path(record.stored_name)).unlink()
        return real(record, storage)

    monkeypatch.setattr(routes, "readable_source", losing_the_file)
    with caplog.at_level(logging.ERROR):
        lost = client.get(f"/api/images/{ids[0]}/metadata", params={"scene": 1})
    assert lost.status_code == 500, lost.text
    assert lost.json()["code"] == "internal_error"
    request_id = lost.json()["request_id"]
    (logged,) = [r for r in caplog.records if request_id in r.getMessage() and r.exc_info]
    assert isinstance(logged.exc_info[1], FileNotFoundError)  # type: ignore[index]

    def deleting_the_image(record: Any, storage: Any) -> Any:
        path = Path(app.state.storage.path(record.stored_name))
        with app.state.database.sessions() as session:
            assert crud.delete_image(session, record.id)
        path.unlink()
        return real(record, storage)

    monkeypatch.setattr(routes, "readable_source", deleting_the_image)
    gone = client.get(f"/api/images/{ids[1]}/metadata", params={"scene": 1})
    assert gone.status_code == 404, gone.text
    assert gone.json()["code"] == "image_not_found"
    assert gone.json()["detail"] == f"no image with id {ids[1]!r} (deleted meanwhile)"


def test_the_upload_job_reads_in_the_child_as_confined_as_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child gets the server's confined roots: a file inside them is rendered and
    measured there (the picture read back from the cache, or rendered here only when the
    cache keeps nothing); a stored file that is a link out of them is refused there, and
    nothing is measured or cached."""
    from zstack_analyzer.cache import RenderCache
    from zstack_analyzer.confine import UnsafeFileError, confine_reads
    from zstack_analyzer.errors import LimitExceededError
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.service.children import ChildProcesses
    from zstack_analyzer.service.config import BioformatsSettings, LimitsSettings
    from zstack_analyzer.service.routes import render
    from zstack_analyzer.service.routes.images import (
        default_thumbnail_spec,
        render_and_measure_in_child,
    )

    root = tmp_path / "confined"
    root.mkdir()
    inside = write_ome_tiff(root / "inside.ome.tif", (1, 2, 8, 8), seed=5)
    outside = write_ome_tiff(tmp_path / "outside.ome.tif", (1, 2, 8, 8))
    link = root / "link.ome.tif"
    link.symlink_to(outside)
    confine_reads([root])
    cache = RenderCache(tmp_path / "cache", max_bytes=10_000_000)
    nothing = RenderCache(tmp_path / "zero", max_bytes=0)
    spec, limits = default_thumbnail_spec(), ReadLimits()
    children = ChildProcesses(
        workers=1, idle_seconds=60, limits=LimitsSettings(), bioformats=BioformatsSettings()
    )
    measured: list[Any] = []
    rendered_here: list[Any] = []
    real_render_job = render.render_job

    def render_job(*args: Any) -> Any:
        rendered_here.append(args[3])
        return real_render_job(*args)

    monkeypatch.setattr(render, "render_job", render_job)
    try:
        kept = render_and_measure_in_child(children, measured, inside, spec, limits, cache, "in")
        assert rendered_here == []
        here = render_and_measure_in_child(children, measured, inside, spec, limits, nothing, "in")
        # The read limits go to the child: a plane wider than they allow is refused there.
        with pytest.raises(LimitExceededError):
            small = ReadLimits(max_dimension=4)
            render_and_measure_in_child(children, measured, inside, spec, small, cache, "small")
        with pytest.raises(UnsafeFileError, match="outside the import roots"):
            render_and_measure_in_child(children, measured, link, spec, limits, cache, "link")
    finally:
        children.close()
    assert kept.data == cache.get("in", spec.cache_key("in"))
    assert kept.data.startswith(b"\x89PNG")
    assert (kept.media_type, kept.etag, kept.from_cache) == (
        "image/png",
        spec.cache_key("in"),
        False,
    )
    assert here.data == kept.data
    assert (here.media_type, here.etag, here.from_cache) == (
        "image/png",
        spec.cache_key("in"),
        False,
    )
    assert nothing.get("in", spec.cache_key("in")) is None
    assert rendered_here == [nothing]
    assert [[q.scene for q in m] for m in measured] == [[0], [0]]
    assert measured[0][0].size_z == 2
    assert cache.get("link", spec.cache_key("link")) is None
    assert cache.get("small", spec.cache_key("small")) is None


def test_a_later_scenes_metadata_is_json_as_the_first_scenes(
    client: TestClient, tmp_path: Path
) -> None:
    """Scene 0 comes from the database, a later one from the file: both in Pydantic's JSON
    form (an aware time as ``...Z``, as every other route writes it), not in two forms."""
    path = tmp_path / "dated.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        for when in ("2024-05-01T10:00:00+02:00", "2024-05-02T10:30:00+02:00"):
            tif.write(
                np.zeros((2, 6, 10), np.uint8), metadata={"axes": "ZYX", "AcquisitionDate": when}
            )
    image_id = upload(client, path, name="dated.ome.tif").json()["id"]
    url = f"/api/images/{image_id}/metadata"
    first = client.get(url).json()
    later = client.get(url, params={"scene": 1})
    assert later.status_code == 200, later.text
    assert first["acquired_at"] == "2024-05-01T08:00:00Z"
    assert later.json()["acquired_at"] == "2024-05-02T08:30:00Z"
    assert later.json()["scene_index"] == 1
