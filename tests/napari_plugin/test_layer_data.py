"""The layer data themselves, without a viewer: other scenes on demand, typed errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realdata


def test_any_scene_on_demand(testdata: Path) -> None:
    from zstack_analyzer import open_image
    from zstack_analyzer.napari.reader import scene_layer_data
    from zstack_analyzer.zarr.ngff import scene_title

    path = testdata / "czi/S3_1Pos_2Mosaic_T1_Z1_CH1.czi"
    ((data, kwargs, kind),) = scene_layer_data(path, 2)
    assert kind == "image"
    assert kwargs["visible"] is True
    assert kwargs["metadata"]["scene"] == 2
    with open_image(path) as reader:
        expected = np.asarray(reader.to_dask(2).compute())
        metadata = reader.metadata(2)
        title = scene_title(metadata, scenes=3)
    assert kwargs["name"] == [f"{title}: {metadata.channels[0].name}"] == ["TR2: DAPI"]
    np.testing.assert_array_equal(np.asarray(data), expected)
    with pytest.raises(SceneNotFoundError):
        scene_layer_data(path, 3)


def test_a_truncated_file_is_a_typed_error(testdata: Path, tmp_path: Path) -> None:
    from zstack_analyzer.napari.reader import get_reader

    cut = tmp_path / "cut.czi"
    cut.write_bytes((testdata / "czi/CD_s_1_t_3_c_2_z_5.czi").read_bytes()[:5000])
    read = get_reader(str(cut))
    assert read is not None  # ours by content: the error is ours to report
    with pytest.raises(CorruptFileError):
        read(str(cut))
