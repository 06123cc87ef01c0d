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

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

TOKEN = "napari-widget-token"  # noqa: S105  (the test server's own token)


def _upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as fh:
        response = client.post("/api/images/upload", files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


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
        assert [hit.id for hit in hits] == [image_id]
        assert widget.status.value == "1 image(s)"
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
