"""What to render: one frozen value that names a picture, and so its cache key.

Why a value object: the library, the cache, the service and the viewer all
describe the same picture (which file, scene, plane, channels, window, size);
one canonical, hashable description makes the cache key, the ETag and the
query parameters agree by construction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["RENDERER_VERSION", "RenderKind", "RenderSpec", "SectionPlane"]

#: Bump when rendering changes what a given spec looks like: old cache entries then miss.
RENDERER_VERSION = "1"

RenderKind = Literal["thumbnail", "mip", "slice", "section", "orthogonal"]
SectionPlane = Literal["xz", "yz"]
ImageFormat = Literal["png", "jpeg", "webp"]


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """A picture of one file, fully specified.

    Parameters
    ----------
    kind
        ``thumbnail``: plane ``z`` if given, else the Z maximum projection (the seed's
        default). ``mip``: maximum projection along spatial ``axis`` (0=Z, 1=Y, 2=X).
        ``slice``: the XY plane ``z``. ``section``: the ``plane`` ("xz" at Y=``index``,
        "yz" at X=``index``), scaled by the physical voxel aspect. ``orthogonal``: XY, XZ
        and YZ maximum projections side by side.
    scene, t, z
        Which scene, timepoint and Z plane.
    channels
        C indices to composite; ``None`` means all (the first seven at most).
    axis
        Projection axis for ``mip``.
    plane, index
        For ``section``.
    width, height
        Bounding box of the output; aspect ratio is kept, never upscaled past it.
    image_format
        ``png``, ``jpeg`` or ``webp``.
    colors
        One ``RRGGBB`` hex colour per entry of ``channels``; ``None``: the file's, then
        from emission wavelength, then defaults.
    windows
        One ``(low, high)`` display window per entry of ``channels`` in raw values; ``None``:
        per-channel percentiles ``low_percentile``..``high_percentile``.
    gamma
        Display gamma applied after windowing.
    normalize
        ``False``: plain linear scaling of the dtype range, no percentiles.

    Examples
    --------
    >>> RenderSpec(kind="slice", z=3).cache_key("abc") == RenderSpec(kind="slice", z=3).cache_key("abc")
    True
    """

    kind: RenderKind = "thumbnail"
    scene: int = 0
    t: int = 0
    z: int | None = None
    channels: tuple[int, ...] | None = None
    axis: int = 0
    plane: SectionPlane = "xz"
    index: int = 0
    width: int = 256
    height: int = 256
    image_format: ImageFormat = "png"
    colors: tuple[str, ...] | None = None
    windows: tuple[tuple[float, float], ...] | None = None
    low_percentile: float = 1.0
    high_percentile: float = 99.0
    gamma: float = 1.0
    normalize: bool = True

    @property
    def media_type(self) -> str:
        """The MIME type of the encoded picture."""
        return f"image/{self.image_format}"

    def canonical_json(self) -> str:
        """Canonical JSON of every field (sorted keys), the input of the cache key."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def cache_key(self, identity: str) -> str:
        """Key (and HTTP ETag) of this picture of the file whose identity is ``identity``."""
        payload = f"{RENDERER_VERSION}\n{identity}\n{self.canonical_json()}"
        return hashlib.sha256(payload.encode()).hexdigest()[:32]
