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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["PlaneAccumulator", "PlaneQuality", "measure_plane", "saturation_value"]

#: Bins of the float-data Otsu histogram (scikit-image's default).
FLOAT_BINS = 256


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
        self.saturation = saturation_value(self.dtype, significant_bits)
        self.scale = _scale(self.dtype)
        self.histogram_mode = _uses_histogram(self.dtype)
        self.offset = int(np.iinfo(self.dtype).min) if self.dtype.kind == "i" else 0
        size = 2 ** (8 * self.dtype.itemsize) if self.histogram_mode else 0
        self.histogram = np.zeros(size, np.int64) if self.histogram_mode else None
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
        # Float data keep the plane when it comes whole, for exact percentiles and Otsu.
        self.whole = band if self.bands == 1 and not self.histogram_mode else None
        values = band.reshape(-1)
        self.count += values.size
        if self.histogram is not None:
            shifted = values.astype(np.int64) - self.offset if self.offset else values
            counts = np.bincount(shifted)  # only up to the largest value present
            self.histogram[: counts.size] += counts
        else:
            data = values.astype(np.float64)
            self.total += float(data.sum())
            self.total_sq += float(np.dot(data, data))
            self.low = min(self.low, float(data.min()))
            self.high = max(self.high, float(data.max()))
        work = np.int64 if self.dtype.kind in "uib" else np.float64
        # Horizontal pairs lie within the band; vertical pairs may reach back two rows.
        if band.shape[1] > 2:
            diff = np.subtract(band[:, 2:], band[:, :-2], dtype=work)
            self.grad_sum += float(np.vdot(diff, diff))
            self.grad_pairs += diff.size
        rows = band if self.carry is None else np.concatenate((self.carry, band))
        if rows.shape[0] > 2:
            diff = np.subtract(rows[2:], rows[:-2], dtype=work)
            self.grad_sum += float(np.vdot(diff, diff))
            self.grad_pairs += diff.size
        self.carry = np.array(rows[-2:], copy=True)

    def finish(self) -> PlaneQuality:
        """The plane's measures; call once every row has been added."""
        if self.count == 0:
            msg = "no pixels were added"
            raise ValueError(msg)
        if self.histogram is not None:
            return self._finish_histogram(self.histogram)
        return self._finish_float()

    def _finish_histogram(self, full: np.ndarray) -> PlaneQuality:
        # Work on the occupied value range only: a 16-bit histogram has 65,536 bins, a
        # plane's values usually span a few thousand (this is most of the per-plane cost).
        present = np.flatnonzero(full)
        low_i, high_i = int(present[0]), int(present[-1])
        hist = full[low_i : high_i + 1]
        values = np.arange(low_i, high_i + 1, dtype=np.float64) + self.offset
        n = self.count
        weights = hist.astype(np.float64)
        total = float(np.dot(weights, values))
        mean = total / n
        centred = values - mean
        var = max(0.0, float(np.dot(weights, centred * centred)) / n)
        saturated = None
        if self.saturation is not None:
            start = max(0, int(self.saturation) - self.offset - low_i)
            saturated = float(hist[start:].sum()) / n
        cumulative = np.cumsum(hist)
        pct = [_hist_percentile(cumulative, q, n) + low_i + self.offset for q in (1.0, 50.0, 99.0)]
        otsu_i = _otsu_index(hist)
        fg, snr, otsu = self._split(hist, values, otsu_i)
        return PlaneQuality(
            focus_score=self._focus(mean, var),
            brenner=self._brenner(),
            saturated_fraction=saturated,
            max_fraction=float(hist[-1]) / n,
            min_fraction=float(hist[0]) / n,
            min=float(values[0]),
            max=float(values[-1]),
            mean=mean,
            std=var**0.5,
            p1=pct[0],
            p50=pct[1],
            p99=pct[2],
            otsu=otsu,
            foreground_fraction=fg,
            snr=snr,
        )

    def _split(
        self, hist: np.ndarray, values: np.ndarray, threshold_i: int | None
    ) -> tuple[float | None, float | None, float | None]:
        """Foreground fraction and SNR split at histogram index ``threshold_i``."""
        if threshold_i is None:
            return None, None, None
        n = self.count
        fg_w = hist[threshold_i + 1 :].astype(np.float64)
        bg_w = hist[: threshold_i + 1].astype(np.float64)
        fg_n, bg_n = float(fg_w.sum()), float(bg_w.sum())
        otsu = float(values[threshold_i])
        if fg_n == 0 or bg_n == 0:
            return fg_n / n, None, otsu
        fg_mean = float(np.dot(fg_w, values[threshold_i + 1 :])) / fg_n
        bg_vals = values[: threshold_i + 1]
        bg_mean = float(np.dot(bg_w, bg_vals)) / bg_n
        bg_std = (float(np.dot(bg_w, (bg_vals - bg_mean) ** 2)) / bg_n) ** 0.5
        return fg_n / n, (fg_mean / bg_std if bg_std > 0 else None), otsu

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
                index = _otsu_index(hist)
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


def _hist_percentile(cumulative: np.ndarray, q: float, n: int) -> float:
    """Numpy's linear percentile from a cumulative histogram of integer values."""
    position = q / 100.0 * (n - 1)
    below = int(np.floor(position))
    frac = position - below
    lo = int(np.searchsorted(cumulative, below, side="right"))
    hi = int(np.searchsorted(cumulative, min(below + 1, n - 1), side="right"))
    return float(lo + (hi - lo) * frac)


def _otsu_index(hist: np.ndarray) -> int | None:
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
    m1 = float(np.dot(weights, bins)) - m0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - m1 / w1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return int(np.argmax(between))


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
