"""Quality measures on the real corpus equal numpy on the same planes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.conftest import expected_entries
from tests.conftest import testdata_dir as corpus_dir
from zstack_analyzer import open_image
from zstack_analyzer.quality import measure_reader

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realdata

#: Files larger than this are left to the bench (test time stays small).
MAX_BYTES = 40 * 1024**2
MAX_PLANES = 400


def _planes(entry: dict[str, object]) -> int:
    scenes = entry.get("scenes") or [{}]
    sizes = scenes[0].get("sizes", {}) if isinstance(scenes, list) else {}  # type: ignore[union-attr]
    return int(sizes.get("T", 1)) * int(sizes.get("C", 1)) * int(sizes.get("Z", 1))


def _files() -> list[str]:
    """Corpus files of scene 0 under MAX_PLANES planes (a 5,120-plane LIF is bench-only)."""
    root = corpus_dir()
    names = sorted(
        {
            str(e["path"])
            for e in expected_entries()
            if e.get("expect") == "ok" and _planes(e) <= MAX_PLANES
        }
    )
    return [
        n
        for n in names
        if root is not None and (root / n).is_file() and (root / n).stat().st_size <= MAX_BYTES
    ]


@pytest.mark.parametrize("name", _files() or ["(corpus absent)"])
def test_quality_equals_numpy(testdata: Path, name: str) -> None:
    with open_image(testdata / name) as reader:
        info = reader.scene_info(0)
        quality = measure_reader(reader, 0)
        bits = reader.metadata(0).significant_bits
        last = (info.size_t - 1, info.size_c - 1, info.size_z - 1)
        for t, c, z in {(0, 0, 0), last}:
            plane = reader.read_plane(0, t, c, z)
            measured = quality.channels[c].planes[t][z]
            data = plane.astype(np.float64)
            scale = float(np.iinfo(plane.dtype).max) if plane.dtype.kind in "ui" else 1.0
            mean = data.mean()
            assert measured.mean == pytest.approx(mean, rel=1e-9)
            assert measured.std == pytest.approx(data.std(), rel=1e-6, abs=1e-9)
            assert measured.min == data.min()
            assert measured.max == data.max()
            if measured.p50 is not None:
                assert measured.p1 == pytest.approx(np.percentile(data, 1))
                assert measured.p50 == pytest.approx(np.percentile(data, 50))
                assert measured.p99 == pytest.approx(np.percentile(data, 99))
            expected_focus = data.var() / scale / mean if mean > 0 else 0.0
            assert measured.focus_score == pytest.approx(expected_focus, rel=1e-6, abs=1e-12)
            if plane.dtype.kind in "ui":
                top = float(np.iinfo(plane.dtype).max)
                if bits is not None and bits < plane.dtype.itemsize * 8:
                    top = float(2**bits - 1)
                assert measured.saturated_fraction == pytest.approx(
                    np.count_nonzero(data >= top) / data.size
                )
            assert measured.max_fraction == pytest.approx(
                np.count_nonzero(data == data.max()) / data.size
            )
        channel = quality.channels[0]
        assert 0 <= channel.best_focus_z < info.size_z
        assert len(channel.focus) == info.size_z
        assert len(channel.intensity_t) == info.size_t
