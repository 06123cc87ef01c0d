"""The per-pixel work of the plane measures: one scan for histogram, range and gradients.

Why a module of its own: this scan is the whole per-pixel cost of measuring
quality at ingest (everything after it works on a histogram of at most 65,536
bins). Two implementations give the same numbers:

- :func:`numba_scan` (when ``numba`` is installed, the ``quality`` extra): one
  compiled pass over the band that counts each value, tracks the range and sums
  the squared Brenner differences in exact integer arithmetic, without holding
  the GIL (so a measuring thread overlaps the reader's decode threads);
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
from collections.abc import Callable
from typing import Any

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
        import numba
    except ImportError:
        return None

    @numba.njit(nogil=True, cache=True)
    def order_statistics(hist: Any, ranks: Any) -> Any:  # pragma: no cover - compiled
        # The bin of each (ascending) 0-based rank, in one walk up the histogram.
        found = np.empty(ranks.size, np.int64)
        k = 0
        seen = 0
        for i in range(hist.size):
            seen += hist[i]
            while k < ranks.size and seen > ranks[k]:
                found[k] = i
                k += 1
            if k == ranks.size:
                break
        return found

    @numba.njit(nogil=True, cache=True)
    def summary(hist: Any, first: float, saturation_index: int) -> Any:  # pragma: no cover
        # Empty bins are skipped wherever they cannot change a sum (a 16-bit plane's
        # values are usually a few thousand of the range, often in separate clumps).
        out = np.full(9, np.nan)
        size = hist.size
        n = 0
        total = 0.0
        all_m = 0.0
        occupied = 0
        for i in range(size):
            h = hist[i]
            if h == 0:
                continue
            n += h
            total += h * (first + i)
            all_m += h * float(i)
            occupied += 1
        mean = total / n
        var = 0.0
        for i in range(size):
            if hist[i] != 0:
                d = first + i - mean
                var += hist[i] * d * d
        out[0] = mean
        out[1] = max(0.0, var / n)
        if saturation_index >= 0:
            count = 0
            for i in range(max(0, saturation_index), size):
                count += hist[i]
            out[2] = count
        # numpy's linear percentiles: between the order statistics floor(p) and floor(p) + 1.
        ranks = np.empty(6, np.int64)
        fracs = np.empty(3)
        for j, q in enumerate((1.0, 50.0, 99.0)):
            position = q / 100.0 * (n - 1)
            below = int(np.floor(position))
            fracs[j] = position - below
            ranks[2 * j] = below
            ranks[2 * j + 1] = min(below + 1, n - 1)
        found = order_statistics(hist, ranks)
        for j in range(3):
            lo, hi = found[2 * j], found[2 * j + 1]
            out[3 + j] = lo + (hi - lo) * fracs[j] + first
        if occupied < 2:
            return out
        # Otsu on the bin indices (as otsu_index: the last background bin of the best
        # split). An empty bin repeats the previous split's score, which never wins the
        # strict comparison, so it is skipped.
        all_w = float(n)
        w0 = 0.0
        m0 = 0.0
        best = -1.0
        best_i = 0
        for i in range(size - 1):
            h = hist[i]
            if h == 0:
                continue
            w0 += h
            m0 += h * float(i)
            w1 = all_w - w0
            if w1 > 0:
                gap = m0 / w0 - (all_m - m0) / w1
                between = w0 * w1 * gap * gap
                if between > best:
                    best = between
                    best_i = i
        out[6] = best_i
        fg_n = 0.0
        fg_sum = 0.0
        bg_n = 0.0
        bg_sum = 0.0
        for i in range(size):
            h = hist[i]
            if h == 0:
                continue
            if i > best_i:
                fg_n += h
                fg_sum += h * (first + i)
            else:
                bg_n += h
                bg_sum += h * (first + i)
        out[7] = fg_n
        if fg_n > 0 and bg_n > 0:
            bg_mean = bg_sum / bg_n
            bg_var = 0.0
            for i in range(best_i + 1):
                if hist[i] != 0:
                    d = first + i - bg_mean
                    bg_var += hist[i] * d * d
            bg_std = (bg_var / bg_n) ** 0.5
            if bg_std > 0:
                out[8] = (fg_sum / fg_n) / bg_std
        return out

    # Loops over whole 1-D slices, so LLVM sees non-negative indices and vectorises them
    # (indexing rows inside one loop with ``x - 2`` kept the wrap-around checks: 15x slower).
    @numba.njit(nogil=True, cache=True)
    def squared_differences(p: Any, q: Any) -> Any:  # pragma: no cover - compiled
        total = np.int64(0)
        for x in range(p.size):
            d = np.int64(p[x]) - np.int64(q[x])
            total += d * d
        return total

    @numba.njit(nogil=True, cache=True)
    def value_range(values: Any) -> Any:  # pragma: no cover - compiled
        low = values[0]
        high = values[0]
        for x in range(values.size):
            low = min(low, values[x])
            high = max(high, values[x])
        return np.int64(low), np.int64(high)

    @numba.njit(nogil=True, cache=True)
    def count(values: Any, offset: int, hist: Any) -> None:  # pragma: no cover - compiled
        if offset == 0:
            for x in range(values.size):
                hist[values[x]] += 1
        else:
            for x in range(values.size):
                hist[np.int64(values[x]) - offset] += 1

    @numba.njit(nogil=True, cache=True)
    def scan(
        band: Any, prev: Any, hstep: int, offset: int, hist: Any
    ) -> tuple[int, int, float, int]:  # pragma: no cover - compiled
        rows, width = band.shape
        kept = prev.shape[0]
        values = band.reshape(band.size)
        low, high = value_range(values)
        count(values, offset, hist)
        total = np.int64(0)
        pairs = 0
        for y in range(rows):
            line = band[y]
            if width > hstep:
                total += squared_differences(line[hstep:], line[: width - hstep])
                pairs += width - hstep
            if y >= 2:
                total += squared_differences(line, band[y - 2])
                pairs += width
            elif kept + y >= 2:
                total += squared_differences(line, prev[kept + y - 2])
                pairs += width
        return low, high, float(total), pairs

    return scan, summary


_NUMBA: tuple[Scan, Summary] | None = None
_TRIED = False


def _numba() -> tuple[Scan, Summary] | None:
    global _NUMBA, _TRIED
    if not _TRIED:
        _TRIED = True
        _NUMBA = _compile_numba()
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
