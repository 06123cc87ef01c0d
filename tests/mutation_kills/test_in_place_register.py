"""POST /api/images/register and reads of in-place originals: messages, roots, folders.

Found by mutation testing: the refusals' details, several roots (one of them missing),
folder images (OME-Zarr) whose own mtime says they changed, and the thumbnail flag
of a refreshed record were never checked.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from tests.service.conftest import _testclient_class, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.batch import ingest
from zstack_analyzer.service.local_ingest import LocalSink

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings


def _client(settings: Settings) -> TestClient:
    from zstack_analyzer.service.app import create_app

    return _testclient_class()(create_app(settings))


def _register(client: TestClient, path: Path | str) -> Any:
    return client.post("/api/images/register", json={"path": str(path)})


def test_refusals_say_what_and_where(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    settings = make_settings(tmp_path / "data", import_roots=[first, second])
    long_name = "x" * 150 + "/" + "y" * 150 + ".tif"
    with _client(settings) as client:
        outside = _register(client, tmp_path / long_name)
        assert outside.status_code == 403
        detail = outside.json()["detail"]
        assert f"outside the import roots ({first}, {second})" in detail
        raw = str(tmp_path / long_name)
        assert detail.startswith(raw[:200] + ":")  # the path, cut at 200 characters

        relative = _register(client, "some/relative.tif")
        assert relative.status_code == 403
        assert relative.json()["detail"] == "'some/relative.tif': give an absolute path"

        missing = first / ("z" * 250 + ".tif")
        gone = _register(client, missing)
        assert gone.status_code == 404
        assert gone.json()["detail"] == f"{str(missing)[:200]}: no such file or folder"

    with _client(make_settings(tmp_path / "data2")) as client:
        off = _register(client, first / "a.tif")
        assert off.status_code == 403
        assert off.json()["detail"] == (
            "in-place import is off on this server (set ZSTACK_IMPORT_ROOTS)"
        )


def test_a_missing_root_does_not_stop_the_others(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    source = write_ome_tiff(real / "a.ome.tif")
    settings = make_settings(tmp_path / "data", import_roots=[tmp_path / "unmounted", real])
    with _client(settings) as client:
        answer = _register(client, source)
        assert answer.status_code == 201, answer.text
        again = _register(client, source)
        assert again.status_code == 200
        assert again.json()["message"] == "Already registered"


def _zarr(path: Path, tmp_path: Path) -> Path:
    from zstack_analyzer.zarr.writer import convert

    source = write_ome_tiff(tmp_path / "zarr-source.ome.tif", (2, 3, 16, 20))
    convert(source, path)
    return path


def test_an_in_place_folder_image_changes_with_its_own_mtime(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    image = _zarr(root / "plate.ome.zarr", tmp_path)
    settings = make_settings(tmp_path / "data", import_roots=[root])
    with _client(settings) as client:
        answer = _register(client, image)
        assert answer.status_code == 201, answer.text
        url = f"/api/images/{answer.json()['id']}"
        assert client.get(f"{url}/slice/1").status_code == 200
        # Adding an entry changes the folder's mtime (its size is not its own).
        (image / "notes.txt").write_text("added")
        changed = client.get(f"{url}/slice/1")
        assert changed.status_code == 409, changed.text
        assert changed.json()["code"] == "original_changed"
        assert str(image) in changed.json()["detail"]
        # Registering again refreshes it; reads work again.
        refreshed = _register(client, image)
        assert refreshed.status_code == 200
        assert refreshed.json()["message"] == "Refreshed (the original had changed)"
        assert client.get(f"{url}/slice/1").status_code == 200
        # Gone: 410, naming the path and the image.
        shutil.rmtree(image)
        gone = client.get(f"{url}/slice/1")
        assert gone.status_code == 410
        assert gone.json()["detail"] == (
            f"{image}: the original of image {answer.json()['id']} is gone (moved or deleted)"
        )


def test_a_file_with_only_a_new_mtime_is_changed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    source = write_ome_tiff(root / "a.ome.tif")
    settings = make_settings(tmp_path / "data", import_roots=[root])
    with _client(settings) as client:
        answer = _register(client, source)
        url = f"/api/images/{answer.json()['id']}"
        assert client.get(f"{url}/slice/1").status_code == 200
        st = source.stat()
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns - 1_000_000_000))
        assert client.get(f"{url}/slice/1").status_code == 409


def test_a_refreshed_record_has_no_thumbnail_until_one_is_made(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    source = write_ome_tiff(root / "a.ome.tif")
    settings = make_settings(tmp_path / "data", import_roots=[root])
    with LocalSink(settings, in_place=True) as sink:
        assert ingest([root], sink).ingested == 1
    no_thumbnails = make_settings(
        tmp_path / "data", import_roots=[root], render={"thumbnail_on_upload": False}
    )
    with _client(no_thumbnails) as client:
        (record,) = client.get("/api/images/").json()["data"]
        assert record["thumbnail_ready"] is True
        write_ome_tiff(source, (1, 2, 16, 20), seed=3)
        refreshed = _register(client, source)
        assert refreshed.status_code == 200
        assert refreshed.json()["id"] == record["id"]
        assert refreshed.json()["image_stack"]["thumbnail_ready"] is False
        assert client.get(f"/api/images/{record['id']}").json()["thumbnail_ready"] is False
