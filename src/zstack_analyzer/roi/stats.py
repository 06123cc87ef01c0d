"""Per-channel statistics of an ROI at full resolution, reading only its bounding box.

How: the shapes of one plane (z, t) are measured together (their footprints
united, so a pixel counts once); the union's bounding box is read in bands
of rows through the reader's region path (``reader.read_region``, aligned to
the file's stored tiles or strips), each band's footprint is computed for
those rows only, and the selected values are folded into a small
accumulator. Memory is one band plus its mask, whatever the ROI or plane
size; every decode goes through the decode budget like any other read.

Why the figures equal numpy's: within a chunk of up to :data:`CHUNK` values of
one band, ``mean`` and ``std`` are computed as numpy computes them (the
pairwise float64 sum divided by the count, then the two-pass
``sum((v - mean)^2)``), so an ROI of one chunk gets numpy's figures to the
bit; chunks and bands are combined with Chan's parallel formula (within
float rounding). ``sum`` of
integer data is exact (Python integers); ``min`` and ``max`` are the stored
values. ``std`` is the population standard deviation (``ddof=0``, numpy's
default). NaN values of float data are left out and counted (``nan_count``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.errors import LimitExceededError
from zstack_analyzer.roi.shapes import PlaneSizes, Shape

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from zstack_analyzer.readers._base import ImageReader

__all__ = ["CHUNK", "MAX_SHAPE_TABLE", "REGION_BYTES", "Accumulator", "measure_roi"]

#: Target size of one band read (bytes of pixels).
REGION_BYTES = 4 * 1024 * 1024
#: Values folded in at once: float64 temporaries stay at 8 MiB whatever the band or plane.
CHUNK = 1 << 20
#: Most shapes measured one by one for the per-shape table (each is a read of its own box).
MAX_SHAPE_TABLE = 100


@dataclass(slots=True)
class Accumulator:
    """Count, exact sum, min, max and (mean, M2) of the values seen so far."""

    integer: bool
    n: int = 0
    total: float | int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float | int | None = None
    high: float | int | None = None
    nan_count: int = 0

    def add(self, values: np.ndarray) -> None:
        """Fold one band's selected values (1-D) in, :data:`CHUNK` values at a time."""
        if not self.integer:
            nan = np.isnan(values)
            if nan.any():
                self.nan_count += int(nan.sum())
                values = values[~nan]
        for start in range(0, values.size, CHUNK):
            self._add_chunk(values[start : start + CHUNK])

    def _add_chunk(self, values: np.ndarray) -> None:
        """The mean and two-pass deviation as numpy computes them, with one float64 temporary."""
        if values.size == 0:
            return
        work = values.astype(np.float64)
        # Float data may hold inf: inf - inf is NaN, which result() reports as null; NumPy's
        # warning about it is no fault of the file (and an error wherever warnings are errors).
        with np.errstate(invalid="ignore", over="ignore"):
            float_total = float(work.sum())
            mean = float_total / values.size  # what np.mean computes: the same sum, divided
            work -= mean
            np.square(work, out=work)
            m2 = float(work.sum())
        del work
        if self.integer:
            # int64 cannot overflow for 32-bit data in one chunk; 64-bit data: exact ints.
            if values.dtype.itemsize <= 4:
                total: float | int = int(values.sum(dtype=np.int64))
            else:
                total = int(values.astype(object).sum())
            low: float | int = int(values.min())
            high: float | int = int(values.max())
        else:
            total, low, high = float_total, float(values.min()), float(values.max())
        self._merge(values.size, total, mean, m2, low, high)

    def merge(self, other: Accumulator) -> None:
        """Fold another accumulator in (disjoint pixel sets: other planes, other bands)."""
        self.nan_count += other.nan_count
        if other.n:
            assert other.low is not None and other.high is not None  # noqa: S101  (n > 0)
            self._merge(other.n, other.total, other.mean, other.m2, other.low, other.high)

    def _merge(
        self,
        n: int,
        total: float | int,
        mean: float,
        m2: float,
        low: float | int,
        high: float | int,
    ) -> None:
        if self.n == 0:
            self.n, self.total, self.mean, self.m2, self.low, self.high = (
                n,
                total,
                mean,
                m2,
                low,
                high,
            )
            return
        count = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / count
        self.m2 += m2 + delta * delta * self.n * n / count
        self.n = count
        self.total += total
        self.low = min(self.low, low)  # type: ignore[type-var]
        self.high = max(self.high, high)  # type: ignore[type-var]

    def result(self) -> dict[str, Any]:
        """``pixel_count``, ``min``, ``max``, ``mean``, ``sum``, ``std`` (None when empty), ``nan_count``."""
        empty = self.n == 0
        mean = (self.total / self.n if self.integer else self.mean) if not empty else None
        std = math.sqrt(max(self.m2, 0.0) / self.n) if not empty else None
        return {
            "pixel_count": self.n,
            "min": _finite(self.low),
            "max": _finite(self.high),
            "mean": _finite(mean),
            "sum": _finite(self.total) if not empty else 0,
            "std": _finite(std),
            "nan_count": self.nan_count,
        }


def _finite(value: float | int | None) -> float | int | None:
    """``None`` for an infinite or NaN float (float data holding inf): JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Per (channel, sample): one accumulator.
Accumulators = dict[tuple[int, int], Accumulator]


def _union_box(shapes: Sequence[Shape], sizes: PlaneSizes) -> tuple[int, int, int, int] | None:
    boxes = [b for b in (s.pixel_box(sizes) for s in shapes) if b is not None]
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        max(b[1] for b in boxes),
        min(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _bands(
    reader: ImageReader, scene: int, box: tuple[int, int, int, int], row_bytes: int
) -> Iterator[tuple[int, int]]:
    """Row bands of the box: aligned to the stored blocks, about :data:`REGION_BYTES` each."""
    r0, r1, _, _ = box
    grid = reader.region_grid(scene)
    if grid is None:
        # The reader decodes whole planes: read the box at once, if a plane may be decoded whole.
        info = reader.scene_info(scene)
        plane = info.size_y * info.size_x * max(1, info.samples_per_pixel)
        if plane * np.dtype(info.dtype).itemsize > reader.limits.max_render_plane_bytes:
            msg = (
                f"{reader.path.name}: a plane of {info.size_x} x {info.size_y} is over the "
                "render limit and this format cannot be read by region"
            )
            raise LimitExceededError(msg, path=reader.path)
        yield r0, r1
        return
    block = max(1, grid[0])
    per_band = max(block, (REGION_BYTES // max(1, row_bytes * block)) * block)
    start = r0
    while start < r1:
        stop = min(r1, ((start + per_band) // block) * block)
        if stop <= start:
            stop = min(r1, start + per_band)
        yield start, stop
        start = stop


def _measure_plane(
    reader: ImageReader,
    scene: int,
    t: int,
    z: int,
    shapes: Sequence[Shape],
    sizes: PlaneSizes,
    channels: Sequence[int],
    samples: int,
) -> Accumulators:
    """The accumulators of one plane for the union of ``shapes`` (each restricted to its channel)."""
    info = reader.scene_info(scene)
    integer = np.issubdtype(np.dtype(info.dtype), np.integer)
    accs: Accumulators = {(c, s): Accumulator(integer) for c in channels for s in range(samples)}
    box = _union_box(shapes, sizes)
    if box is None:
        return accs
    _, _, c0, c1 = box
    row_bytes = (c1 - c0) * samples * np.dtype(info.dtype).itemsize
    common = [s for s in shapes if s.c is None]
    for rows in _bands(reader, scene, box, row_bytes):
        base = np.zeros((rows[1] - rows[0], c1 - c0), dtype=bool)
        for shape in common:
            base |= shape.mask(rows, (c0, c1))
        for c in channels:
            mask = base.copy()
            for shape in shapes:
                if shape.c == c:
                    mask |= shape.mask(rows, (c0, c1))
            if not mask.any():
                continue
            region = reader.read_region(scene, t, c, z, rows, (c0, c1))
            selected = region[mask]
            if samples == 1:
                accs[(c, 0)].add(selected.reshape(-1))
            else:
                for s in range(samples):
                    accs[(c, s)].add(selected[:, s])
    return accs


def _merge_into(target: Accumulators, other: Accumulators) -> None:
    for key, acc in other.items():
        target[key].merge(acc)


def _plane_groups(shapes: Sequence[Shape], z: int | None) -> dict[tuple[int, int], list[Shape]]:
    groups: dict[tuple[int, int], list[Shape]] = defaultdict(list)
    for shape in shapes:
        groups[(shape.z if z is None else z, shape.t)].append(shape)
    return groups


def measure_roi(
    reader: ImageReader,
    shapes: Sequence[Shape],
    *,
    scene: int = 0,
    all_z: bool = False,
    per_shape: bool = True,
) -> dict[str, Any]:
    """Statistics of the ROI made of ``shapes``, per channel, at full resolution.

    Returns ``{"calibrated", "pixel_size_um", "channels": [...], "shapes": [...]}``
    (``shapes``: each shape alone, for ROIs of at most :data:`MAX_SHAPE_TABLE` shapes)
    and, with ``all_z``, ``"planes": [{"z", "channels"}]``: the ROI's footprint
    (every shape, whatever its own z) measured on each plane of the stack.
    ``channels`` measures every shape on its own plane, the shapes of one plane
    united. Each channel entry has ``channel``, ``name``, ``pixel_count``,
    ``min``, ``max``, ``mean``, ``sum``, ``std``, ``nan_count``; the area
    (``area``, ``area_unit`` "um2" or "px2" when the file has no calibration,
    ``area_um2``, ``area_px2``) when every shape is an area; the length
    (``length``, ``length_unit``, ``length_um``, ``length_px``) of its lines and
    polylines; ``sample`` for RGB data (one entry per sample).

    Raises
    ------
    LimitExceededError
        When the format reads whole planes only and a plane is over the render limit.
    """
    info = reader.scene_info(scene)
    metadata = reader.metadata(scene)
    sizes = PlaneSizes(info.size_x, info.size_y, info.size_z, info.size_t, info.size_c)
    samples = max(1, info.samples_per_pixel)
    channels = list(range(info.size_c))
    names = {ch.index: ch.name for ch in metadata.channels}
    px = metadata.physical_size.x_um if metadata.physical_size else None
    py = metadata.physical_size.y_um if metadata.physical_size else None
    calibrated = px is not None and py is not None and px > 0 and py > 0

    def entries(accs: Accumulators, measured: Sequence[Shape]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (c, s), acc in sorted(accs.items()):
            entry: dict[str, Any] = {"channel": c, "name": names.get(c)}
            if samples > 1:
                entry["sample"] = s
            entry.update(acc.result())
            entry.update(_extent_fields(measured, acc.n, calibrated, px, py))
            out.append(entry)
        return out

    def measure(groups: dict[tuple[int, int], list[Shape]]) -> Accumulators:
        total: Accumulators | None = None
        for (z, t), members in sorted(groups.items()):
            accs = _measure_plane(reader, scene, t, z, members, sizes, channels, samples)
            if total is None:
                total = accs
            else:
                _merge_into(total, accs)
        assert total is not None  # noqa: S101  (at least one shape)
        return total

    result: dict[str, Any] = {
        "calibrated": calibrated,
        "pixel_size_um": {"x": px, "y": py} if calibrated else None,
        "channels": entries(measure(_plane_groups(shapes, None)), shapes),
    }
    if per_shape and len(shapes) <= MAX_SHAPE_TABLE:
        result["shapes"] = [
            {
                "index": i,
                "type": shape.type,
                "z": shape.z,
                "t": shape.t,
                "c": shape.c,
                "channels": entries(measure(_plane_groups([shape], None)), [shape])
                if len(shapes) > 1
                else result["channels"],
            }
            for i, shape in enumerate(shapes)
        ]
    if all_z:
        result["planes"] = [
            {"z": z, "channels": entries(measure(_plane_groups(shapes, z)), shapes)}
            for z in range(info.size_z)
        ]
    return result


def _extent_fields(
    shapes: Sequence[Shape], pixel_count: int, calibrated: bool, px: float | None, py: float | None
) -> dict[str, Any]:
    """Area (every shape an area) and length (lines and polylines) of what was measured."""
    fields: dict[str, Any] = {}
    if all(s.is_area for s in shapes):
        area_um2 = pixel_count * px * py if calibrated and px and py else None
        fields.update(
            area=area_um2 if area_um2 is not None else float(pixel_count),
            area_unit="um2" if area_um2 is not None else "px2",
            area_um2=area_um2,
            area_px2=float(pixel_count),
        )
    lines = [s for s in shapes if s.type in ("line", "polyline")]
    if lines:
        length_px = sum(s.length_px() or 0.0 for s in lines)
        length_um = (
            sum(s.length_px(px, py) or 0.0 for s in lines) if calibrated and px and py else None
        )
        fields.update(
            length=length_um if length_um is not None else length_px,
            length_unit="um" if length_um is not None else "px",
            length_um=length_um,
            length_px=length_px,
        )
    return fields
