"""Channel colours, display windows, gamma and additive composites.

Why here and not in the thumbnail code: the library, the service and the viewer
must agree on how a channel looks (which colour, which contrast), so the rules
live in one place. Colours come from the file (its LUT or display colour), then
from the emission wavelength, then from defaults that stay distinguishable;
contrast is a robust per-channel percentile window computed on the small,
already downsampled image, so one hot pixel cannot blacken a picture and 12-bit
data in a 16-bit container still fills the range.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from zstack_analyzer.metadata import ImageMetadata

__all__ = [
    "DEFAULT_COLORS",
    "Window",
    "apply_window",
    "channel_colors",
    "composite",
    "dtype_window",
    "dye_emission_nm",
    "parse_color",
    "percentile_window",
    "wavelength_to_color",
]

Window = tuple[float, float]

#: Defaults by channel count: one channel grey; two green/magenta (colour-blind safe);
#: three blue/green/red (the usual DAPI-first order); more cycle through seven hues.
DEFAULT_COLORS: dict[int, tuple[str, ...]] = {
    1: ("FFFFFF",),
    2: ("00FF00", "FF00FF"),
    3: ("0000FF", "00FF00", "FF0000"),
}
_CYCLE: tuple[str, ...] = ("0000FF", "00FF00", "FF0000", "FF00FF", "00FFFF", "FFFF00", "FFFFFF")

#: Largest number of pixels a percentile is computed on; larger images are strided.
PERCENTILE_SAMPLE = 1 << 18


def parse_color(value: str) -> tuple[float, float, float]:
    """Parse ``RRGGBB`` or ``#RRGGBB`` into an (r, g, b) triple in 0..1.

    Examples
    --------
    >>> parse_color("#ff8000")
    (1.0, 0.5019607843137255, 0.0)
    """
    text = value.strip().lstrip("#")
    if len(text) == 8:  # AARRGGBB or RRGGBBAA are both seen; OME stores RRGGBBAA as an int
        text = text[:6]
    if len(text) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        msg = f"colour {value!r} is not RRGGBB hex"
        raise ValueError(msg)
    return (int(text[0:2], 16) / 255, int(text[2:4], 16) / 255, int(text[4:6], 16) / 255)


def wavelength_to_color(nm: float) -> str | None:
    """Approximate display colour (``RRGGBB``) of light of ``nm`` nanometres.

    Why: a file without display colours usually still records each channel's
    emission; DAPI should then look blue and mCherry red. Outside 380..780 nm
    (UV, IR) there is no sensible hue and ``None`` is returned.

    Examples
    --------
    >>> wavelength_to_color(461), wavelength_to_color(520), wavelength_to_color(610)
    ('0000FF', '00FF00', 'FF0000')
    """
    if not math.isfinite(nm) or nm < 380 or nm > 780:
        return None
    # Coarse bands, saturated so composites stay distinguishable.
    bands: tuple[tuple[float, str], ...] = (
        (430, "FF00FF"),  # violet
        (490, "0000FF"),  # blue (DAPI, Hoechst, CFP)
        (505, "00FFFF"),  # cyan
        (560, "00FF00"),  # green (GFP, FITC, Alexa 488)
        (590, "FFFF00"),  # yellow/orange (YFP, Cy3 at the edge)
        (700, "FF0000"),  # red (mCherry, Alexa 594, Cy5 emission)
    )
    for upper, colour in bands:
        if nm < upper:
            return colour
    return "FF0000"  # far red / near IR (Cy5, Cy7 emission): red reads best


#: Emission peaks (nm) of common dyes and fluorescent proteins, for files that name a
#: channel ("DAPI", "EGFP", "Alexa Fluor 647") but record no wavelength.
DYE_EMISSION_NM: dict[str, float] = {
    "dapi": 461,
    "hoechst": 461,
    "bfp": 450,
    "cfp": 475,
    "egfp": 507,
    "gfp": 509,
    "fitc": 519,
    "alexafluor488": 520,
    "alexa488": 520,
    "af488": 520,
    "yfp": 527,
    "cy3": 570,
    "tritc": 576,
    "alexafluor555": 565,
    "alexa555": 565,
    "alexafluor568": 603,
    "alexa568": 603,
    "mcherry": 610,
    "tdtomato": 581,
    "rfp": 607,
    "texasred": 615,
    "alexafluor594": 617,
    "alexa594": 617,
    "cy5": 670,
    "alexafluor647": 668,
    "alexa647": 668,
    "af647": 668,
    "cy7": 776,
}


def dye_emission_nm(name: str | None) -> float | None:
    """Emission peak of a dye or protein named in ``name``, when it is a common one.

    Examples
    --------
    >>> dye_emission_nm("DAPI"), dye_emission_nm("Alexa Fluor 647"), dye_emission_nm("Ch1")
    (461, 668, None)
    """
    if not name:
        return None
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    for dye in sorted(DYE_EMISSION_NM, key=len, reverse=True):
        if dye in key:
            return DYE_EMISSION_NM[dye]
    return None


def _normalise_hex(value: str | None) -> str | None:
    if not value:
        return None
    try:
        r, g, b = parse_color(value)
    except ValueError:
        return None
    return f"{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}"


def _defaults(total: int) -> tuple[str, ...]:
    return DEFAULT_COLORS.get(total) or tuple(_CYCLE[i % len(_CYCLE)] for i in range(total))


def channel_colors(
    channels: Sequence[int],
    *,
    metadata: ImageMetadata | None = None,
    colors: Sequence[str] | None = None,
    total: int | None = None,
) -> list[tuple[float, float, float]]:
    """Display colour of each of ``channels``, as (r, g, b) in 0..1.

    Order of preference per channel: an explicit ``colors`` entry (one per
    entry of ``channels``); the file's own colour; a colour from the emission
    wavelength (recorded, or that of a common dye the channel is named after);
    the defaults for the image's channel count (``total``, else
    ``metadata.size_c``, else ``len(channels)``). A channel keeps its colour
    whichever subset is shown. File colours that are black, or the same for
    every channel of a multi-channel image (OME's "all white" default), say
    nothing and are skipped; so are emission colours that all coincide.

    Examples
    --------
    >>> channel_colors([0, 1])
    [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)]
    >>> channel_colors([2], total=3)
    [(1.0, 0.0, 0.0)]
    """
    if total is None:
        total = metadata.size_c if metadata is not None else None
    if total is None or any(c >= total for c in channels):
        total, index_of = len(channels), dict(zip(channels, range(len(channels)), strict=False))
    else:
        index_of = {c: c for c in channels}
    defaults = _defaults(total)
    infos = {ch.index: ch for ch in metadata.channels} if metadata is not None else {}
    file_colours = {
        i: hexed
        for i, info in infos.items()
        if (hexed := _normalise_hex(info.color)) is not None and hexed != "000000"
    }
    if len(infos) > 1 and len(file_colours) == len(infos) and len(set(file_colours.values())) == 1:
        file_colours = {}
    emission: dict[int, str | None] = {}
    for i, info in infos.items():
        nm = info.emission_nm
        if nm is None:
            nm = dye_emission_nm(info.fluorophore) or dye_emission_nm(info.name)
        emission[i] = wavelength_to_color(nm) if nm is not None else None
    known_emission = [v for v in emission.values() if v is not None]
    if len(infos) > 1 and len(known_emission) == len(infos) and len(set(known_emission)) == 1:
        emission = {}
    result: list[tuple[float, float, float]] = []
    for position, c in enumerate(channels):
        explicit = colors[position] if colors is not None and position < len(colors) else None
        chosen = (
            _normalise_hex(explicit)
            or file_colours.get(c)
            or emission.get(c)
            or defaults[index_of[c] % len(defaults)]
        )
        result.append(parse_color(chosen))
    return result


def dtype_window(dtype: np.dtype[np.generic], data: np.ndarray | None = None) -> Window:
    """The window of a plain linear scaling of the dtype range (``normalize=False``).

    Integers map their full range; floats have no range of their own, so 0..1
    is used when the data fit in it, else the data's finite min..max.
    """
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)  # type: ignore[type-var]
        return (float(info.min), float(info.max))
    if np.issubdtype(dtype, np.bool_):
        return (0.0, 1.0)
    if data is None or data.size == 0:
        return (0.0, 1.0)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0.0 and hi <= 1.0:
        return (0.0, 1.0)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _sample(data: np.ndarray, limit: int = PERCENTILE_SAMPLE) -> np.ndarray:
    """An evenly strided sample of at most about ``limit`` values."""
    flat = data.reshape(-1) if data.flags.c_contiguous else np.ravel(data)
    step = max(1, flat.size // limit)
    return flat[::step]


def percentile_window(data: np.ndarray, low: float = 1.0, high: float = 99.0) -> Window:
    """Robust display window: the ``low`` and ``high`` percentiles of ``data``.

    Why percentiles on the downsampled image: dead and hot pixels (and the
    unused top bits of 12-bit data in a 16-bit container) do not move them. A
    flat result widens to min..max, and a constant image gets a unit window so
    it renders as its value, not as noise.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.arange(1000, dtype=np.uint16); data[500] = 65535  # one hot pixel
    >>> [round(v) for v in percentile_window(data, 1, 99)]
    [10, 990]
    """
    sample = _sample(np.asarray(data))
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        # A constant image: show it as mid grey if nonzero, black if zero.
        return (lo - 1.0, lo + 1.0) if lo != 0 else (0.0, 1.0)
    return (lo, hi)


def apply_window(data: np.ndarray, window: Window, gamma: float = 1.0) -> np.ndarray:
    """Map raw values to 0..1 float32 through ``window`` then ``gamma``.

    ``out = clip((v - low) / (high - low), 0, 1) ** gamma``; gamma below 1
    brightens mid-tones, above 1 darkens them (as in napari and ImageJ).
    """
    lo, hi = window
    span = hi - lo if hi != lo else 1.0
    out = np.asarray(data, dtype=np.float32) - np.float32(lo)
    out *= np.float32(1.0 / span)
    np.clip(out, 0.0, 1.0, out=out)
    if np.issubdtype(out.dtype, np.floating):
        np.nan_to_num(out, copy=False, nan=0.0)
    if gamma != 1.0:
        np.power(out, np.float32(gamma), out=out)
    return out


def composite(
    planes: Sequence[np.ndarray],
    colors: Sequence[tuple[float, float, float]],
    windows: Sequence[Window],
    *,
    gamma: float = 1.0,
) -> np.ndarray:
    """Additive colour composite of 2-D channels as a Y, X, 3 ``uint8`` RGB image.

    Each plane is windowed to 0..1, tinted by its colour and summed; the sum is
    clipped to 1 and rounded to 8 bits. An RGB file is passed as its three
    samples tinted red, green and blue, which reproduces its own colours.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = composite([np.full((1, 1), 10.0)], [(0.0, 1.0, 0.0)], [(0.0, 20.0)])
    >>> rgb.tolist()
    [[[0, 128, 0]]]
    """
    if not planes:
        msg = "composite needs at least one channel"
        raise ValueError(msg)
    height, width = planes[0].shape[:2]
    acc = np.zeros((height, width, 3), dtype=np.float32)
    for plane, colour, window in zip(planes, colors, windows, strict=True):
        value = apply_window(plane, window, gamma)
        for k in range(3):
            if colour[k]:
                acc[..., k] += value * np.float32(colour[k])
    np.clip(acc, 0.0, 1.0, out=acc)
    acc *= 255.0
    np.rint(acc, out=acc)
    return acc.astype(np.uint8)
