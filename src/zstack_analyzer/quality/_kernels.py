"""The per-pixel work of the plane measures: one scan for histogram, range and gradients.

Why a module of its own: this scan is the whole per-pixel cost of measuring
quality at ingest (everything after it works on a histogram of at most 65,536
bins). Two implementations give the same numbers:

- :func:`numba_scan` (when ``numba`` is installed, the ``quality`` extra): one
  compiled pass over the band that counts each value (into four interleaved
  32-bit counters a value, added into the histogram at the end of the band),
  tracks the range and sums the squared Brenner differences in exact integer
  arithmetic, without holding the GIL (so measuring threads overlap each other
  and the reads);
- :func:`numpy_scan`: ``np.bincount`` for the histogram and the differences on
  one float64 copy of the band, exact for 8- and 16-bit values (squared in
  place and summed by numpy, not by a BLAS dot: OpenBLAS starts threads for
  long vectors, which on a busy machine cost milliseconds a plane).

``ZSTACK_QUALITY_KERNEL=numpy`` forces the numpy scan (tests run both).

Both take the band as a 2-D array ``(rows, X * S)`` (samples interleaved, so a
horizontal neighbour is ``hstep = 2 * S`` values away), the last two rows of
the previous band (``prev``, 0 to 2 rows), the value offset (the dtype's
minimum for signed data, so index = value - offset) and the histogram to add
into, and return ``(low, high, squared_difference_sum, pairs)``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

#: Bins of the float-data Otsu histogram (scikit-image's default).
FLOAT_BINS = 256

__all__ = [
    "FLOAT_BINS",
    "Scan",
    "Summary",
    "inner",
    "kernels",
    "numba_scan",
    "numpy_scan",
    "numpy_summary",
    "otsu_index",
    "scan_kernel",
]

#: (band, prev, hstep, offset, hist) -> (low, high, squared difference sum, pairs)
Scan = Callable[[np.ndarray, np.ndarray, int, int, np.ndarray], tuple[int, int, float, int]]
#: (hist of the occupied range, value of its first bin, saturation bin or -1) -> 9 floats:
#: mean, variance, saturated count, p1, p50, p99, Otsu bin, foreground count, snr (NaN: none)
Summary = Callable[[np.ndarray, float, int], np.ndarray]


def numpy_summary(hist: np.ndarray, first: float, saturation_index: int) -> np.ndarray:
    """The histogram summary with numpy (the same numbers as the compiled one)."""
    out = np.full(9, np.nan)
    n = int(hist.sum())
    values = np.arange(hist.size, dtype=np.float64) + first
    weights = hist.astype(np.float64)
    mean = inner(weights, values) / n
    centred = values - mean
    out[0] = mean
    out[1] = max(0.0, inner(weights, centred * centred) / n)
    if saturation_index >= 0:
        out[2] = float(hist[saturation_index:].sum())
    cumulative = np.cumsum(hist)
    for k, q in ((3, 1.0), (4, 50.0), (5, 99.0)):
        out[k] = _hist_percentile(cumulative, q, n) + first
    index = otsu_index(hist)
    if index is None:
        return out
    out[6] = index
    fg_w, bg_w = weights[index + 1 :], weights[: index + 1]
    fg_n, bg_n = float(fg_w.sum()), float(bg_w.sum())
    out[7] = fg_n
    if fg_n > 0 and bg_n > 0:
        bg_vals = values[: index + 1]
        bg_mean = inner(bg_w, bg_vals) / bg_n
        bg_std = (inner(bg_w, (bg_vals - bg_mean) ** 2) / bg_n) ** 0.5
        if bg_std > 0:
            out[8] = (inner(fg_w, values[index + 1 :]) / fg_n) / bg_std
    return out


def inner(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product without BLAS.

    Why: OpenBLAS starts threads for long vectors; on a busy machine that costs
    milliseconds a plane.
    """
    return float(np.einsum("i,i->", a.reshape(-1), b.reshape(-1)))


def _hist_percentile(cumulative: np.ndarray, q: float, n: int) -> float:
    """Numpy's linear percentile from a cumulative histogram of integer values."""
    position = q / 100.0 * (n - 1)
    below = int(np.floor(position))
    frac = position - below
    lo = int(np.searchsorted(cumulative, below, side="right"))
    hi = int(np.searchsorted(cumulative, min(below + 1, n - 1), side="right"))
    return float(lo + (hi - lo) * frac)


def otsu_index(hist: np.ndarray) -> int | None:
    """Index of the last background bin maximising the between-class variance.

    Returns ``None`` for fewer than two occupied bins (nothing to separate).
    """
    if np.count_nonzero(hist) < 2:
        return None
    weights = hist.astype(np.float64)
    bins = np.arange(weights.size, dtype=np.float64)
    w0 = np.cumsum(weights)[:-1]
    w1 = weights.sum() - w0
    m0 = np.cumsum(weights * bins)[:-1]
    m1 = inner(weights, bins) - m0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - m1 / w1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return int(np.argmax(between))


def numpy_scan(
    band: np.ndarray, prev: np.ndarray, hstep: int, offset: int, hist: np.ndarray
) -> tuple[int, int, float, int]:
    """The scan with numpy only (see the module docstring)."""
    values = band.reshape(-1)
    low, high = int(values.min()), int(values.max())
    counts = np.bincount(np.subtract(values, offset, dtype=np.int64) if offset else values)
    hist[: counts.size] += counts
    # One float64 copy (exact for 8/16-bit values) of the previous two rows and the band.
    rows = np.concatenate((prev, band)) if prev.shape[0] else band
    width = rows.shape[1]
    flat = rows.reshape(-1).astype(np.float64)
    diff = np.empty(max(0, flat.size - hstep), np.float64)
    total = 0.0
    pairs = 0
    skip = prev.shape[0] * width  # horizontal pairs of prev were counted with the previous band
    if width > hstep:
        # Horizontal pairs on the flat rows: the ``hstep`` pairs that wrap to the next row
        # (x >= width - hstep) are taken out again.
        part = flat[skip:]
        d = np.subtract(part[hstep:], part[:-hstep], out=diff[: part.size - hstep])
        np.square(d, out=d)
        total += float(d.sum())
        if band.shape[0] > 1:
            cut = d[: (band.shape[0] - 1) * width].reshape(band.shape[0] - 1, width)[:, -hstep:]
            total -= float(cut.sum())
        pairs += band.shape[0] * (width - hstep)
    vertical = rows.shape[0] - 2
    if vertical > 0:
        step = 2 * width
        d = np.subtract(flat[step:], flat[:-step], out=diff[: flat.size - step])
        np.square(d, out=d)
        total += float(d.sum())
        pairs += vertical * width
    return low, high, total, pairs


def _compile_numba() -> tuple[Scan, Summary] | None:
    try:
        from zstack_analyzer.quality import _compiled
    except ImportError:
        return None
    lanes_scan = _compiled.scan_lanes
    local = threading.local()

    def scan(
        band: np.ndarray, prev: np.ndarray, hstep: int, offset: int, hist: np.ndarray
    ) -> tuple[int, int, float, int]:
        # The compiled scan's four counters a value, one zeroed array a thread (1 MiB for
        # 16-bit data), made once: the scan leaves it zero again.
        made: dict[int, np.ndarray] = local.__dict__.setdefault("lanes", {})
        lanes = made.get(hist.size)
        if lanes is None:
            lanes = made[hist.size] = np.zeros(4 * hist.size, np.uint32)
        result: tuple[int, int, float, int] = lanes_scan(band, prev, hstep, offset, hist, lanes)
        return result

    return scan, _compiled.summary


_NUMBA: tuple[Scan, Summary] | None = None
_TRIED = False
_LOADING = threading.Lock()


def _numba() -> tuple[Scan, Summary] | None:
    """The compiled kernels, loaded once; ``None`` without numba.

    Why the lock, and the flag set only after the load: threads measuring the
    first planes of a process at once (``measure_reader``'s pool) asked while
    the first was still loading, got ``None`` and measured with the numpy
    kernels, whose float sums differ in the last bits.
    """
    global _NUMBA, _TRIED
    if not _TRIED:
        with _LOADING:
            if not _TRIED:
                _NUMBA = _compile_numba()
                _TRIED = True
    return _NUMBA


def numba_scan() -> Scan | None:
    """The compiled scan, or ``None`` without numba (compiled, or loaded from cache, once)."""
    compiled = _numba()
    return compiled[0] if compiled is not None else None


def kernels() -> tuple[Scan, Summary]:
    """The scan and the histogram summary to use.

    Compiled when numba is there, unless ``ZSTACK_QUALITY_KERNEL=numpy``.
    """
    if os.environ.get("ZSTACK_QUALITY_KERNEL", "").lower() != "numpy":
        compiled = _numba()
        if compiled is not None:
            return compiled
    return numpy_scan, numpy_summary


def scan_kernel() -> Scan:
    """The scan of :func:`kernels`."""
    return kernels()[0]
