"""OME-Zarr (NGFF 0.4 on zarr v2, 0.5 on zarr v3) as a format like the others.

Why through zarr-python: it reads both zarr versions, local directories and
``http(s)://`` URLs (fsspec), and decodes every codec NGFF writers use. Here
we only map NGFF onto our model: axes to canonical T, C, Z, Y, X (absent axes
have size 1), units to µm and seconds, ``omero`` labels and colours to
channels, and collections to scenes: a bioformats2raw layout's series, and an
HCS plate's fields (well by well, in the plate's order).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import (
    CorruptFileError,
    SceneNotFoundError,
    UnsupportedFormatError,
    ZstackError,
)
from zstack_analyzer.readers._base import ImageReader, _reopen
from zstack_analyzer.storage.remote import RemoteObject

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata, SceneInfo

__all__ = ["OmeZarrReader", "is_url", "looks_like_ome_zarr"]

logger = logging.getLogger(__name__)

#: NGFF space units -> factor to µm.
SPACE_UNIT_UM = {
    "angstrom": 1e-4,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
    "picometer": 1e-6,
}
#: NGFF time units -> factor to seconds.
TIME_UNIT_S = {
    "millisecond": 1e-3,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "microsecond": 1e-6,
}
_OME_KEYS = ("multiscales", "bioformats2raw.layout", "plate")


def is_url(path: object) -> bool:
    """Whether ``path`` is an http(s) URL (given as a string)."""
    return isinstance(path, str) and path.lower().startswith(("http://", "https://"))


def _ome_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The NGFF attributes of a group: 0.5 nests them under ``ome``, 0.4 keeps them at the top."""
    ome = attrs.get("ome")
    if isinstance(ome, dict):
        return {**attrs, **ome}
    return dict(attrs)


def looks_like_ome_zarr(path: Path) -> bool:
    """A directory holding a zarr group whose attributes carry NGFF keys; never raises."""
    try:
        if not path.is_dir():
            return False
        for name in (".zattrs", "zarr.json"):
            candidate = path / name
            if candidate.is_file() and candidate.stat().st_size < 64 * 1024 * 1024:
                doc = json.loads(candidate.read_text(encoding="utf-8"))
                attrs = _ome_attrs(doc.get("attributes", {}) if name == "zarr.json" else doc)
                if any(key in attrs for key in _OME_KEYS):
                    return True
    except (OSError, ValueError, AttributeError, TypeError):
        return False
    return False


@dataclass
class _Scene:
    """One NGFF image: its group path, level arrays and axis mapping."""

    path: str
    name: str | None
    arrays: list[Any]
    axes: list[str]
    units: dict[str, str | None]
    scale: dict[str, float]
    attrs: dict[str, Any]
    info: SceneInfo


class OmeZarrReader(ImageReader):
    """An OME-Zarr directory or URL: multiscale images, bioformats2raw collections, HCS plates.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("https://example.org/cells.ome.zarr") as image:  # doctest: +SKIP
    ...     image.level_count(0), image.to_dask(0, level=1).shape
    """

    format_name: ClassVar[str] = "OME-Zarr"
    suffixes: ClassVar[tuple[str, ...]] = (
        ".ome.zarr",
        ".zarr",
        ".ome.zarr.zip",
        ".zarr.zip",
        ".zip",
    )
    required_packages: ClassVar[tuple[str, ...]] = ("zarr",)
    #: A zipped OME-Zarr in a bucket is read in place (zipfile takes a ranged file).
    reads_remote: ClassVar[bool] = True
    #: Chunk reads hold their decoded size from the decode budget (BudgetedArray).
    reserves_decodes: ClassVar[bool] = True

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """A directory with NGFF group metadata, or a zip of one (uploads)."""
        from zstack_analyzer.zarr.zipped import looks_like_zipped_ome_zarr

        if head:
            return looks_like_zipped_ome_zarr(head, path)
        return looks_like_ome_zarr(path)

    @classmethod
    def sniff_remote(cls, head: bytes, source: RemoteObject) -> bool:
        """A zip of an OME-Zarr in a bucket (its central directory read by ranged GETs)."""
        from zstack_analyzer.zarr.zipped import looks_like_zipped_ome_zarr

        return looks_like_zipped_ome_zarr(head, source)

    def __init__(
        self,
        path: Path | str | RemoteObject,
        /,
        *,
        limits: ReadLimits | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        #: Where the store is: a local path or URL (as a string), or a remote zip.
        self.location: str | RemoteObject = path if isinstance(path, RemoteObject) else str(path)
        #: fsspec options of a URL (e.g. ``{"headers": {"Authorization": ...}}`` for a server).
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        opened: Path | RemoteObject
        if isinstance(path, RemoteObject):
            opened = path
        elif is_url(path):
            opened = Path(str(path).rstrip("/").rsplit("/", 1)[-1])
        else:
            opened = Path(path)
        super().__init__(opened, limits=limits)
        try:
            self._root = self._open_root()
            self._scenes = self._find_scenes()
        except ZstackError:
            self.close()
            raise
        except FileNotFoundError:
            raise
        except Exception as exc:  # zarr, fsspec, aiohttp and JSON errors alike
            self.close()
            msg = f"{self.path.name}: unreadable OME-Zarr: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        if not self._scenes:
            msg = f"{self.path.name}: an OME-Zarr with no image in it"
            raise CorruptFileError(msg, path=self.path)
        for scene in self._scenes:
            self.check_shape(scene.info.shape, scene.info.dtype)

    # ------------------------------------------------------------------ opening
    def _open_root(self) -> Any:
        import zarr

        if isinstance(self.location, RemoteObject):
            from zstack_analyzer.zarr.zipped import open_zip_group

            group, store = open_zip_group(self.location, self.limits)
            self.close_on_release(store.close)
            return group
        if is_url(self.location):
            return zarr.open_group(
                self.location, mode="r", storage_options=self.storage_options or None
            )
        location = Path(self.location)
        if not location.exists():
            msg = f"{self.location}: no such file or directory"
            raise FileNotFoundError(msg)
        if location.is_file():
            from zstack_analyzer.zarr.zipped import open_zip_group

            group, store = open_zip_group(location, self.limits)
            self.close_on_release(store.close)
            return group
        from zstack_analyzer.zarr.confined_store import ConfinedLocalStore

        # Every key beneath an import root is read from a checked descriptor (no symlink out).
        return zarr.open_group(ConfinedLocalStore(location, read_only=True), mode="r")

    def _find_scenes(self) -> list[_Scene]:
        attrs = _ome_attrs(dict(self._root.attrs))
        if "multiscales" in attrs:
            return [self._image(self._root, "", None, 0)]
        if "plate" in attrs:
            return self._plate_scenes(attrs["plate"])
        if "bioformats2raw.layout" in attrs:
            return self._collection_scenes()
        msg = f"{self.path.name}: a zarr group without NGFF metadata (no multiscales, plate or bioformats2raw layout)"
        raise UnsupportedFormatError(msg, path=self.path)

    def _collection_scenes(self) -> list[_Scene]:
        series: list[str] = []
        try:
            ome_attrs = _ome_attrs(dict(self._root["OME"].attrs))
            series = [str(s) for s in ome_attrs.get("series", [])]
        except KeyError:
            pass
        if not series:
            index = 0
            while str(index) in self._root:
                series.append(str(index))
                index += 1
        return [self._image(self._root[p], p, None, i) for i, p in enumerate(series)]

    def _plate_scenes(self, plate: Mapping[str, Any]) -> list[_Scene]:
        scenes: list[_Scene] = []
        for well in plate.get("wells", []):
            well_path = str(well["path"])
            well_group = self._root[well_path]
            fields = _ome_attrs(dict(well_group.attrs)).get("well", {}).get("images", [])
            for field_index, field_entry in enumerate(fields):
                field_path = str(field_entry["path"])
                name = f"{well_path.replace('/', '')} field {field_index}"
                scenes.append(
                    self._image(
                        well_group[field_path], f"{well_path}/{field_path}", name, len(scenes)
                    )
                )
        return scenes

    def _image(self, group: Any, path: str, name: str | None, index: int) -> _Scene:
        from zstack_analyzer.metadata import SceneInfo

        attrs = _ome_attrs(dict(group.attrs))
        multiscales = attrs.get("multiscales")
        if not multiscales:
            msg = f"{self.path.name}: group {path or '/'} has no multiscales"
            raise CorruptFileError(msg, path=self.path)
        multiscale = multiscales[0]
        axes_entries = multiscale.get("axes") or [
            {"name": a} for a in "tczyx"[-len(group[multiscale["datasets"][0]["path"]].shape) :]
        ]
        axes = [str(a["name"] if isinstance(a, dict) else a).lower() for a in axes_entries]
        units = {str(a["name"]).lower(): a.get("unit") for a in axes_entries if isinstance(a, dict)}
        if (
            len(set(axes)) != len(axes)
            or not set(axes) <= set("tczyx")
            or not {"y", "x"} <= set(axes)
        ):
            msg = f"{self.path.name}: unsupported NGFF axes {axes}"
            raise CorruptFileError(msg, path=self.path)
        from zstack_analyzer.zarr.bounded import guard_codecs

        datasets = multiscale["datasets"]
        arrays = [group[str(d["path"])] for d in datasets]
        for array in arrays:  # a chunk may not decode to more than it declares
            guard_codecs(array, self.path.name)
        scale: dict[str, float] = {}
        for transform in datasets[0].get("coordinateTransformations", []):
            if transform.get("type") == "scale":
                scale = {a: float(v) for a, v in zip(axes, transform["scale"], strict=True)}
        for transform in multiscale.get("coordinateTransformations", []) or []:
            if transform.get("type") == "scale":
                for a, v in zip(axes, transform["scale"], strict=True):
                    scale[a] = scale.get(a, 1.0) * float(v)
        shape = dict(zip(axes, arrays[0].shape, strict=True))
        info = SceneInfo(
            index=index,
            name=name or multiscale.get("name") or (attrs.get("omero") or {}).get("name"),
            size_t=int(shape.get("t", 1)),
            size_c=int(shape.get("c", 1)),
            size_z=int(shape.get("z", 1)),
            size_y=int(shape["y"]),
            size_x=int(shape["x"]),
            dtype=np.dtype(arrays[0].dtype).newbyteorder("=").name,
        )
        return _Scene(path, info.name, arrays, axes, units, scale, attrs, info)

    def _scene(self, scene: int) -> _Scene:
        self.scene_info(scene)
        return self._scenes[scene]

    # ------------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """Every image of the store: the image, a collection's series or a plate's fields."""
        return [s.info for s in self._scenes]

    def level_count(self, scene: int = 0) -> int:
        """Number of multiscale levels of ``scene``."""
        return len(self._scene(scene).arrays)

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Canonical T, C, Z, Y, X of ``scene`` at ``level``, one dask chunk per zarr chunk."""
        from zstack_analyzer._dask_import import dask_array

        dask_array()  # the process's first import of dask.array, without xarray and scipy
        import dask.array as da

        image = self._scene(scene)
        if not 0 <= level < len(image.arrays):
            msg = f"{self.path.name}: pyramid level {level} does not exist; scene {scene} has {len(image.arrays)}"
            raise SceneNotFoundError(msg, path=self.path)
        from dask.base import tokenize

        from zstack_analyzer.zarr.bounded import BudgetedArray

        stored = image.arrays[level]
        # Through BudgetedArray: each chunk read holds its decoded size from the decode
        # budget first, so a chunk too large to decode is refused before zarr allocates it.
        array = da.from_array(
            BudgetedArray(stored, self.path.name, self.path),
            chunks=tuple(int(c) for c in stored.chunks),
            name=f"ome-zarr-{tokenize(str(self.location), image.path, level)}",
            asarray=True,
            fancy=False,
            lock=False,
        )
        present = [a for a in "tczyx" if a in image.axes]
        array = array.transpose([image.axes.index(a) for a in present])
        index = tuple(slice(None) if a in image.axes else np.newaxis for a in "tczyx")
        return array[index]

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y, X plane, read through zarr (only that plane's chunks)."""
        self.check_plane_index(scene, t, c, z)
        try:
            return np.asarray(self.to_dask(scene)[t, c, z].compute(scheduler="sync"))
        except ZstackError:
            raise
        except Exception as exc:
            msg = f"{self.path.name}: cannot read plane t={t} c={c} z={z}: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Sizes, calibration (µm, s) and channels from the NGFF attributes."""
        from zstack_analyzer.metadata import ChannelInfo, PhysicalSize

        image = self._scene(scene)
        warnings: list[str] = []
        provenance: dict[str, str] = {}
        sizes: dict[str, float | None] = {}
        for axis, field in (("x", "x_um"), ("y", "y_um"), ("z", "z_um")):
            unit = image.units.get(axis)
            value = image.scale.get(axis)
            factor = SPACE_UNIT_UM.get(unit) if unit else None
            if axis not in image.axes:
                sizes[field] = None
            elif factor is None or value is None:
                sizes[field] = None
                warnings.append(f"{axis}: no unit in the NGFF axes; voxel size unknown")
            else:
                sizes[field] = value * factor
                provenance[f"physical_size.{field}"] = "NGFF scale"
        interval = None
        t_unit = image.units.get("t")
        if "t" in image.axes and t_unit in TIME_UNIT_S and "t" in image.scale:
            interval = image.scale["t"] * TIME_UNIT_S[str(t_unit)]
            provenance["time_interval_s"] = "NGFF scale"
        omero = image.attrs.get("omero") or {}
        channels = []
        for i, entry in enumerate((omero.get("channels") or [])[: image.info.size_c]):
            colour = entry.get("color")
            channels.append(
                ChannelInfo(
                    index=i,
                    name=entry.get("label"),
                    color=f"#{colour.upper()}"
                    if isinstance(colour, str) and len(colour) == 6
                    else None,
                )
            )
        levels = [
            (int(a.shape[image.axes.index("y")]), int(a.shape[image.axes.index("x")]))
            for a in image.arrays
        ]
        return self.scene_metadata(
            image.info,
            physical_size=PhysicalSize(**sizes),
            time_interval_s=interval,
            channels=channels,
            pyramid_levels=levels,
            provenance=provenance,
            warnings=warnings,
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """The root group's attributes and each scene's group attributes."""
        return {
            "root": dict(self._root.attrs),
            "scenes": {s.path or "/": s.attrs for s in self._scenes},
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # By location, not by ``path``: a URL is not a path.
        if self.storage_options:
            return (
                _reopen_with_options,
                (type(self), self.location, self.limits, self.storage_options),
            )
        return (_reopen, (type(self), self.location, self.limits))


def _reopen_with_options(
    cls: type[OmeZarrReader],
    location: str | RemoteObject,
    limits: ReadLimits | None,
    storage_options: Mapping[str, Any],
) -> OmeZarrReader:
    """Unpickle a reader of a URL opened with fsspec options (a bearer header)."""
    return cls(location, limits=limits, storage_options=storage_options)
