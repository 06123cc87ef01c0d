"""Quality measures of one plane, fed whole or in row bands, in bounded memory.

Why row bands: a plane too large to hold is read band by band through the
reader's region reads; the accumulator keeps only running sums, a value
histogram (8- and 16-bit data) and the last two rows of the previous band, so
the gradient score across band borders is exact and the memory is one band.

Definitions (``I`` is the plane scaled to 0..1 by the dtype's maximum, as
CellProfiler does for integer images; float data is used as stored; ``N`` the
number of values):

- **focus_score** (CellProfiler ``FocusScore``, the normalised variance of
  Groen et al.): ``sum((I - mean(I))**2) / (N * mean(I))``, 0 when the mean is 0.
- **brenner** (Brenner gradient, both directions):
  ``(sum((I[y, x+2] - I[y, x])**2) + sum((I[y+2, x] - I[y, x])**2)) / P``
  with ``P`` the number of pixel pairs; a sharp plane has large differences.
- **saturated_fraction**: share of values at or above the saturation value:
  ``2**significant_bits - 1`` when the file says fewer bits are used than the
  dtype holds (12-bit data in uint16), else the dtype's maximum; ``None`` for
  float data.
- **max_fraction** / **min_fraction** (CellProfiler ``PercentMaximal`` /
  ``PercentMinimal`` divided by 100): share of values equal to the plane's own
  maximum / minimum.
- **p1, p50, p99**: numpy's default (linear) percentiles.
- **otsu**: Otsu's threshold on the value histogram (every integer value a
  bin for 8/16-bit data, 256 bins between min and max otherwise, as
  scikit-image); foreground is ``value > otsu``.
- **snr**: mean of the foreground over the standard deviation of the
  background (``None`` when either side is empty or the background is flat).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from zstack_analyzer.quality._kernels import FLOAT_BINS, inner, kernels, otsu_index

__all__ = ["PlaneAccumulator", "PlaneQuality", "measure_plane", "saturation_value"]


@dataclass(frozen=True, slots=True)
class PlaneQuality:
    """The measures of one plane (see the module docstring for each formula)."""

    focus_score: float
    brenner: float
    saturated_fraction: float | None
    max_fraction: float
    min_fraction: float
    min: float
    max: float
    mean: float
    std: float
    p1: float | None
    p50: float | None
    p99: float | None
    otsu: float | None
    foreground_fraction: float | None
    snr: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values."""
        return asdict(self)


def saturation_value(dtype: np.dtype[Any], significant_bits: int | None) -> float | None:
    """The value a saturated detector writes: the significant-bits or dtype maximum.

    Examples
    --------
    >>> saturation_value(np.dtype("uint16"), 12)
    4095.0
    >>> saturation_value(np.dtype("uint8"), None)
    255.0
    """
    if dtype.kind not in "ui":
        return None
    top = int(np.iinfo(dtype).max)
    if significant_bits is not None and 0 < significant_bits < dtype.itemsize * 8:
        top = min(top, 2**significant_bits - 1)
    return float(top)


def _scale(dtype: np.dtype[Any]) -> float:
    """Divisor bringing values to 0..1 (CellProfiler's convention); 1 for float data."""
    if dtype.kind in "ui":
        return float(np.iinfo(dtype).max)
    return 1.0


#: Zeroed histograms ready for the next plane (a 16-bit one is 512 KiB: allocating and
#: zeroing it for every plane cost as much as a small plane's measures).
_SPARE: list[np.ndarray] = []
_SPARE_MAX = 8


def _take_histogram(itemsize: int) -> np.ndarray:
    size = 2 ** (8 * itemsize)
    for _ in range(len(_SPARE)):
        try:
            hist = _SPARE.pop()
        except IndexError:  # another thread took the last one
            break
        if hist.size == size:
            return hist
    return np.zeros(size, np.int64)


def _give_histogram(hist: np.ndarray, low: int, high: int) -> None:
    """Zero the used bins (only those) and keep the histogram for the next plane."""
    if len(_SPARE) < _SPARE_MAX:
        hist[low : high + 1] = 0
        _SPARE.append(hist)


@functools.lru_cache(maxsize=64)
def _dtype_facts(
    dtype: np.dtype[Any], significant_bits: int | None
) -> tuple[float | None, float, bool, int]:
    """Saturation value, scale, histogram mode and value offset of a dtype.

    Cached: ``np.iinfo`` for every plane cost a tenth of a small plane's measures.
    """
    offset = int(np.iinfo(dtype).min) if dtype.kind == "i" else 0
    return saturation_value(dtype, significant_bits), _scale(dtype), _uses_histogram(dtype), offset


def _uses_histogram(dtype: np.dtype[Any]) -> bool:
    return dtype.kind in "uib" and dtype.itemsize <= 2


class PlaneAccumulator:
    """Running sums of one plane fed as consecutive row bands (Y, X(, S)).

    Parameters
    ----------
    dtype
        The plane's dtype.
    significant_bits
        Bits the detector uses, if the file says (sets the saturation value).

    Examples
    --------
    >>> acc = PlaneAccumulator(np.dtype("uint8"))
    >>> acc.add_rows(np.array([[0, 255], [255, 255]], np.uint8))
    >>> acc.finish().saturated_fraction
    0.75
    """

    def __init__(self, dtype: np.dtype[Any], significant_bits: int | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.saturation, self.scale, self.histogram_mode, self.offset = _dtype_facts(
            self.dtype, significant_bits
        )
        self.histogram = _take_histogram(self.dtype.itemsize) if self.histogram_mode else None
        self.scan, self.summary = kernels()
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.low = np.inf
        self.high = -np.inf
        self.grad_sum = 0.0
        self.grad_pairs = 0
        self.carry: np.ndarray | None = None  # the last two rows seen
        self.whole: np.ndarray | None = None  # the plane, when fed whole (float percentiles)
        self.bands = 0

    def add_rows(self, band: np.ndarray) -> None:
        """Fold the next rows of the plane in (rows continue the previous band)."""
        if band.shape[0] == 0:
            return
        self.bands += 1
        if self.histogram is not None:
            self._add_integer(band)
            return
        # Float data keep the plane when it comes whole, for exact percentiles and Otsu.
        self.whole = band if self.bands == 1 else None
        values = band.reshape(-1)
        self.count += values.size
        data = values.astype(np.float64)
        self.total += float(data.sum())
        self.total_sq += float(inner(data, data))
        self.low = min(self.low, float(data.min()))
        self.high = max(self.high, float(data.max()))
        # Horizontal pairs lie within the band; vertical pairs may reach back two rows.
        if band.shape[1] > 2:
            diff = np.subtract(band[:, 2:], band[:, :-2], dtype=np.float64)
            self.grad_sum += float(inner(diff, diff))
            self.grad_pairs += diff.size
        rows = band if self.carry is None else np.concatenate((self.carry, band))
        if rows.shape[0] > 2:
            diff = np.subtract(rows[2:], rows[:-2], dtype=np.float64)
            self.grad_sum += float(inner(diff, diff))
            self.grad_pairs += diff.size
        self.carry = np.array(rows[-2:], copy=True)

    def _add_integer(self, band: np.ndarray) -> None:
        """8/16-bit rows: one scan (:mod:`._kernels`) feeds the histogram and the gradients."""
        assert self.histogram is not None  # noqa: S101  (the caller checked)
        samples = band.shape[2] if band.ndim == 3 else 1
        rows = np.ascontiguousarray(band).reshape(band.shape[0], -1)
        if rows.dtype.kind == "b":
            rows = rows.view(np.uint8)
        prev = self.carry if self.carry is not None else rows[:0]
        low, high, grad, pairs = self.scan(rows, prev, 2 * samples, self.offset, self.histogram)
        self.count += rows.size
        self.low = min(self.low, float(low))
        self.high = max(self.high, float(high))
        self.grad_sum += grad
        self.grad_pairs += pairs
        tail = rows[-2:] if rows.shape[0] >= 2 else np.concatenate((prev, rows))[-2:]
        self.carry = np.array(tail, copy=True)

    def finish(self) -> PlaneQuality:
        """The plane's measures; call once every row has been added."""
        if self.count == 0:
            msg = "no pixels were added"
            raise ValueError(msg)
        if self.histogram is not None:
            quality = self._finish_histogram(self.histogram)
            _give_histogram(
                self.histogram, int(self.low) - self.offset, int(self.high) - self.offset
            )
            self.histogram = None
            return quality
        return self._finish_float()

    def _finish_histogram(self, full: np.ndarray) -> PlaneQuality:
        # Work on the occupied value range only: a 16-bit histogram has 65,536 bins, a
        # plane's values usually span a few thousand.
        low_i, high_i = int(self.low) - self.offset, int(self.high) - self.offset
        hist = full[low_i : high_i + 1]
        first = float(low_i + self.offset)
        sat_i = -1
        if self.saturation is not None:
            sat_i = max(0, int(self.saturation) - self.offset - low_i)
        mean, var, sat, p1, p50, p99, otsu_i, fg_n, snr = (
            float(v) for v in self.summary(hist, first, sat_i)
        )
        n = self.count
        otsu = fg = None
        if not math.isnan(otsu_i):
            otsu, fg = first + otsu_i, fg_n / n
        return PlaneQuality(
            focus_score=self._focus(mean, var),
            brenner=self._brenner(),
            saturated_fraction=None if math.isnan(sat) else sat / n,
            max_fraction=float(hist[-1]) / n,
            min_fraction=float(hist[0]) / n,
            min=self.low,
            max=self.high,
            mean=mean,
            std=var**0.5,
            p1=p1,
            p50=p50,
            p99=p99,
            otsu=otsu,
            foreground_fraction=fg,
            snr=None if math.isnan(snr) else snr,
        )

    def _finish_float(self) -> PlaneQuality:
        n = self.count
        mean = self.total / n
        var = max(0.0, self.total_sq / n - mean * mean)
        p1 = p50 = p99 = otsu = fg = snr = None
        max_fraction = min_fraction = 0.0
        if self.whole is not None:  # one band: the plane is at hand, measure it exactly
            data = self.whole.reshape(-1).astype(np.float64)
            p1, p50, p99 = (float(v) for v in np.percentile(data, [1.0, 50.0, 99.0]))
            max_fraction = float(np.count_nonzero(data == self.high)) / n
            min_fraction = float(np.count_nonzero(data == self.low)) / n
            var = float(data.var())
            if self.high > self.low:
                hist, edges = np.histogram(data, bins=FLOAT_BINS, range=(self.low, self.high))
                centres = (edges[:-1] + edges[1:]) / 2
                index = otsu_index(hist)
                if index is not None:
                    otsu = float(centres[index])
                    fore, back = data[data > otsu], data[data <= otsu]
                    fg = fore.size / n
                    if fore.size and back.size and back.std() > 0:
                        snr = float(fore.mean() / back.std())
        saturated = None
        if self.saturation is not None and self.whole is not None:  # 32/64-bit integers
            saturated = float(np.count_nonzero(self.whole >= self.saturation)) / n
        return PlaneQuality(
            focus_score=self._focus(mean, var),
            brenner=self._brenner(),
            saturated_fraction=saturated,
            max_fraction=max_fraction,
            min_fraction=min_fraction,
            min=self.low,
            max=self.high,
            mean=mean,
            std=var**0.5,
            p1=p1,
            p50=p50,
            p99=p99,
            otsu=otsu,
            foreground_fraction=fg,
            snr=snr,
        )

    def _focus(self, mean: float, var: float) -> float:
        scaled_mean = mean / self.scale
        return (var / self.scale**2) / scaled_mean if scaled_mean > 0 else 0.0

    def _brenner(self) -> float:
        if self.grad_pairs == 0:
            return 0.0
        return self.grad_sum / self.grad_pairs / self.scale**2


def measure_plane(plane: np.ndarray, *, significant_bits: int | None = None) -> PlaneQuality:
    """Measure one whole Y, X (, S) plane.

    Examples
    --------
    >>> q = measure_plane(np.array([[0, 4095], [100, 100]], np.uint16), significant_bits=12)
    >>> q.saturated_fraction, q.min_fraction
    (0.25, 0.25)
    """
    acc = PlaneAccumulator(plane.dtype, significant_bits)
    acc.add_rows(plane)
    return acc.finish()
