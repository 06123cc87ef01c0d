"""Every readable file of the real corpus renders a slice, a projection and an orthogonal view."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import expected_entries
from zstack_analyzer import ImageLoader, ThumbnailGenerator
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import channel_histograms, render_file

if TYPE_CHECKING:
    from pathlib import Path

OK_ENTRIES = [e for e in expected_entries() if e["expect"] == "ok"]

pytestmark = pytest.mark.realdata


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("entry", OK_ENTRIES, ids=[e["path"] for e in OK_ENTRIES])
def test_renders_slice_mip_and_orthogonal(entry: dict[str, Any], testdata: Path) -> None:
    path = testdata / entry["path"]
    scenes = {0, len(entry["scenes"]) - 1}
    for scene in sorted(scenes):
        sizes = entry["scenes"][scene]["sizes"]
        specs = [
            RenderSpec(kind="slice", scene=scene, z=sizes["Z"] // 2, width=256, height=256),
            RenderSpec(kind="thumbnail", scene=scene, width=256, height=256),
            RenderSpec(kind="mip", scene=scene, axis=1, width=256, height=256),
            RenderSpec(kind="orthogonal", scene=scene, width=768, height=256),
        ]
        for spec in specs:
            pixels = _decode(render_file(path, spec).data)
            height, width = pixels.shape[:2]
            assert width <= spec.width and height <= spec.height
            slack = 3 if spec.kind == "orthogonal" else 0  # three panels each rounded down
            assert width >= spec.width - slack or height >= spec.height - slack
        mip = _decode(render_file(path, RenderSpec(kind="thumbnail", scene=scene)).data)
        assert mip.max() > 0, "the projection is black"
    stats = channel_histograms(path)
    assert len(stats) == entry["scenes"][0]["sizes"]["C"]
    assert all(len(s["bins"]) == 256 and s["p_low"] <= s["p_high"] for s in stats)


@pytest.mark.parametrize("entry", OK_ENTRIES, ids=[e["path"] for e in OK_ENTRIES])
def test_generator_on_loaded_arrays(entry: dict[str, Any], testdata: Path) -> None:
    async def run() -> list[Image.Image]:
        data, metadata = await ImageLoader().load_image(testdata / entry["path"])
        gen = ThumbnailGenerator()
        return [
            await gen.generate_thumbnail(data, metadata=metadata, z_slice=0),
            await gen.generate_thumbnail(data, metadata=metadata),
            await gen.generate_mip_thumbnail(data, metadata=metadata, axis=2),
            await gen.generate_multi_view_thumbnail(data, metadata=metadata),
        ]

    pictures = asyncio.run(run())
    for picture, box in zip(
        pictures, [(256, 256), (256, 256), (512, 512), (768, 256)], strict=True
    ):
        assert picture.mode == "RGB"
        assert picture.width <= box[0] and picture.height <= box[1]
