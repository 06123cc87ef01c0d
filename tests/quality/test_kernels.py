"""The compiled scan (numba) and the numpy scan give the numbers numpy defines.

Why: the compiled scan is what ingest runs (one pass per plane, for speed); the
numpy scan is the fallback without numba. Both are checked against plain numpy
formulas on every dtype the histogram path takes, in bands of every size and
with interleaved samples (RGB), where an index slip would show.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.needs import unavailable
from zstack_analyzer.quality import PlaneAccumulator, measure_plane
from zstack_analyzer.quality import _kernels as kernels


def _reference(plane: np.ndarray) -> dict[str, float]:
    data = plane.astype(np.float64)
    horizontal = data[:, 2:] - data[:, :-2]
    vertical = data[2:] - data[:-2]
    pairs = horizontal.size + vertical.size
    return {
        "brenner_sum": float((horizontal**2).sum() + (vertical**2).sum()),
        "pairs": float(pairs),
        "low": float(data.min()),
        "high": float(data.max()),
    }


SCANS = ["numba", "numpy"]


def _scan(name: str) -> kernels.Scan:
    scan = kernels.numba_scan() if name == "numba" else kernels.numpy_scan
    if scan is None:
        unavailable("numba (the quality extra) is not installed")
    return scan


@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize(
    ("dtype", "samples"),
    [("uint8", 0), ("uint16", 0), ("int16", 0), ("int8", 0), ("uint8", 3), ("uint16", 2)],
)
def test_scan_in_bands_equals_numpy(name: str, dtype: str, samples: int) -> None:
    rng = np.random.default_rng(11)
    info = np.iinfo(dtype)
    shape = (37, 23, samples) if samples else (37, 23)
    plane = rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)
    scan = _scan(name)
    offset = int(info.min) if info.kind == "i" else 0
    hist = np.zeros(2 ** (8 * plane.dtype.itemsize), np.int64)
    flat = plane.reshape(plane.shape[0], -1)
    prev = flat[:0]
    low, high, total, pairs = np.iinfo(np.int64).max, np.iinfo(np.int64).min, 0.0, 0
    for start, stop in ((0, 1), (1, 3), (3, 4), (4, 20), (20, 37)):
        band = np.ascontiguousarray(flat[start:stop])
        lo, hi, t, p = scan(band, prev, 2 * max(1, samples), offset, hist)
        low, high, total, pairs = min(low, lo), max(high, hi), total + t, pairs + p
        prev = np.concatenate((prev, band))[-2:]
    expected = _reference(plane)
    horizontal = plane.astype(np.float64)[:, 2:] - plane.astype(np.float64)[:, :-2]
    vertical = plane.astype(np.float64)[2:] - plane.astype(np.float64)[:-2]
    assert total == float((horizontal**2).sum() + (vertical**2).sum())
    assert pairs == horizontal.size + vertical.size == expected["pairs"]
    assert (low, high) == (expected["low"], expected["high"])
    values, counts = np.unique(plane.astype(np.int64) - offset, return_counts=True)
    assert np.array_equal(np.flatnonzero(hist), values)
    assert np.array_equal(hist[values], counts)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_compiled_and_numpy_summaries_agree(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _scan("numba")
    rng = np.random.default_rng(3)
    plane = rng.normal(300, 40, size=(64, 48))
    plane[:, 30:] += 900
    plane = plane.clip(0, 4095).round().astype(dtype)
    compiled = measure_plane(plane, significant_bits=12).as_dict()
    monkeypatch.setenv("ZSTACK_QUALITY_KERNEL", "numpy")
    plain = measure_plane(plane, significant_bits=12).as_dict()
    assert compiled.keys() == plain.keys()
    for key, value in plain.items():
        assert compiled[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    # The p1/p50/p99 of the histogram are numpy's own percentiles.
    data = plane.astype(np.float64)
    assert compiled["p1"] == pytest.approx(np.percentile(data, 1), rel=1e-12)
    assert compiled["p99"] == pytest.approx(np.percentile(data, 99), rel=1e-12)


def test_histograms_are_reused_clean() -> None:
    """A reused histogram starts at zero: the second plane's counts are its own."""
    bright = np.full((20, 20), 4000, np.uint16)
    dark = np.full((20, 20), 10, np.uint16)
    dark[0, 0] = 11
    first = PlaneAccumulator(bright.dtype)
    first.add_rows(bright)
    assert first.finish().max_fraction == 1.0
    second = measure_plane(dark)
    assert (second.min, second.max, second.max_fraction) == (10.0, 11.0, 1 / 400)
    assert second.p99 == pytest.approx(np.percentile(dark, 99))


def test_compiled_scan_is_loaded_from_numbas_cache() -> None:
    """A new process (a dask worker, the next ingest) loads the compiled scan from disk.

    Compiled as closures, the kernels were compiled again in every process: 7 s on the
    first plane of each worker. The second of two fresh processes must hit the cache.
    """
    _scan("numba")
    code = (
        "import numpy as np\n"
        "from zstack_analyzer.quality import measure_plane\n"
        "from zstack_analyzer.quality import _compiled\n"
        "measure_plane(np.zeros((4, 4), np.uint16))\n"
        "print(sum(_compiled.scan_lanes.stats.cache_hits.values()),"
        " sum(_compiled.summary.stats.cache_hits.values()))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs[1] == ["1", "1"], runs


def test_threads_measuring_first_all_get_the_compiled_kernels() -> None:
    """Threads that measure the first planes of a process at once all get the compiled scan.

    The kernels were loaded on first use with a flag set before the load finished:
    a second thread asking meanwhile got ``None`` and measured with the numpy
    kernels, whose float sums differ in the last bits (a 2 GB stack's quality,
    measured on threads from its first plane, differed from run to run).
    """
    _scan("numba")
    code = (
        "import threading\n"
        "from zstack_analyzer.quality import _kernels\n"
        "barrier = threading.Barrier(8)\n"
        "got = []\n"
        "def first():\n"
        "    barrier.wait()\n"
        "    got.append(_kernels.kernels())\n"
        "threads = [threading.Thread(target=first) for _ in range(8)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join()\n"
        "print(sum(k[1] is _kernels.numpy_summary for k in got), len({id(k[0]) for k in got}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["0", "1"], out


@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize("dtype", ["uint16", "int8"])
def test_scan_of_wide_rows_with_extremes_in_later_rows(name: str, dtype: str) -> None:
    """The scan goes row by row: range, counts and differences of every row are kept.

    Rows wider than any vector width (and not a multiple of one), the plane's
    extremes only in later rows of a band (never its first row), and the largest
    possible differences (dtype minimum next to maximum, two apart) so a narrowed
    integer would overflow.
    """
    info = np.iinfo(dtype)
    rng = np.random.default_rng(23)
    middle = (int(info.min) + int(info.max)) // 2
    plane = rng.integers(middle - 20, middle + 20, size=(13, 1031)).astype(dtype)
    plane[5, 100:110:2] = info.max
    plane[5, 101:111:2] = info.min
    plane[7, 999] = info.min
    plane[9, 1030] = info.max
    plane[11, 3] = info.min
    scan = _scan(name)
    offset = int(info.min) if info.kind == "i" else 0
    hist = np.zeros(2 ** (8 * plane.dtype.itemsize), np.int64)
    prev = plane[:0]
    results = []
    for start, stop in ((0, 1), (1, 4), (4, 9), (9, 13)):
        band = np.ascontiguousarray(plane[start:stop])
        results.append(scan(band, prev, 2, offset, hist))
        prev = np.concatenate((prev, band))[-2:]
    expected = _reference(plane)
    data = plane.astype(np.float64)
    assert sum(r[2] for r in results) == expected["brenner_sum"]
    assert sum(r[3] for r in results) == expected["pairs"]
    bands = [plane[0:1], plane[1:4], plane[4:9], plane[9:13]]
    assert [(r[0], r[1]) for r in results] == [(b.min(), b.max()) for b in bands]
    assert (min(r[0] for r in results), max(r[1] for r in results)) == (data.min(), data.max())
    values, counts = np.unique(plane.astype(np.int64) - offset, return_counts=True)
    assert np.array_equal(np.flatnonzero(hist), values)
    assert np.array_equal(hist[values], counts)
