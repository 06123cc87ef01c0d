"""The Python client against a live server (SQLite and PostgreSQL), with a bearer token.

Real sockets, real uploads: what an analyst's notebook does. The outage is the
server's own decode-busy 503 (its process-wide decode budget held by the test),
so a retried request really meets ``Retry-After`` and ends in a typed error.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from tests.service.conftest import write_ome_tiff
from tests.service.live import LiveServer, make_settings
from zstack_analyzer import open_image
from zstack_analyzer.client import AuthError, Client, NotFoundError, RetryPolicy
from zstack_analyzer.client.errors import (
    ClientError,
    RemoteUnsupportedFormatError,
    ServiceUnavailableError,
)
from zstack_analyzer.errors import DecodeBusyError, SceneNotFoundError, UnsupportedFormatError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from zstack_analyzer.service.config import Settings

TOKEN = "client-test-token"  # noqa: S105  (a test server's token)
MiB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path, settings: Settings) -> Iterator[LiveServer]:
    (tmp_path / "archive").mkdir()
    settings = make_settings(
        settings.data_dir,  # its database migrated already (tests/service/conftest.py)
        import_roots=[tmp_path / "archive"],
        database_url=settings.database_url,
        api_token=TOKEN,
        limits={"max_decode_bytes": 256 * MiB, "decode_wait_seconds": 0},
    )
    live = LiveServer(settings)
    live.start()
    try:
        yield live
    finally:
        live.stop()


def test_upload_read_download_delete(server: LiveServer, tmp_path: Path) -> None:
    tiff = write_ome_tiff(tmp_path / "cells.ome.tif", shape=(2, 5, 40, 56))
    progress: list[tuple[int, int]] = []
    with Client(server.base_url, token=TOKEN) as client:
        image = client.images.upload(
            tiff, progress=lambda sent, total: progress.append((sent, total))
        )
        assert uuid.UUID(image.id)
        assert progress and progress[-1] == (tiff.stat().st_size, tiff.stat().st_size)

        again = client.images.get(image.id)
        assert again == image
        assert again.filename == "cells.ome.tif"
        assert again.format == "OME-TIFF"
        md = again.metadata
        assert (md["size_c"], md["size_z"], md["size_y"], md["size_x"]) == (2, 5, 40, 56)

        png = again.thumbnail()
        assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
        picture = again.thumbnail(64, 64, as_pil=True)
        assert not isinstance(picture, bytes)
        assert max(picture.size) == 64

        lazy = again.to_dask()
        assert lazy.shape == (1, 2, 5, 40, 56)
        with open_image(tiff) as local:
            expected = np.asarray(local.to_dask(0).compute())
        assert lazy.dtype == expected.dtype
        np.testing.assert_array_equal(np.asarray(lazy.compute()), expected)
        np.testing.assert_array_equal(np.asarray(lazy[0, 1, 3].compute()), expected[0, 1, 3])

        target = again.download(tmp_path / "copy.tif")
        assert target.read_bytes() == tiff.read_bytes()

        page = again._repr_html_()
        assert "data:image/png;base64," in page and "cells.ome.tif" in page and "Z=5" in page

        assert [i.id for i in client.images.list()] == [image.id]
        assert [i.id for i in client.images.search(format="ome-tiff")] == [image.id]
        assert list(client.images.search(format="CZI")) == []

        image.delete()
        with pytest.raises(NotFoundError) as missing:
            client.images.get(image.id)
        assert missing.value.status == 404
        assert missing.value.code == "image_not_found"
        assert isinstance(missing.value, LookupError)


def test_scenes_and_levels_match_the_loader(server: LiveServer, tmp_path: Path) -> None:
    from tests.synthetic_czi import write_czi_scenes
    from tests.synthetic_tiff import write_ome_pyramid
    from zstack_analyzer.errors import SceneNotFoundError

    czi = tmp_path / "two.czi"
    write_czi_scenes(czi, [(24, 32, (0, 0)), (16, 20, (100, 0))], c=2)
    # Over 512 px a side, so the virtual store has a level 1: the file's own reduced level.
    stack = (np.arange(600 * 700, dtype=np.uint32).reshape(1, 1, 1, 600, 700) * 3) % 5000
    pyramid = write_ome_pyramid(tmp_path / "pyramid.ome.tif", stack.astype(np.uint16), levels=2)
    with Client(server.base_url, token=TOKEN) as client:
        scenes = client.images.upload(czi)
        levels = client.images.upload(pyramid)
        with open_image(czi) as local:
            for scene in (0, 1):
                np.testing.assert_array_equal(
                    scenes.to_dask(scene=scene).compute(), local.to_dask(scene).compute()
                )
        with pytest.raises(SceneNotFoundError):
            scenes.to_dask(scene=2)
        with open_image(pyramid) as local:
            expected = local.to_dask(0, level=1).compute()
        lazy = levels.to_dask(level=1)
        assert lazy.shape == expected.shape == (1, 1, 1, 300, 350)
        np.testing.assert_array_equal(lazy.compute(), expected)


def test_register_in_place(server: LiveServer, tmp_path: Path) -> None:
    original = write_ome_tiff(tmp_path / "archive" / "kept.ome.tif")
    with Client(server.base_url, token=TOKEN) as client:
        image = client.images.register(str(original))
        assert image.record["stored_in_place"] is True
        assert client.images.register(str(original)) == image  # already there: the same id
        with open_image(original) as local:
            expected = local.to_dask(0)[0, 1, 2].compute()
        np.testing.assert_array_equal(image.to_dask()[0, 1, 2].compute(), expected)
        with pytest.raises(AuthError) as outside:
            client.images.register(str(tmp_path / "elsewhere.ome.tif"))
        assert outside.value.status == 403


def test_errors_are_typed(server: LiveServer, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"not an image at all\n" * 10)
    with Client(server.base_url, token=TOKEN) as client:
        with pytest.raises(RemoteUnsupportedFormatError) as refused:
            client.images.upload(junk)
        assert isinstance(refused.value, UnsupportedFormatError)
        assert (refused.value.status, refused.value.code) == (400, "unsupported_format")
    wrong = "not-the-token"
    with Client(server.base_url, token=wrong) as client, pytest.raises(AuthError) as denied:
        list(client.images.list())
    assert denied.value.status == 401


def test_decode_busy_is_retried_then_raised(server: LiveServer, tmp_path: Path) -> None:
    tiff = write_ome_tiff(tmp_path / "cells.ome.tif", shape=(2, 5, 40, 56))
    waits: list[float] = []
    retry = RetryPolicy(attempts=3, max_wait_s=0.05)
    with Client(server.base_url, token=TOKEN, retry=retry) as client:
        image = client.images.upload(tiff)
        deadline = time.monotonic() + 60
        while not image.refresh().record["thumbnail_ready"]:  # the upload's own render is done
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.transport._sleep = waits.append  # record the waits instead of sleeping
        process = server.app.state.decode_budget
        assert process.total_bytes == 256 * MiB  # the live server's budget, in this process
        process.acquire(process.total_bytes, what="test", path=None, cancel=None)
        try:
            with pytest.raises(ServiceUnavailableError) as busy:
                image.thumbnail(97, 61)  # not pre-rendered: it must decode
        finally:
            process.release(process.total_bytes)
        assert isinstance(busy.value, DecodeBusyError)
        assert (busy.value.status, busy.value.code) == (503, "decode_busy")
        assert busy.value.retry_after is not None and busy.value.retry_after > 0
        # Two retries, each after Retry-After capped by the policy.
        assert waits == [0.05, 0.05]
        assert isinstance(image.thumbnail(97, 61), bytes)  # the budget is free again


def _insert_records(server: LiveServer, count: int) -> None:
    """``count`` image rows by one bulk INSERT each table (no files: search reads rows only).

    Why not uploads or one ORM object per row: 10k of either takes tens of seconds; the
    rows here have every column the list and search read (not the derived free-text ones).
    """
    from sqlalchemy import insert

    from zstack_analyzer.service.db.models import Image, ImageMetadataRecord

    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [uuid.UUID(int=i + 1) for i in range(count)]
    images = [
        {
            "id": ids[i],
            "filename": f"bulk_{i:05d}.ome.tif",
            "stored_name": f"{i:032x}.bin",
            "format": "OME-TIFF",
            "size_bytes": 1000,
            "sha256": f"{i:064x}",
            "width": 64,
            "height": 64,
            "depth": 3,
            "channels": 1,
            "timepoints": 1,
            "samples_per_pixel": 1,
            "bit_depth": 16,
            "dtype": "uint16",
            "pixel_size_x": 0.5,
            "pixel_size_y": 0.5,
            "pixel_size_z": 1.0,
            "scenes": [],
            "thumbnail_ready": False,
            "stored_in_place": False,
            "created_at": base + timedelta(seconds=i),
        }
        for i in range(count)
    ]
    details = [
        {"image_id": ids[i], "data": {"filename": f"bulk_{i:05d}.ome.tif"}} for i in range(count)
    ]
    with server.app.state.database.sessions() as session:
        session.execute(insert(Image), images)
        session.execute(insert(ImageMetadataRecord), details)
        session.commit()


@pytest.mark.slow
def test_a_ten_thousand_image_search_pages_to_the_end(server: LiveServer) -> None:
    count = 10_000
    started = time.perf_counter()
    _insert_records(server, count)
    print(f"inserted {count} in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    with Client(server.base_url, token=TOKEN, page_size=1000) as client:
        assert client.images.count(format="OME-TIFF") == count
        ids = [image.id for image in client.images.search(format="OME-TIFF")]
    assert len(ids) == count
    assert len(set(ids)) == count
    assert ids[0] == str(uuid.UUID(int=count))  # newest first
    print(f"paged {count} in {time.perf_counter() - started:.1f} s")


def test_personal_tokens_in_users_mode(tmp_path: Path, database_url: str | None) -> None:
    from zstack_analyzer.service.auth import accounts

    live = LiveServer(make_settings(tmp_path / "data", database_url=database_url, auth="users"))
    live.start()
    try:
        with live.app.state.database.sessions() as session:
            accounts.create_group(session, "lab", "private")
            accounts.create_group(session, "other", "private")
            accounts.create_user(session, "mia")
            accounts.set_membership(session, "lab", "mia")
            accounts.create_user(session, "ola")
            accounts.set_membership(session, "other", "ola")
            mia = accounts.create_token(session, "mia", name="notebook")[1]
            ola = accounts.create_token(session, "ola", name="notebook")[1]
            session.commit()
        tiff = write_ome_tiff(tmp_path / "mine.ome.tif")
        with Client(live.base_url, token=mia) as client:
            image = client.images.upload(tiff)
            assert [i.id for i in client.images.search("mine")] == [image.id]
            assert client.images.get(image.id).metadata["size_z"] == 5
        with Client(live.base_url, token=ola) as client:
            assert list(client.images.search("mine")) == []
            with pytest.raises(NotFoundError):  # another group's private image
                client.images.get(image.id)
        with Client(live.base_url) as client, pytest.raises(AuthError) as anonymous:
            list(client.images.list())
        assert anonymous.value.status == 401
    finally:
        live.stop()


def test_image_quality_is_the_librarys(server: LiveServer, tmp_path: Path) -> None:
    """``Image.quality(scene)`` over HTTP: the structure and values of ``open_image(...).quality``."""
    tiff = write_ome_tiff(tmp_path / "q.ome.tif", shape=(2, 5, 24, 32), seed=5)
    with Client(server.base_url, token=TOKEN) as client:
        image = client.images.upload(tiff)
        deadline = time.monotonic() + 60
        while (served := image.quality())["status"] == "pending":
            assert time.monotonic() < deadline, "the upload's quality was never stored"
            time.sleep(0.1)
        with open_image(tiff) as local:
            assert served == local.quality(0)
        with pytest.raises(SceneNotFoundError) as out_of_range:  # the library's error type
            image.quality(3)
        assert out_of_range.value.status == 422


def test_image_rois_tags_and_key_values(server: LiveServer, tmp_path: Path) -> None:
    """``Image.rois()``, ``tags()``/``set_tags()``, ``key_values()``/``set_key_values()`` over HTTP."""
    tiff = write_ome_tiff(tmp_path / "a.ome.tif", shape=(1, 2, 24, 32), seed=6)
    with Client(server.base_url, token=TOKEN) as client:
        image = client.images.upload(tiff)
        assert image.rois() == []
        assert image.tags() == []
        assert image.key_values() == []
        drawn = httpx.post(
            f"{server.base_url}/api/images/{image.id}/rois",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={
                "name": "nucleus",
                "scene": 0,
                "shapes": [
                    {"type": "rectangle", "x": 2, "y": 3, "width": 5, "height": 4, "z": 1, "t": 0}
                ],
            },
        )
        assert drawn.status_code == 201, drawn.text
        (roi,) = image.rois()
        assert (roi["id"], roi["name"]) == (drawn.json()["id"], "nucleus")
        shape = roi["shapes"][0]
        assert [shape[k] for k in ("type", "x", "y", "width", "height", "z")] == [
            "rectangle", 2, 3, 5, 4, 1,
        ]  # fmt: skip

        assert sorted(image.set_tags(["mitosis", "good", "mitosis"])) == ["good", "mitosis"]
        assert sorted(image.tags()) == ["good", "mitosis"]
        assert image.set_tags("only") == ["only"]  # one name, not its letters
        assert image.set_tags([]) == []

        pairs = image.set_key_values([("stain", "DAPI"), ("stain", "GFP"), ("strain", "N2")])
        assert [(p["key"], p["value"]) for p in pairs] == [
            ("stain", "DAPI"), ("stain", "GFP"), ("strain", "N2"),
        ]  # fmt: skip
        assert image.key_values() == pairs
        image.set_key_values({"lens": "63x"})
        assert [(p["key"], p["value"]) for p in image.key_values()] == [("lens", "63x")]
        with pytest.raises(ClientError) as empty_key:
            image.set_key_values({"": "x"})
        assert empty_key.value.status == 422
        assert [p["key"] for p in image.key_values()] == [
            "lens"
        ]  # the refused write changed nothing

        image.delete()
        with pytest.raises(NotFoundError):
            image.tags()
        with pytest.raises(NotFoundError):
            image.rois()
