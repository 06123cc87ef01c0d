"""Deep-zoom tiles over HTTP, pixel by pixel: edge tiles, levels, and one ETag per plane.

The plane is 300 x 520 (not a multiple of the 256 px tile), each (t, c, z) has its own
values, so a tile from the wrong plane, channel or place, a full-size edge tile, or a
cached tile served for another plane all show.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.service.conftest import upload
from tests.synthetic_tiff import write_ome_tiff

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient

T, C, Z, NY, NX = 2, 2, 3, 300, 520
GREY = {"colors": "ffffff", "windows": "0:255"}


def _stack() -> np.ndarray:
    t, c, z, y, x = np.ogrid[0:T, 0:C, 0:Z, 0:NY, 0:NX]
    return ((y * 3 + x * 5 + 37 * t + 11 * c + 53 * z) % 256).astype(np.uint8)


@pytest.fixture
def image_id(sqlite_client: TestClient, tmp_path: Path) -> str:
    path = write_ome_tiff(tmp_path / "planes.ome.tif", [_stack()])
    answer = upload(sqlite_client, path)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _tile(client: TestClient, image_id: str, level: int, row: int, col: int, **params: object):
    return client.get(f"/api/images/{image_id}/tile/{level}/{row}/{col}", params=params)


def _pixels(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


@pytest.mark.parametrize(("t", "c", "z"), [(0, 0, 0), (1, 0, 2), (0, 1, 1), (1, 1, 0)])
def test_every_tile_of_a_plane_matches_the_plane(
    sqlite_client: TestClient, image_id: str, t: int, c: int, z: int
) -> None:
    plane = _stack()[t, c, z]
    for row in range(2):
        for col in range(3):
            answer = _tile(sqlite_client, image_id, 0, row, col, t=t, z=z, channels=c, **GREY)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "image/png"
            got = _pixels(answer.content)
            want = plane[row * 256 : (row + 1) * 256, col * 256 : (col + 1) * 256]
            assert got.shape[:2] == want.shape  # edge tiles are cut, never padded to 256
            for k in range(3):
                np.testing.assert_array_equal(got[..., k], want)
    assert _pixels(_tile(sqlite_client, image_id, 0, 1, 2, channels=c, **GREY).content).shape == (
        NY - 256,
        NX - 512,
        3,
    )


def test_tile_grid_of_each_level_and_tiles_that_do_not_exist(
    sqlite_client: TestClient, image_id: str
) -> None:
    # Level 1 is 150 x 260: one row of two tiles, the second 4 px wide.
    assert _pixels(_tile(sqlite_client, image_id, 1, 0, 0, **GREY, channels=0).content).shape == (
        150,
        256,
        3,
    )
    assert _pixels(_tile(sqlite_client, image_id, 1, 0, 1, **GREY, channels=0).content).shape == (
        150,
        4,
        3,
    )
    for level, row, col in [
        (0, 2, 0),
        (0, 0, 3),
        (1, 1, 0),
        (1, 0, 2),
        (2, 0, 0),
        (-1, 0, 0),
        (0, -1, 0),
        (0, 0, -1),
    ]:
        answer = _tile(sqlite_client, image_id, level, row, col)
        assert answer.status_code == 422, (level, row, col, answer.text)
        assert answer.json()["code"] == "out_of_range"
    for params in ({"z": Z}, {"t": T}, {"channels": "2"}, {"channels": "0,5"}):
        answer = _tile(sqlite_client, image_id, 0, 0, 0, **params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["code"] == "out_of_range"


def test_each_plane_channel_and_place_has_its_own_etag(
    sqlite_client: TestClient, image_id: str
) -> None:
    requests = [
        (0, 0, 0, {}),
        (0, 0, 0, {"z": 1}),
        (0, 0, 0, {"t": 1}),
        (0, 0, 0, {"channels": "1"}),
        (0, 0, 0, {"channels": "0,1"}),
        (0, 0, 0, {"colors": "ff0000,00ff00"}),
        (0, 0, 0, {"windows": "0:100,0:200"}),
        (0, 0, 0, {"gamma": 2.0}),
        (0, 0, 0, {"format": "jpeg"}),
        (0, 0, 1, {}),
        (0, 1, 0, {}),
        (1, 0, 0, {}),
    ]
    etags = []
    bodies = []
    for level, row, col, params in requests:
        answer = _tile(sqlite_client, image_id, level, row, col, **params)
        assert answer.status_code == 200, (params, answer.text)
        etags.append(answer.headers["etag"])
        bodies.append(answer.content)
        assert answer.headers["cache-control"].startswith("private, max-age=")
    assert len(set(etags)) == len(etags)
    # Same request, same ETag; If-None-Match answers 304 without a body.
    again = _tile(sqlite_client, image_id, 0, 0, 0)
    assert again.headers["etag"] == etags[0]
    assert again.content == bodies[0]
    cached = sqlite_client.get(
        f"/api/images/{image_id}/tile/0/0/0", headers={"If-None-Match": etags[0]}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etags[0]
    stale = sqlite_client.get(
        f"/api/images/{image_id}/tile/0/0/0", params={"z": 1}, headers={"If-None-Match": etags[0]}
    )
    assert stale.status_code == 200


def test_cached_tiles_never_answer_for_another_plane(
    sqlite_client: TestClient, image_id: str
) -> None:
    stack = _stack()
    for _ in range(2):  # the second round is served from the render cache
        for t in range(T):
            for z in range(Z):
                got = _pixels(
                    _tile(sqlite_client, image_id, 0, 0, 1, t=t, z=z, channels=1, **GREY).content
                )
                np.testing.assert_array_equal(got[..., 0], stack[t, 1, z, :256, 256:512])


def test_default_windows_come_from_the_whole_plane(
    sqlite_client: TestClient, image_id: str
) -> None:
    """Neighbouring tiles share one window: a pixel value renders alike in every tile."""
    stack = _stack()
    seen: dict[int, int] = {}
    for row in range(2):
        for col in range(3):
            got = _pixels(
                _tile(sqlite_client, image_id, 0, row, col, channels=0, colors="ffffff").content
            )
            want = stack[0, 0, 0, row * 256 : (row + 1) * 256, col * 256 : (col + 1) * 256]
            for value, shade in zip(want.ravel()[::97], got[..., 0].ravel()[::97], strict=True):
                assert seen.setdefault(int(value), int(shade)) == int(shade)
    # A stretch, not the dtype range: low values are dark, high ones bright.
    assert seen[min(seen)] < 20
    assert seen[max(seen)] > 235


def test_rgb_tiles_show_the_file_colours(sqlite_client: TestClient, tmp_path: Path) -> None:
    y, x = np.ogrid[0:NY, 0:NX]
    rgb = np.stack(np.broadcast_arrays(x % 256, y % 256, (x + y) % 256), axis=-1).astype(np.uint8)
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    answer = upload(sqlite_client, path)
    assert answer.status_code == 201, answer.text
    rgb_id = answer.json()["id"]
    for row, col in [(0, 0), (1, 2), (0, 1)]:
        tile = _tile(sqlite_client, rgb_id, 0, row, col)
        assert tile.status_code == 200, tile.text
        np.testing.assert_array_equal(
            _pixels(tile.content), rgb[row * 256 : (row + 1) * 256, col * 256 : (col + 1) * 256]
        )


def test_tiles_use_the_files_channel_colours(sqlite_client: TestClient, tmp_path: Path) -> None:
    stack = _stack()[:1, :, :1]  # T=1, C=2, Z=1
    path = write_ome_tiff(
        tmp_path / "coloured.ome.tif",
        [stack],
        metadata=[{"Channel": {"Name": ["red", "green"], "Color": [-16776961, 16711935]}}],
    )
    answer = upload(sqlite_client, path)
    assert answer.status_code == 201, answer.text
    got = _pixels(_tile(sqlite_client, answer.json()["id"], 0, 1, 1, windows="0:255,0:255").content)
    want = stack[0, :, 0, 256:300, 256:512]
    np.testing.assert_array_equal(got[..., 0], want[0])
    np.testing.assert_array_equal(got[..., 1], want[1])
    assert not got[..., 2].any()


def test_gamma_and_format_reach_the_picture(sqlite_client: TestClient, image_id: str) -> None:
    plane = _stack()[0, 0, 0, :256, :256].astype(np.float64)
    bent = _pixels(_tile(sqlite_client, image_id, 0, 0, 0, channels=0, gamma=2.0, **GREY).content)
    np.testing.assert_allclose(bent[..., 0], np.rint((plane / 255.0) ** 2 * 255.0), atol=1)
    jpeg = _tile(sqlite_client, image_id, 0, 0, 0, format="jpeg")
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.content[:3] == b"\xff\xd8\xff"
    webp = _tile(sqlite_client, image_id, 0, 0, 0, format="webp")
    assert webp.content[8:12] == b"WEBP"


def test_out_of_range_details_name_what_is_missing(
    sqlite_client: TestClient, image_id: str
) -> None:
    channel = _tile(sqlite_client, image_id, 0, 0, 0, channels="0,2")
    assert channel.status_code == 422
    assert "channel 2 is out of range (0..1)" in channel.json()["detail"]
    tile = _tile(sqlite_client, image_id, 0, 2, 1)
    assert "tile 2/1 of level 0 does not exist" in tile.json()["detail"]
    # Planes are checked against the stored sizes before the file is opened.
    plane = _tile(sqlite_client, image_id, 0, 0, 0, z=Z)
    assert plane.status_code == 422
    assert plane.json()["detail"] == f"planes.ome.tif: z {Z} is out of range (0..{Z - 1})"
    time = _tile(sqlite_client, image_id, 0, 0, 0, t=T)
    assert time.json()["detail"] == f"planes.ome.tif: timepoint t {T} is out of range (0..{T - 1})"
    scene = _tile(sqlite_client, image_id, 0, 0, 0, scene=3)
    assert scene.status_code in (404, 422)
    assert "3" in scene.json()["detail"]


def test_one_grey_channel_and_rgba_and_windowed_rgb(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    y, x = np.ogrid[0:NY, 0:NX]
    grey = ((x + 2 * y) % 256).astype(np.uint8)
    grey_path = tmp_path / "grey.tif"
    tifffile.imwrite(grey_path, grey)
    grey_id = upload(sqlite_client, grey_path).json()["id"]
    got = _pixels(_tile(sqlite_client, grey_id, 0, 1, 2, windows="0:255", colors="ffffff").content)
    np.testing.assert_array_equal(got[..., 1], grey[256:, 512:])

    rgba = np.stack(np.broadcast_arrays(x % 256, y % 256, (x + y) % 256, 255 + 0 * x), axis=-1)
    rgba_path = tmp_path / "rgba.tif"
    tifffile.imwrite(
        rgba_path, rgba.astype(np.uint8), photometric="rgb", extrasamples=["unassalpha"]
    )
    answer = upload(sqlite_client, rgba_path)
    assert answer.status_code == 201, answer.text
    tile = _tile(sqlite_client, answer.json()["id"], 0, 0, 0)
    assert tile.status_code == 200, tile.text
    np.testing.assert_array_equal(_pixels(tile.content), rgba[:256, :256, :3])

    rgb = rgba[..., :3].astype(np.uint8)
    rgb_path = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb_path, rgb, photometric="rgb")
    rgb_id = upload(sqlite_client, rgb_path).json()["id"]
    windowed = _pixels(_tile(sqlite_client, rgb_id, 0, 0, 0, windows="0:127").content)
    want = np.clip(np.rint(rgb[:256, :256].astype(np.float64) / 127.0 * 255.0), 0, 255)
    np.testing.assert_allclose(windowed, want, atol=1)


def test_render_tile_defaults_are_the_first_plane_in_png(tmp_path: Path) -> None:
    from zstack_analyzer import open_image
    from zstack_analyzer.zarr.tiles import render_tile, tile_grid
    from zstack_analyzer.zarr.virtual import VirtualOmeZarr

    path = write_ome_tiff(tmp_path / "planes.ome.tif", [_stack()])
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=None, identity="defaults")
        assert tile_grid(store, 0, 0) == (2, 3)
        assert tile_grid(store, 0, 1) == (1, 2)
        default = render_tile(
            store, 0, 0, 1, 2, channels=[1], colors=["ffffff"], windows=[(0, 255)]
        )
        explicit = render_tile(
            store, 0, 0, 1, 2, t=0, z=0, channels=[1], colors=["ffffff"], windows=[(0, 255)],
            gamma=1.0, image_format="png",
        )  # fmt: skip
        assert default == explicit
        assert default[:8] == b"\x89PNG\r\n\x1a\n"
        np.testing.assert_array_equal(_pixels(default)[..., 0], _stack()[0, 1, 0, 256:, 512:])
