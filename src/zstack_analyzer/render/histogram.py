"""Per-channel histograms and percentiles for the viewer's contrast controls.

Why a sample: the viewer needs a histogram and an "auto" window instantly,
also for stacks larger than memory. One plane is used whole; a whole stack is
represented by up to :data:`MAX_SAMPLE_PLANES` evenly spaced planes, each
strided down to at most :data:`MAX_SAMPLE_PIXELS` pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.errors import SceneNotFoundError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.render.colour import channel_colors

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.metadata import ImageMetadata
    from zstack_analyzer.readers._base import ImageReader
    from zstack_analyzer.storage.remote import RemoteObject

__all__ = ["channel_histograms", "histogram_of"]

MAX_SAMPLE_PLANES = 16
MAX_SAMPLE_PIXELS = 1 << 20
BINS = 256


def _strided(plane: np.ndarray, limit: int) -> np.ndarray:
    pixels = plane.shape[0] * plane.shape[1]
    step = max(1, int(np.ceil(np.sqrt(pixels / limit))))
    # A copy, not a view: a view would keep every full plane alive until the end.
    return np.array(plane[::step, ::step], copy=True)


def histogram_of(values: np.ndarray, *, low: float = 1.0, high: float = 99.0) -> dict[str, Any]:
    """Min, max, ``low``/``high`` percentiles and a 256-bin histogram of ``values``.

    Bins span the data's min..max (so 12-bit data in a 16-bit container still
    fills them); for 8-bit data they are the 256 values themselves.

    Examples
    --------
    >>> import numpy as np
    >>> h = histogram_of(np.arange(256, dtype=np.uint8))
    >>> h["min"], h["max"], sum(h["bins"])
    (0.0, 255.0, 256)
    """
    flat = np.asarray(values).reshape(-1)
    if np.issubdtype(flat.dtype, np.floating):
        flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return {
            "min": 0.0,
            "max": 0.0,
            "p_low": 0.0,
            "p_high": 0.0,
            "bins": [0] * BINS,
            "bin_lo": 0.0,
            "bin_hi": 0.0,
        }
    vmin, vmax = float(flat.min()), float(flat.max())
    p_low, p_high = (float(v) for v in np.percentile(flat, [low, high]))
    if flat.dtype == np.uint8:
        bin_lo, bin_hi = 0.0, 255.0
        counts = np.bincount(flat, minlength=BINS)[:BINS]
    else:
        bin_lo, bin_hi = vmin, vmax if vmax > vmin else vmin + 1.0
        counts, _ = np.histogram(flat, bins=BINS, range=(bin_lo, bin_hi))
    return {
        "min": vmin,
        "max": vmax,
        "p_low": p_low,
        "p_high": p_high,
        "bins": [int(v) for v in counts],
        "bin_lo": bin_lo,
        "bin_hi": bin_hi,
    }


def _reader_histograms(
    reader: ImageReader, scene: int, t: int, z: int | None, metadata: ImageMetadata
) -> list[dict[str, Any]]:
    info = reader.scene_info(scene)
    if not 0 <= t < info.size_t:
        msg = f"{reader.path.name}: t={t} is out of range (0..{info.size_t - 1})"
        raise SceneNotFoundError(msg, path=reader.path)
    if z is not None and not 0 <= z < info.size_z:
        msg = f"{reader.path.name}: z={z} is out of range (0..{info.size_z - 1})"
        raise SceneNotFoundError(msg, path=reader.path)
    if z is not None:
        zs = [z]
        per_plane = MAX_SAMPLE_PIXELS * 4  # one plane: use it whole up to 4 Mpx
    else:
        count = min(info.size_z, MAX_SAMPLE_PLANES)
        zs = sorted({round(i * (info.size_z - 1) / max(1, count - 1)) for i in range(count)})
        per_plane = max(1, MAX_SAMPLE_PIXELS // len(zs))
    channels = list(range(info.size_c))
    colours = channel_colors(channels, metadata=metadata, total=info.size_c)
    names = {ch.index: ch.name for ch in metadata.channels}
    result: list[dict[str, Any]] = []
    # A plane too large to read whole is sampled from its block means, read region by region.
    from zstack_analyzer.render.projection import ReaderSource
    from zstack_analyzer.render.reduce import bounded_source

    full = ReaderSource(reader, scene, t)
    step = max(1, int(np.ceil(np.sqrt(info.size_y * info.size_x / (MAX_SAMPLE_PIXELS * 4)))))
    source = bounded_source(full, (step, step), mode="mean", limits=reader.limits)
    for c in channels:
        samples = [_strided(source.read_block(c, zi, zi + 1)[0], per_plane) for zi in zs]
        values = np.concatenate([s.reshape(-1) for s in samples])
        entry: dict[str, Any] = {
            "index": c,
            "name": names.get(c),
            "color": "{:02X}{:02X}{:02X}".format(*(round(v * 255) for v in colours[c])),
        }
        entry.update(histogram_of(values))
        entry["bin_edges_lo"] = entry["bin_lo"]
        entry["bin_edges_hi"] = entry["bin_hi"]
        result.append(entry)
    return result


def channel_histograms(
    path: Path | str | RemoteObject,
    *,
    scene: int = 0,
    t: int = 0,
    z: int | None = None,
    limits: ReadLimits | None = None,
) -> list[dict[str, Any]]:
    """Per-channel statistics for auto-contrast: one dict per C index.

    Each dict has ``index``, ``name``, ``color`` (``RRGGBB``, as rendered),
    ``min``, ``max``, ``p_low``/``p_high`` (1st/99th percentiles, the viewer's
    "auto" window), ``bins`` (256 counts) and ``bin_lo``/``bin_hi`` (the
    histogram's range; also as ``bin_edges_lo``/``bin_edges_hi``). With ``z``
    the statistics are of that plane; without, of a sample of the stack. RGB
    samples of a channel are pooled.

    Raises
    ------
    SceneNotFoundError
        When scene, t or z is out of range.

    Examples
    --------
    >>> channel_histograms("cells.czi", z=3)[0]["p_high"]  # doctest: +SKIP
    1843.0
    """
    from zstack_analyzer.loader import open_image

    with open_image(path, limits=limits or ReadLimits()) as reader:
        metadata = reader.metadata(scene)
        return _reader_histograms(reader, scene, t, z, metadata)
