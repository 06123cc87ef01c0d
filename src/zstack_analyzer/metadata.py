"""One trustworthy metadata model for every format.

Why pydantic: the same objects are the library's return values and the HTTP
service's JSON, so validation and serialisation are written once. Units are in
the field names (``x_um``, ``emission_nm``); ``None`` means "the file does not
say", never a stand-in 1.0. ``provenance`` says where each normalised value came
from and ``warnings`` what was assumed or conflicting: that is what lets a user
trust a voxel size.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from zstack_analyzer.limits import itemsize

__all__ = [
    "MAX_TEXT_CHARS",
    "MAX_WARNINGS",
    "ChannelInfo",
    "ImageMetadata",
    "MicroscopeInfo",
    "ObjectiveInfo",
    "PhysicalSize",
    "SceneInfo",
]


#: Longest text taken from a file (names, descriptions, provenance, warnings), in
#: characters; longer text is cut and ends with ``vendor.TRUNCATION_MARK``. Why: a
#: file's 50 MB image name went into every API list and database row.
MAX_TEXT_CHARS = 1024
#: Most entries kept in ``warnings``.
MAX_WARNINGS = 100


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _blank_is_none(value: str | None) -> str | None:
    """An empty or blank name is no name: ``None``, never ``''`` (search and display rely on it)."""
    if value is None or not value.strip():
        return None
    return value


class PhysicalSize(_Model):
    """Voxel size in micrometres; each ``None`` when the file does not state it.

    Examples
    --------
    >>> PhysicalSize(x_um=0.1625, y_um=0.1625, z_um=0.5).z_um
    0.5
    """

    x_um: float | None = Field(default=None, description="Pixel width in µm")
    y_um: float | None = Field(default=None, description="Pixel height in µm")
    z_um: float | None = Field(
        default=None, description="Z step in µm (negative when the stack was taken downwards)"
    )


class ChannelInfo(_Model):
    """One channel (C index) as the acquisition software described it.

    Examples
    --------
    >>> ChannelInfo(index=0, name="DAPI", emission_nm=461.0).name
    'DAPI'
    """

    index: int
    name: str | None = None
    excitation_nm: float | None = None
    emission_nm: float | None = None
    color: str | None = Field(default=None, description="Display colour as #RRGGBB")
    fluorophore: str | None = None
    exposure_ms: float | None = None
    illumination: str | None = None
    contrast_method: str | None = None


class ObjectiveInfo(_Model):
    """The objective lens, when the file names it.

    Examples
    --------
    >>> ObjectiveInfo(magnification=63.0, numerical_aperture=1.4, immersion="Oil").immersion
    'Oil'
    """

    name: str | None = None
    magnification: float | None = None
    numerical_aperture: float | None = None
    immersion: str | None = None


class MicroscopeInfo(_Model):
    """The instrument and the software that wrote the file.

    Examples
    --------
    >>> MicroscopeInfo(manufacturer="Zeiss").manufacturer
    'Zeiss'
    """

    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    software: str | None = None
    software_version: str | None = None


class SceneInfo(_Model):
    """One scene (CZI scene, OME Image, LIF image, ND2 position) with its own sizes.

    Examples
    --------
    >>> SceneInfo(index=0, size_x=4, size_y=3, dtype="uint8").size_z
    1
    """

    index: int
    name: str | None = None
    size_t: int = 1
    size_c: int = 1
    size_z: int = 1
    size_y: int = 1
    size_x: int = 1
    samples_per_pixel: int = 1
    dtype: str
    extra_dims: dict[str, int] = Field(
        default_factory=dict,
        description="Vendor dimensions beyond TCZYXS (size > 1), read at index 0",
    )

    _name_blank_is_none = field_validator("name")(_blank_is_none)

    @property
    def shape(self) -> tuple[int, ...]:
        """Canonical T, C, Z, Y, X (+S) shape of this scene."""
        base = (self.size_t, self.size_c, self.size_z, self.size_y, self.size_x)
        return (*base, self.samples_per_pixel) if self.samples_per_pixel > 1 else base


class ImageMetadata(_Model):
    """Everything known about one scene of one file, normalised, with provenance.

    Sizes are those of the canonical T, C, Z, Y, X (+S) array of the chosen
    scene. ``samples_per_pixel`` counts RGB samples and is never confused with
    channels.

    Examples
    --------
    >>> md = ImageMetadata(filename="a.tif", file_format="TIFF", size_x=2048, size_y=2048,
    ...                    size_z=50, size_c=2, dtype="uint16", bit_depth=16)
    >>> round(md.get_memory_size_mb())
    800
    >>> md.should_use_lazy_loading()
    False
    """

    filename: str
    file_format: str = Field(description='"TIFF", "OME-TIFF", "ImageJ TIFF", "STK", "CZI", ...')
    scene_index: int = 0
    scene_name: str | None = None
    size_x: int
    size_y: int
    size_z: int = 1
    size_c: int = 1
    size_t: int = 1
    samples_per_pixel: int = 1
    dtype: str = Field(description='numpy dtype name, e.g. "uint16"')
    bit_depth: int = Field(description="Bits per sample of the container (16 for uint16)")
    significant_bits: int | None = Field(
        default=None, description="Bits actually used, where the file says (12 in uint16)"
    )
    physical_size: PhysicalSize = Field(default_factory=PhysicalSize)
    time_interval_s: float | None = None
    channels: list[ChannelInfo] = Field(default_factory=list)
    objective: ObjectiveInfo | None = None
    microscope: MicroscopeInfo | None = None
    acquired_at: datetime | None = Field(
        default=None, description="Acquisition start, UTC; None when the zone is unknown"
    )
    acquired_at_local: datetime | None = Field(
        default=None, description="Acquisition start as written, naive, when no zone is known"
    )
    extra_dims: dict[str, int] = Field(default_factory=dict)
    scenes: list[SceneInfo] = Field(default_factory=list)
    pyramid_levels: list[tuple[int, int]] = Field(
        default_factory=list, description="(Y, X) sizes of the resolution levels, full first"
    )
    provenance: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    vendor_metadata: dict[str, Any] = Field(
        default_factory=dict, description="JSON-safe, size-capped copy of the vendor metadata"
    )

    _scene_name_blank_is_none = field_validator("scene_name")(_blank_is_none)

    @classmethod
    def for_scene(
        cls,
        info: SceneInfo,
        *,
        filename: str,
        file_format: str,
        scenes: list[SceneInfo],
        **fields: Any,
    ) -> ImageMetadata:
        """Metadata of the scene ``info`` describes, its sizes taken from ``info``.

        Why: every reader already holds a ``SceneInfo`` with the scene's sizes,
        dtype and extra dimensions; copying them field by field in each reader
        invites one reader to forget one. ``scene_index``, ``scene_name``,
        sizes, ``samples_per_pixel``, ``dtype``, ``bit_depth`` (the dtype's
        item size in bits) and ``extra_dims`` come from ``info`` unless given
        in ``fields``, which may also set any other field.

        Examples
        --------
        >>> info = SceneInfo(index=1, name="pos 2", size_z=5, size_y=3, size_x=4, dtype="uint16")
        >>> md = ImageMetadata.for_scene(info, filename="a.nd2", file_format="ND2", scenes=[info])
        >>> md.scene_index, md.scene_name, md.shape, md.bit_depth
        (1, 'pos 2', (1, 1, 5, 3, 4), 16)
        >>> ImageMetadata.for_scene(info, filename="a.nd2", file_format="ND2", scenes=[info],
        ...                         scene_name=None, bit_depth=12).bit_depth
        12
        """
        values: dict[str, Any] = {
            "scene_index": info.index,
            "scene_name": info.name,
            "size_x": info.size_x,
            "size_y": info.size_y,
            "size_z": info.size_z,
            "size_c": info.size_c,
            "size_t": info.size_t,
            "samples_per_pixel": info.samples_per_pixel,
            "dtype": info.dtype,
            "bit_depth": itemsize(info.dtype) * 8,
            "extra_dims": dict(info.extra_dims),
            **fields,
        }
        return cls(filename=filename, file_format=file_format, scenes=list(scenes), **values)

    @property
    def shape(self) -> tuple[int, ...]:
        """Canonical T, C, Z, Y, X (+S) shape of the scene."""
        base = (self.size_t, self.size_c, self.size_z, self.size_y, self.size_x)
        return (*base, self.samples_per_pixel) if self.samples_per_pixel > 1 else base

    @model_validator(mode="after")
    def _cap_text(self) -> ImageMetadata:
        """Cap every string to :data:`MAX_TEXT_CHARS` and the vendor block to its budget.

        Why here: every reader builds this model, so one check covers every
        format; a cut is noted in ``warnings``. Values are replaced through
        ``__dict__`` so that the fix-up does not re-trigger assignment validation.
        """
        from zstack_analyzer.vendor import VENDOR_MAX_BYTES, capped_vendor

        cut: list[str] = []
        if not _all_text_short(self):
            _cap_model(self, "", cut)
        if not _vendor_json_small(self.vendor_metadata, VENDOR_MAX_BYTES) and _vendor_too_big(
            self.vendor_metadata, VENDOR_MAX_BYTES
        ):
            self.__dict__["vendor_metadata"] = capped_vendor(self.vendor_metadata)
            cut.append("vendor_metadata")
        warnings = self.warnings
        if cut:
            names = ", ".join(cut[:5]) + (f" and {len(cut) - 5} more" if len(cut) > 5 else "")
            warnings = [
                *warnings,
                f"text from the file over {MAX_TEXT_CHARS} characters was truncated: {names}",
            ]
        if len(warnings) > MAX_WARNINGS:
            extra = len(warnings) - (MAX_WARNINGS - 1)
            warnings = [*warnings[: MAX_WARNINGS - 1], f"... and {extra} more warnings"]
        if warnings is not self.warnings:
            self.__dict__["warnings"] = warnings
        return self

    def get_voxel_size_micrometers(self) -> tuple[float | None, float | None, float | None]:
        """Return the voxel size ``(x, y, z)`` in µm, ``None`` where unknown."""
        p = self.physical_size
        return (p.x_um, p.y_um, p.z_um)

    def get_memory_size_mb(self) -> float:
        """Size of the whole scene in memory, in MiB, computed from the shape alone."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize / 1024**2

    def should_use_lazy_loading(self, threshold_mb: float = 1024) -> bool:
        """Whether the scene is larger than ``threshold_mb`` MiB (1 GiB by default)."""
        return self.get_memory_size_mb() > threshold_mb


def _cut(text: str) -> str:
    from zstack_analyzer.vendor import TRUNCATION_MARK

    return text[: MAX_TEXT_CHARS - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def _cap_value(value: Any, where: str, cut: list[str]) -> Any:
    """``value`` with over-long strings cut (lists, dicts and models walked); names recorded."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            cut.append(where)
            return _cut(value)
        return value
    if isinstance(value, BaseModel):
        _cap_model(value, where, cut)
        return value
    if isinstance(value, list):
        capped = [_cap_value(item, f"{where}[{i}]", cut) for i, item in enumerate(value)]
        return value if all(a is b for a, b in zip(capped, value, strict=True)) else capped
    if isinstance(value, dict):
        capped_dict = {
            _cap_value(key, f"{where} key", cut): _cap_value(item, f"{where}[{key!s:.32}]", cut)
            for key, item in value.items()
        }
        unchanged = len(capped_dict) == len(value) and all(
            k in value and value[k] is v for k, v in capped_dict.items()
        )
        return value if unchanged else capped_dict
    return value


def _vendor_json_small(value: Any, budget: int) -> bool:
    """A certain "not too big" (:func:`_vendor_too_big` is ``False``) from the JSON of ``value``.

    Every leaf :func:`_vendor_too_big` counts takes at least one byte of the
    JSON and counts at most 8 (a string counts its length, never more than
    its literal), so JSON of at most ``budget / 8`` bytes is within the
    budget, and of at most 4096 bytes holds no longer string. Why: that walk
    visits every value in Python (issue 22); ``pydantic_core.to_json`` does
    it in Rust. A value it cannot serialize (or cycles) answers ``False``.
    """
    from pydantic_core import to_json

    try:
        text = to_json(value)
    except Exception:
        return False
    return len(text) <= min(budget // 8, 4096)


#: Value types that hold no text (skipped first by :func:`_all_text_short`).
_SCALARS = frozenset({int, float, bool, type(None), datetime})


def _all_text_short(model: BaseModel) -> bool:
    """Whether no string of ``model`` (vendor_metadata aside) is over :data:`MAX_TEXT_CHARS`.

    Why a walk of its own: :func:`_cap_model` names every value it visits (a
    formatted path per item), which made it the largest cost of reading a
    small file's metadata; this walk only looks, and the naming walk runs only
    when something must be cut. Unknown containers (subclasses) answer
    ``False``, so the naming walk decides for them. Fields go on the stack by
    C-level copies and extends, not comprehensions (issue 22: reading
    metadata is timed in a fresh process).
    """
    fields = dict(model.__dict__)
    fields.pop("vendor_metadata", None)
    stack: list[Any] = list(fields.values())
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:  # most values: before any isinstance (pydantic's is slow)
            continue
        if kind is str:
            if len(item) > MAX_TEXT_CHARS:
                return False
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, BaseModel):
            # Every field, even one named vendor_metadata (no nested model has one): a long
            # string there answers False, and the naming walk, which skips it, cuts nothing.
            stack.extend(item.__dict__.values())
        elif isinstance(item, str | list | tuple | dict):
            return False
    return True


def _cap_model(model: BaseModel, prefix: str, cut: list[str]) -> None:
    """Cap the string fields of ``model`` in place (vendor_metadata has its own budget)."""
    for name in type(model).model_fields:
        if name == "vendor_metadata":
            continue
        value = model.__dict__.get(name)
        capped = _cap_value(value, f"{prefix}{'.' if prefix else ''}{name}", cut)
        if capped is not value:
            model.__dict__[name] = capped


def _vendor_too_big(value: Any, budget: int) -> bool:
    """Whether ``value`` holds a string over 4096 characters or more text than ``budget``."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)  # exact types first: isinstance with a union costs more per item
        if kind in _SCALARS:
            total += 8
        elif kind is str or (kind is not dict and kind is not list and isinstance(item, str)):
            if len(item) > 4096:  # capped_vendor keeps 4000 + the mark
                return True
            total += len(item)
        elif kind is dict or isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif kind is list or isinstance(item, list | tuple):
            stack.extend(item)
        else:
            total += 8
        if total > budget:
            return True
    return False
