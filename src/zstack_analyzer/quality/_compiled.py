"""The compiled (numba) kernels of :mod:`._kernels`; imported only when numba is there.

Why a module of their own, at module level: numba caches compiled code on disk
(``cache=True``) only for module-level functions; defined inside a function
they were compiled again in every process (7 s on the first plane).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = ["scan", "scan_lanes", "summary"]


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


# One pass over the band, row by row: each row is counted, ranged and differenced while it
# is in L1 (and the row two above, for the vertical pairs, in L1/L2), so the plane crosses
# the memory bus once instead of three times (range, histogram, gradients: 3.3 ms a
# 2048 x 2048 uint16 plane, 2.9 ms fused). Keeping the range out of the histogram loop
# matters: min/max in that scalar loop cost more than a vectorised pass over the row.
@numba.njit(nogil=True, cache=True)
def scan(
    band: Any, prev: Any, hstep: int, offset: int, hist: Any
) -> tuple[int, int, float, int]:  # pragma: no cover - compiled
    rows, width = band.shape
    kept = prev.shape[0]
    if band.size == 0:
        return 0, -1, 0.0, 0
    low, high = value_range(band[0])
    total = np.int64(0)
    pairs = 0
    for y in range(rows):
        line = band[y]
        count(line, offset, hist)
        line_low, line_high = value_range(line)
        low = min(low, line_low)
        high = max(high, line_high)
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


# Four counters a value, interleaved (value v's are lanes[4v:4v+4]): consecutive pixels of
# a plane often hold the same value, and one counter for all of them made each increment
# wait for the previous one's store. Pixel x goes to counter x % 4, so repeated values
# land in different counters; 32-bit counters keep the four of a value in 16 bytes.
@numba.njit(nogil=True, cache=True)
def count_lanes(values: Any, offset: int, lanes: Any) -> None:  # pragma: no cover - compiled
    n = values.size
    m = n - n % 4
    if offset == 0:
        for x in range(0, m, 4):
            lanes[np.int64(values[x]) * 4] += 1
            lanes[np.int64(values[x + 1]) * 4 + 1] += 1
            lanes[np.int64(values[x + 2]) * 4 + 2] += 1
            lanes[np.int64(values[x + 3]) * 4 + 3] += 1
        for x in range(m, n):
            lanes[np.int64(values[x]) * 4] += 1
        return
    for x in range(0, m, 4):
        lanes[(np.int64(values[x]) - offset) * 4] += 1
        lanes[(np.int64(values[x + 1]) - offset) * 4 + 1] += 1
        lanes[(np.int64(values[x + 2]) - offset) * 4 + 2] += 1
        lanes[(np.int64(values[x + 3]) - offset) * 4 + 3] += 1
    for x in range(m, n):
        lanes[(np.int64(values[x]) - offset) * 4] += 1


#: Pixels one :func:`scan_lanes` call may count into its 32-bit lanes (a quarter each).
LANE_PIXELS = 2**33


@numba.njit(nogil=True, cache=True)
def scan_lanes(
    band: Any, prev: Any, hstep: int, offset: int, hist: Any, lanes: Any
) -> tuple[int, int, float, int]:  # pragma: no cover - compiled
    """:func:`scan` counting into ``lanes`` (4 x the bins, zero), then added to ``hist``.

    ``lanes`` is left zero again. Bands of :data:`LANE_PIXELS` and more (a 32-bit
    counter could wrap) are counted by :func:`scan` itself.
    """
    rows, width = band.shape
    kept = prev.shape[0]
    if band.size == 0:
        return 0, -1, 0.0, 0
    if band.size >= LANE_PIXELS:
        return scan(band, prev, hstep, offset, hist)
    low, high = value_range(band[0])
    total = np.int64(0)
    pairs = 0
    for y in range(rows):
        line = band[y]
        count_lanes(line, offset, lanes)
        line_low, line_high = value_range(line)
        low = min(low, line_low)
        high = max(high, line_high)
        if width > hstep:
            total += squared_differences(line[hstep:], line[: width - hstep])
            pairs += width - hstep
        if y >= 2:
            total += squared_differences(line, band[y - 2])
            pairs += width
        elif kept + y >= 2:
            total += squared_differences(line, prev[kept + y - 2])
            pairs += width
    # Only the band's value range was counted: add those bins up and zero them.
    for v in range(np.int64(low) - offset, np.int64(high) - offset + 1):
        j = v * 4
        hist[v] += (
            np.int64(lanes[j])
            + np.int64(lanes[j + 1])
            + np.int64(lanes[j + 2])
            + np.int64(lanes[j + 3])
        )
        lanes[j] = 0
        lanes[j + 1] = 0
        lanes[j + 2] = 0
        lanes[j + 3] = 0
    return low, high, float(total), pairs
