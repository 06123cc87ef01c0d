"""The picture routes' worker jobs (service/routes/render.py ``render_job``, ``_histogram_job``).

Found by mutation testing: the route tests render and measure scene 0 at t 0 of
files well inside the read limits, so a job that dropped the scene, the time
point, the plane, the limits, the cache or the file's identity answered the
same. Here each is told apart: a two-scene, two-timepoint file whose planes
start at distinct values, and limits the file exceeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from zstack_analyzer.cache import RenderCache
from zstack_analyzer.errors import ZstackError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.service.routes.render import _histogram_job, render_job

if TYPE_CHECKING:
    from pathlib import Path

#: Limits this file exceeds (it is 32 pixels wide).
TIGHT = ReadLimits(max_dimension=16)


def _base(scene: int, t: int, z: int) -> int:
    return 1000 * scene + 100 * t + 10 * z + 1


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """Two scenes of T=2, Z=3, 24x32 uint16; plane (s, t, z) holds _base(s, t, z) + 0..767."""
    path = tmp_path / "two.ome.tif"
    ramp = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32)
    with tifffile.TiffWriter(path, ome=True) as tif:
        for scene in (0, 1):
            planes = [[ramp + _base(scene, t, z) for z in range(3)] for t in range(2)]
            tif.write(np.array(planes, np.uint16), metadata={"axes": "TZYX"})
    return path


def test_histogram_job_measures_the_asked_plane(stack: Path) -> None:
    limits = ReadLimits()
    for scene, t, z in ((0, 1, 2), (1, 0, 1), (1, 1, 0)):
        (channel,) = _histogram_job(stack, scene, t, z, limits)
        assert (channel["min"], channel["max"]) == (_base(scene, t, z), _base(scene, t, z) + 767)
    (whole,) = _histogram_job(stack, 1, 1, None, limits)
    assert whole["min"] == _base(1, 1, 0)
    assert whole["max"] == _base(1, 1, 2) + 767
    with pytest.raises(ZstackError):
        _histogram_job(stack, 0, 0, 0, TIGHT)


def test_render_job_renders_into_the_cache_under_the_identity(stack: Path, tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "cache")
    spec = RenderSpec(kind="slice", scene=1, t=1, z=2, width=16, height=16)
    result = render_job(stack, spec, ReadLimits(), cache, "ident")
    assert result.etag == spec.cache_key("ident")
    assert result.from_cache is False
    assert cache.get("ident", spec.cache_key("ident")) == result.data
    again = render_job(stack, spec, ReadLimits(), cache, "ident")
    assert (again.data, again.from_cache) == (result.data, True)
    with pytest.raises(ZstackError):
        render_job(stack, RenderSpec(kind="slice", z=0), TIGHT, cache, "other")
