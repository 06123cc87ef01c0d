"""The Bio-Formats fallback reader: files no native reader claims, read in worker processes.

Why last in the registry and by suffix: a native reader is faster and knows
its format better, so it gets every file it claims by content first. What is
left is handed to Bio-Formats when its name ends in a suffix some Bio-Formats
reader claims (``formats.json``); sniffing by content would mean a JVM, which
``sniff`` may not start. Bio-Formats then decides by content in the worker;
if it recognises nothing, the caller gets :class:`UnsupportedFormatError`.

Metadata comes from Bio-Formats' OME-XML through our OME parser
(:mod:`zstack_analyzer.readers._ome`), so the record has the fields, units and
warnings of every other format; its ``provenance`` names the Bio-Formats
reader. Pixels are read plane by plane, and region by region (``openBytes``
with a rectangle), so bounded rendering, deep zoom and the virtual OME-Zarr
work as on native formats.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError, UnsupportedFormatError
from zstack_analyzer.metadata import SceneInfo
from zstack_analyzer.readers._base import ImageReader, owned, planes_to_dask
from zstack_analyzer.readers.bioformats.companions import check_used_files
from zstack_analyzer.readers.bioformats.extent import check_extent
from zstack_analyzer.readers.bioformats.formats import claimed_suffixes, format_for
from zstack_analyzer.readers.bioformats.pool import PoolOptions, get_pool, pool_options
from zstack_analyzer.storage.remote import RemoteObject

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata
    from zstack_analyzer.readers._ome import OmeDocument

__all__ = ["BioformatsReader"]


@functools.cache
def _native_suffixes() -> frozenset[str]:
    """Suffixes a native reader claims: theirs by name, so never handed to Bio-Formats."""
    from zstack_analyzer.registry import reader_classes

    return frozenset(
        s for cls in reader_classes() if cls is not BioformatsReader for s in cls.suffixes
    )


class BioformatsReader(ImageReader):
    """Any format Bio-Formats reads, through a pool of JVM worker processes.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("spectrum.dm4") as reader:  # doctest: +SKIP
    ...     reader.metadata().provenance["file_format"]
    'Bio-Formats GatanReader'
    """

    format_name: ClassVar[str] = "Bio-Formats"
    suffixes: ClassVar[tuple[str, ...]] = claimed_suffixes()

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """A file (not a folder) named like a Bio-Formats format that no native reader names."""
        try:
            if not head or path.is_dir():
                return False
        except OSError:
            return False
        name = path.name.lower()
        if any(name.endswith(s) for s in _native_suffixes()):
            return False
        return format_for(name) is not None

    def __init__(
        self,
        path: Path | str | RemoteObject,
        /,
        *,
        limits: ReadLimits | None = None,
        options: PoolOptions | None = None,
    ) -> None:
        if isinstance(path, RemoteObject):
            msg = f"{path.path.name}: Bio-Formats reads local files only"
            raise UnsupportedFormatError(msg, path=path.path)
        super().__init__(Path(path).absolute(), limits=limits)
        self.options = options or pool_options()
        self._pool = get_pool(self.options)
        answer = self._pool.request(self.path, {"op": "open", "path": str(self.path)})
        found: dict[str, Any] = answer.header["result"]
        check_used_files(self.path, found["used_files"])
        self._format: str = found["format"]
        self._reader_name: str = found["reader"]
        self._used_files: list[str] = found["used_files"]
        self._series: list[dict[str, Any]] = found["series"]
        self._xml: str = found["ome_xml"]
        self._doc: OmeDocument | None = None
        self._warnings: list[str] = []
        self._scenes = [self._scene(i, s) for i, s in enumerate(self._series)]
        if not self._scenes:
            msg = f"{self.path.name}: Bio-Formats found no image in it"
            raise CorruptFileError(msg, path=self.path)
        for info in self._scenes:
            self.check_shape(info.shape, info.dtype)
        check_extent(
            self._reader_name,
            self.path,
            self._used_files,
            self._series,
            lambda dtype: np.dtype(dtype).itemsize,
        )

    def _scene(self, index: int, series: dict[str, Any]) -> SceneInfo:
        try:
            dtype = np.dtype(series["dtype"]).name
        except TypeError as exc:
            msg = f"{self.path.name}: Bio-Formats pixel type {series['pixel_type']!r} is not supported"
            raise CorruptFileError(msg, path=self.path) from exc
        return SceneInfo(
            index=index,
            size_t=series["size_t"],
            size_c=series["size_c"],
            size_z=series["size_z"],
            size_y=series["size_y"],
            size_x=series["size_x"],
            samples_per_pixel=max(1, series["samples"]),
            dtype=dtype,
        )

    # ----------------------------------------------------------------- protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """One scene per Bio-Formats series, in the file's order."""
        return self._scenes

    @property
    def reader_name(self) -> str:
        """The Bio-Formats reader class that read the file (``GatanReader``)."""
        return self._reader_name

    @property
    def used_files(self) -> list[str]:
        """Every file Bio-Formats read for this image (the main file and its companions)."""
        return list(self._used_files)

    def _document(self) -> OmeDocument:
        from zstack_analyzer.readers._ome import parse_ome_xml

        if self._doc is None:
            xml, dropped = _xml_1_0(self._xml)
            self._doc = parse_ome_xml(xml, path=self.path, limits=self.limits)
            if dropped:
                self._warnings.append(
                    f"Bio-Formats' OME-XML held {dropped} character reference(s) XML 1.0 "
                    "forbids (control characters copied from the file's text); dropped"
                )
        return self._doc

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Bio-Formats' OME-XML of ``scene`` through our OME parser; provenance names its reader."""
        from zstack_analyzer.readers._ome import image_metadata

        info = self.scene_info(scene)
        doc = self._document()
        # The format of the reader that read it, not the first one claiming its suffix: an
        # FEI SEM .tif read by FEITiffReader is not "InCell 1000/2000" (the first .tif reader).
        file_format = f"{self._format} (Bio-Formats)"
        source = f"Bio-Formats {self._reader_name}"
        if scene >= len(doc.images):
            msg = f"{self.path.name}: Bio-Formats' OME-XML has no Image for series {scene}"
            raise CorruptFileError(msg, path=self.path)
        md = image_metadata(
            doc,
            doc.images[scene],
            info,
            filename=self.path.name,
            file_format=file_format,
            scenes=list(self._scenes),
        )
        provenance = {field: f"{source} ({value})" for field, value in md.provenance.items()}
        warnings = [*md.warnings, *self._warnings]
        provenance["file_format"] = source
        provenance["sizes"] = f"{source} (series {scene} sizes)"
        vendor = dict(md.vendor_metadata)
        vendor["bioformats"] = {
            "reader": self._reader_name,
            "format": self._format,
            "used_files": [Path(f).name for f in self._used_files],
        }
        return md.model_copy(
            update={"provenance": provenance, "vendor_metadata": vendor, "warnings": warnings}
        )

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy T,C,Z,Y,X(,S): one chunk per plane, each read by a worker when computed."""
        info = self.scene_info(scene)
        self._check_level(scene, level)
        return planes_to_dask(
            functools.partial(self.read_plane, scene),
            info.shape,
            info.dtype,
            name=f"bioformats-{self.path.name}",
        )

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One whole Y,X(,S) plane, decoded by Bio-Formats in a worker."""
        info = self.scene_info(scene)
        return self.read_region(scene, t, c, z, (0, info.size_y), (0, info.size_x))

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """Bio-Formats' optimal tile (rows, columns): regions on it decode each block once."""
        self._check_level(scene, level)
        series = self._series[scene]
        return (max(1, series["tile_y"]), max(1, series["tile_x"]))

    def read_region(
        self,
        scene: int,
        t: int,
        c: int,
        z: int,
        rows: tuple[int, int],
        cols: tuple[int, int],
        *,
        level: int = 0,
    ) -> np.ndarray:
        """Rows and columns of one plane, by ``openBytes`` with a rectangle."""
        self.check_open()
        self.check_plane_index(scene, t, c, z)
        self._check_level(scene, level)
        info = self.scene_info(scene)
        y0, y1 = max(0, rows[0]), min(info.size_y, rows[1])
        x0, x1 = max(0, cols[0]), min(info.size_x, cols[1])
        samples = info.samples_per_pixel
        if y1 <= y0 or x1 <= x0:
            shape = (max(0, y1 - y0), max(0, x1 - x0), *((samples,) if samples > 1 else ()))
            return np.empty(shape, dtype=info.dtype)
        h, w = y1 - y0, x1 - x0
        answer = self._pool.request(
            self.path,
            {
                "op": "read",
                "path": str(self.path),
                "series": scene,
                "t": t,
                "c": c,
                "z": z,
                "region": [x0, y0, w, h],
            },
        )
        return self._decode(answer.payload or b"", scene, h, w)

    def _decode(self, data: bytes, scene: int, h: int, w: int) -> np.ndarray:
        info = self.scene_info(scene)
        series = self._series[scene]
        samples = info.samples_per_pixel
        dtype = np.dtype(info.dtype)
        if dtype.itemsize > 1:
            dtype = dtype.newbyteorder("<" if series["little_endian"] else ">")
        expected = h * w * samples * dtype.itemsize
        if len(data) != expected:
            msg = (
                f"{self.path.name}: Bio-Formats returned {len(data)} bytes for a "
                f"{h}x{w}x{samples} region of {dtype.name}; expected {expected}"
            )
            raise CorruptFileError(msg, path=self.path)
        flat = np.frombuffer(data, dtype=dtype)
        pixels: np.ndarray
        if samples == 1:
            pixels = flat.reshape(h, w)
        elif series["interleaved"]:
            pixels = flat.reshape(h, w, samples)
        else:
            pixels = flat.reshape(samples, h, w).transpose(1, 2, 0)
        # a view of the answer's bytes is read-only: copied only then (a byte swap or a
        # planar-to-interleaved reorder has already made a new array)
        return owned(np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("=")))

    def _check_level(self, scene: int, level: int) -> None:
        self.scene_info(scene)
        if level != 0:
            msg = f"{self.path.name}: level {level} does not exist; the fallback reads level 0 only"
            raise SceneNotFoundError(msg, path=self.path)

    def raw_metadata(self) -> Mapping[str, Any]:
        """Bio-Formats' OME-XML, its reader and format names, series sizes and used files."""
        return {
            "ome_xml": self._xml,
            "reader": self._reader_name,
            "format": self._format,
            "series": self._series,
            "used_files": list(self._used_files),
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (str(self.path), self.limits, self.options))


_CHAR_REF = re.compile(r"&#(x[0-9a-fA-F]+|[0-9]+);")


def _xml_1_0(xml: str) -> tuple[str, int]:
    """Bio-Formats' OME-XML without the character references XML 1.0 forbids, and their count.

    Why: Bio-Formats copies a file's free text (a NIfTI description) into the
    XML and escapes a NUL as ``&#0;``, which no XML 1.0 parser accepts; the
    rest of the document is sound, so only those references go.
    """
    dropped = 0

    def keep(match: re.Match[str]) -> str:
        nonlocal dropped
        text = match.group(1)
        code = int(text[1:], 16) if text[0] == "x" else int(text)
        allowed = (
            code in (0x9, 0xA, 0xD)
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF
        )
        if allowed:
            return match.group(0)
        dropped += 1
        return ""

    return _CHAR_REF.sub(keep, xml), dropped


def _reopen(path: str, limits: ReadLimits, options: PoolOptions) -> BioformatsReader:
    return BioformatsReader(path, limits=limits, options=options)
