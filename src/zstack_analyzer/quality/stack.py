"""Per-channel quality of one scene from its planes' measures, in any order.

Why a builder: the planes arrive from different passes (the thumbnail's Z
projection reads T=0, the quality pass reads the rest) and in any order; the
builder keeps one :class:`~.plane.PlaneQuality` per (t, c, z), says which
planes are still missing, and summarises once all are in.

Summaries per channel:

- **focus** per Z: the focus score (normalised variance) averaged over T;
  **best_focus_z** its arg max; **focus_edge** true when that is the first or
  last plane of a stack of at least 3 planes (the stack probably missed the
  sample);
- **intensity_t**: mean intensity per time point over all Z, and
  **bleaching_rate** ``k`` of the least-squares fit of
  ``log(mean_t) = log(A) - k * t`` (per frame; per second in
  ``bleaching_rate_per_s`` when the frame interval is known), for 3+ time
  points with positive means;
- **intensity_z**: mean intensity per Z over all T, and **z_falloff_rate**,
  the same fit over Z (positive: dimmer deeper);
- **saturated_fraction**: the largest per-plane saturated fraction;
  **snr**: the smallest per-plane signal-to-background.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zstack_analyzer.quality.plane import PlaneQuality

__all__ = [
    "ChannelQuality",
    "QualityBuilder",
    "SceneQuality",
    "exponential_rate",
    "finite",
]


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (float data can hold them; JSON cannot).

    Examples
    --------
    >>> finite({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def exponential_rate(values: list[float] | np.ndarray) -> float | None:
    """Decay rate ``k`` of ``values[i] ~ A * exp(-k * i)`` by a log-linear least-squares fit.

    ``None`` for fewer than 3 points or any value <= 0 (no logarithm).

    Examples
    --------
    >>> round(exponential_rate([100 * np.exp(-0.1 * i) for i in range(5)]), 6)
    0.1
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size < 3 or not np.all(data > 0) or not np.all(np.isfinite(data)):
        return None
    # The least-squares slope in closed form (what np.polyfit(x, y, 1) solves, at a
    # hundredth of its cost: it ran for every channel of every ingested file).
    x = np.arange(data.size, dtype=np.float64)
    x -= x.mean()
    y = np.log(data)
    slope = float(np.dot(x, y - y.mean()) / np.dot(x, x))
    return -slope


@dataclass(slots=True)
class ChannelQuality:
    """One channel's summary and its per-plane measures (``planes[t][z]``)."""

    channel: int
    name: str | None
    best_focus_z: int
    focus_edge: bool
    focus: list[float]
    brenner: list[float]
    intensity_z: list[float]
    intensity_t: list[float]
    z_falloff_rate: float | None
    bleaching_rate: float | None
    bleaching_rate_per_s: float | None
    saturated_fraction: float | None
    min_fraction: float
    snr: float | None
    planes: list[list[PlaneQuality]] = field(repr=False)

    def as_dict(self, *, planes: bool = True) -> dict[str, Any]:
        """JSON-safe values (``planes=False`` leaves the per-plane measures out)."""
        out = asdict(self)
        if not planes:
            out.pop("planes")
        return out


@dataclass(slots=True)
class SceneQuality:
    """The quality of one scene: a :class:`ChannelQuality` per channel."""

    scene: int
    size_t: int
    size_z: int
    channels: list[ChannelQuality]

    @property
    def max_saturated_fraction(self) -> float | None:
        """The worst channel's saturated fraction (what search filters on)."""
        values = [c.saturated_fraction for c in self.channels if c.saturated_fraction is not None]
        return max(values) if values else None

    @property
    def focus_edge(self) -> bool:
        """Whether any channel's best focus is at the first or last plane."""
        return any(c.focus_edge for c in self.channels)

    @property
    def min_snr(self) -> float | None:
        """The weakest channel's signal-to-background."""
        values = [c.snr for c in self.channels if c.snr is not None]
        return min(values) if values else None

    def public(self) -> dict[str, Any]:
        """The structure of the service's ``GET /api/images/{id}/quality`` for this scene.

        ``status`` is ``"ready"`` (the service also answers ``pending`` and
        ``failed``); NaN and infinities (float data) are ``None``, as in JSON.
        """
        summary = finite(self.as_dict(planes=False))
        return {
            "scene": self.scene,
            "status": "ready",
            "error": None,
            "max_saturated_fraction": summary["max_saturated_fraction"],
            "focus_edge": summary["focus_edge"],
            "min_snr": summary["min_snr"],
            "channels": summary["channels"],
        }

    def as_dict(self, *, planes: bool = True) -> dict[str, Any]:
        """JSON-safe values."""
        return {
            "scene": self.scene,
            "size_t": self.size_t,
            "size_z": self.size_z,
            "max_saturated_fraction": self.max_saturated_fraction,
            "focus_edge": self.focus_edge,
            "min_snr": self.min_snr,
            "channels": [c.as_dict(planes=planes) for c in self.channels],
        }


class QualityBuilder:
    """Collects plane measures of one scene and summarises them per channel.

    Parameters
    ----------
    size_t, size_c, size_z
        The scene's sizes.
    channel_names
        Names for the summaries (optional).
    time_interval_s
        Frame interval, for a bleaching rate per second.
    """

    def __init__(
        self,
        *,
        scene: int = 0,
        size_t: int,
        size_c: int,
        size_z: int,
        channel_names: list[str | None] | None = None,
        time_interval_s: float | None = None,
        significant_bits: int | None = None,
    ) -> None:
        self.scene = scene
        self.size_t, self.size_c, self.size_z = size_t, size_c, size_z
        self.channel_names = channel_names or [None] * size_c
        self.time_interval_s = time_interval_s
        #: Bits the detector uses (the saturation value of every plane), from the metadata.
        self.significant_bits = significant_bits
        self._planes: dict[tuple[int, int, int], PlaneQuality] = {}

    def add(self, t: int, c: int, z: int, quality: PlaneQuality) -> None:
        """Record plane (t, c, z)."""
        self._planes[(t, c, z)] = quality

    def has(self, t: int, c: int, z: int) -> bool:
        """Whether plane (t, c, z) is measured."""
        return (t, c, z) in self._planes

    def missing(self) -> list[tuple[int, int, int]]:
        """Planes not yet measured, in reading order (T, then C, then Z)."""
        return [
            (t, c, z)
            for t in range(self.size_t)
            for c in range(self.size_c)
            for z in range(self.size_z)
            if (t, c, z) not in self._planes
        ]

    def finish(self) -> SceneQuality:
        """Summaries per channel; every plane must have been added."""
        left = self.missing()
        if left:
            msg = f"{len(left)} planes are not measured yet, first (t, c, z) = {left[0]}"
            raise ValueError(msg)
        return SceneQuality(
            self.scene, self.size_t, self.size_z, [self._channel(c) for c in range(self.size_c)]
        )

    def _channel(self, c: int) -> ChannelQuality:
        planes = [[self._planes[(t, c, z)] for z in range(self.size_z)] for t in range(self.size_t)]
        focus = np.array([[p.focus_score for p in row] for row in planes]).mean(axis=0)
        brenner = np.array([[p.brenner for p in row] for row in planes]).mean(axis=0)
        means = np.array([[p.mean for p in row] for row in planes])
        # A NaN score (float data holding NaN) never wins the best plane.
        best = int(np.argmax(np.where(np.isfinite(focus), focus, -np.inf)))
        saturated = [p.saturated_fraction for row in planes for p in row]
        snrs = [p.snr for row in planes for p in row if p.snr is not None]
        bleaching = exponential_rate(means.mean(axis=1)) if self.size_t >= 3 else None
        per_s = None
        if bleaching is not None and self.time_interval_s:
            per_s = bleaching / self.time_interval_s
        return ChannelQuality(
            channel=c,
            name=self.channel_names[c] if c < len(self.channel_names) else None,
            best_focus_z=best,
            focus_edge=self.size_z >= 3 and best in (0, self.size_z - 1),
            focus=[float(v) for v in focus],
            brenner=[float(v) for v in brenner],
            intensity_z=[float(v) for v in means.mean(axis=0)],
            intensity_t=[float(v) for v in means.mean(axis=1)],
            z_falloff_rate=exponential_rate(means.mean(axis=0)),
            bleaching_rate=bleaching,
            bleaching_rate_per_s=per_s,
            saturated_fraction=(
                None
                if any(s is None for s in saturated)
                else max(s for s in saturated if s is not None)
            ),
            min_fraction=max(p.min_fraction for row in planes for p in row),
            snr=min(snrs) if snrs else None,
            planes=planes,
        )
