"""Quality measures on the real corpus equal numpy on the same planes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.conftest import expected_entries
from tests.conftest import testdata_dir as corpus_dir
from zstack_analyzer import open_image
from zstack_analyzer.errors import ZstackError
from zstack_analyzer.quality import measure_reader

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realdata

#: Files larger than this are left to the bench (test time stays small).
MAX_BYTES = 40 * 1024**2


def _files() -> list[str]:
    root = corpus_dir()
    names = sorted({str(e["path"]) for e in expected_entries() if e.get("expect") == "ok"})
    return [
        n
        for n in names
        if root is not None and (root / n).is_file() and (root / n).stat().st_size <= MAX_BYTES
    ]


@pytest.mark.parametrize("name", _files() or ["(corpus absent)"])
def test_quality_equals_numpy(testdata: Path, name: str) -> None:
    with open_image(testdata / name) as reader:
        info = reader.scene_info(0)
        if info.size_t * info.size_c * info.size_z > 400:
            pytest.skip(f"{name}: {info.size_t * info.size_c * info.size_z} planes (bench only)")
        try:
            quality = measure_reader(reader, 0)
        except ZstackError as exc:  # a file whose planes are over the limits says so
            pytest.skip(f"{name}: {exc}")
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
