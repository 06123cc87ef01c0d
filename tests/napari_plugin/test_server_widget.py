""" "Open from a zstack server" against a live server with a token, in a real napari viewer.

The widget's search finds an uploaded image by the gallery's filters, and opening it
gives lazy layers (dask over the virtual OME-Zarr) whose pixels, names, scales and
windows are the library's and the store's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dask.array as da
import httpx
import numpy as np
import pytest

from tests.service.live import live_server
from tests.synthetic_tiff import write_ome_tiff

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.slow

TOKEN = "napari-widget-token"  # noqa: S105  (the test server's own token)


def _upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as fh:
        response = client.post("/api/images/upload", files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.realdata
def test_search_and_open_a_served_image(
    make_napari_viewer: Callable[..., Any], testdata: Path, tmp_path: Path
) -> None:
    from zstack_analyzer import open_image
    from zstack_analyzer.napari.widget import ServerWidget

    czi = testdata / "czi/CD_s_1_t_3_c_2_z_5.czi"
    other = testdata / "tiff/movie.stk"
    with (
        live_server(tmp_path / "data", api_token=TOKEN) as base,
        httpx.Client(
            base_url=base, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        image_id = _upload(client, czi)
        _upload(client, other)
        two_scenes = testdata / "czi/xyz__multiple_images.czi"
        two_id = _upload(client, two_scenes)
        omero = client.get(f"/api/images/{image_id}/zarr/.zattrs").json()["omero"]

        viewer = make_napari_viewer()
        widget = ServerWidget(viewer)
        widget.url.value = base
        # Without the token the server refuses: the status line says so, nothing raises.
        assert widget.search() == []
        assert "401" in widget.status.value
        widget.token.value = TOKEN
        widget.format.value = "CZI"
        hits = widget.search()
        assert {hit.id for hit in hits} == {image_id, two_id}
        assert widget.status.value == "2 image(s)"
        widget.format.value = ""
        widget.q.value = "movie"
        assert [hit.filename for hit in widget.search()] == ["movie.stk"]
        widget.q.value = "CD_s_1"
        assert [hit.id for hit in widget.search()] == [image_id]
        widget.results.value = image_id
        layers = widget.open_selected()
        assert layers == list(viewer.layers)
        with open_image(czi) as reader:
            metadata = reader.metadata()
            pixels = np.asarray(reader.to_dask().compute())
        assert [layer.name for layer in layers] == [
            f"{czi.name}: {ch.name}" for ch in metadata.channels
        ]
        size = metadata.physical_size
        for c, layer in enumerate(layers):
            # Lazy: dask over the served zarr, one chunk per plane tile.
            data = layer.data[0] if layer.multiscale else layer.data
            assert isinstance(data, da.Array)
            assert data.chunksize[:2] == (1, 1)
            assert data.shape == (3, 5, 170, 240)
            assert list(layer.scale) == pytest.approx(
                [metadata.time_interval_s, size.z_um, size.y_um, size.x_um]
            )
            window = omero["channels"][c]["window"]
            assert list(layer.contrast_limits) == [window["start"], window["end"]]
            np.testing.assert_array_equal(np.asarray(data), pixels[:, c])

        # The second scene of a two-scene file, chosen in the widget.
        widget.q.value = "xyz__multiple"
        (hit,) = widget.search()
        assert hit.scene_count == 2
        widget.results.value = two_id
        widget.scene.value = 1
        (layer,) = widget.open_selected()
        assert layer.name.startswith(f"{two_scenes.name} #2: ")
        with open_image(two_scenes) as reader:
            scene1 = np.asarray(reader.to_dask(1).compute())
        data = layer.data[0] if layer.multiscale else layer.data
        np.testing.assert_array_equal(np.asarray(data), scene1[:, 0])


def test_opening_fetches_only_the_chunks_napari_shows(
    make_napari_viewer: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 Z planes served, two shown: the server makes the chunks of those (and plane 0) only."""
    from zstack_analyzer.napari.widget import ServerWidget
    from zstack_analyzer.zarr.virtual import VirtualOmeZarr

    rng = np.random.default_rng(5)
    stack = rng.integers(0, 4000, size=(1, 1, 40, 96, 80), dtype=np.uint16)
    path = write_ome_tiff(tmp_path / "deep.ome.tif", [stack])
    made: list[tuple[int, ...]] = []
    real_chunk = VirtualOmeZarr.chunk

    def counted(self: VirtualOmeZarr, *index: int) -> bytes:
        made.append(index)
        return real_chunk(self, *index)

    monkeypatch.setattr(VirtualOmeZarr, "chunk", counted)
    with (
        live_server(tmp_path / "data") as base,
        httpx.Client(base_url=base, timeout=120) as client,
    ):
        image_id = _upload(client, path)
        viewer = make_napari_viewer()
        widget = ServerWidget(viewer)
        widget.url.value = base
        assert [hit.id for hit in widget.search()] == [image_id]
        widget.results.value = image_id
        (layer,) = widget.open_selected()
        viewer.dims.set_point(1, 20)  # Z (axis 1 of T, Z, Y, X): the 21st plane
        shown = np.asarray(layer._slice.image.view)
    planes = {index[4] for index in made}  # (scene, level, t, c, z, cy, cx)
    # napari shows the middle plane (19) first, reads plane 0 once when it makes the layer,
    # then the plane asked for: 3 of the 40 planes, nothing else.
    assert 20 in planes
    assert planes <= {0, 19, 20}, sorted(planes)
    np.testing.assert_array_equal(shown, stack[0, 0, 20])
