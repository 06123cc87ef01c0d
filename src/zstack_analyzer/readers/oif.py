"""Olympus FluoView OIF (settings file + ``.files`` folder) and OIB (the same in one OLE file).

Why oiffile for the containers but our own plane map: oiffile reads the
UTF-16 settings and the OLE compound file, but its series glue every TIFF of
a folder into one array. FluoView writes one single-page TIFF per plane,
named by its indices (``s_C001Z003T002.tif``); we map (t, c, z) to that file
and decode it alone, so a plane read opens one small TIFF (lazy, one chunk per
plane). Sizes come from the ``[Axis n Parameters Common]`` sections (a
MaxSize of 0 is an axis the file lacks), and the plane files must agree.

Calibration: X/Y from ``[Reference Image Parameter] Width/HeightConvertValue``
with their units; Z from the Z axis' Start/EndPosition over its steps (nm in
FluoView files). Channels from ``[Channel n Parameters]``: the name is ``CH Name``,
the fluorophore ``DyeName`` (``None`` there is no dye), a ``TD`` channel is transmitted
light (as Bio-Formats reads FV1000 files); the objective from
``[Acquisition Parameters Common]``.

An OIB's sector chains are checked before oiffile follows them: a chain that
loops or leaves the file would otherwise hang or crash its reader.
"""

from __future__ import annotations

import functools
import math
import re
import struct
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError, ZstackError
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    ObjectiveInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.readers._base import ImageReader, planes_to_dask
from zstack_analyzer.readers._tiff_common import length_to_um, vendor_safe

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import dask.array as da

    from zstack_analyzer.filesets import FileSet
    from zstack_analyzer.limits import ReadLimits

__all__ = ["OibReader", "OifReader"]

#: The companion folder of ``<name>.oif`` is ``<name>.oif.files``.
OIF_FILES_SUFFIX = ".files"
#: Folder levels above a file searched for an ``.oif.files`` folder.
_OIF_DEPTH = 3

_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_UTF16_SECTION = b"\xff\xfe[\x00"
_PLANE_FILE = re.compile(r"^s_((?:[A-Z]\d+)+)\.tif$", re.IGNORECASE)
_INDEX = re.compile(r"([A-Z])(\d+)", re.IGNORECASE)
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0}
_IMMERSION = {"O": "Oil", "W": "Water", "SIL": "Silicone", "GLY": "Glycerol"}


class _OlympusReader(ImageReader):
    """Shared body of the OIF and OIB readers; one scene, one single-page TIFF per plane."""

    required_packages: ClassVar[tuple[str, ...]] = ("oiffile", "tifffile")

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        self._io_lock = threading.RLock()
        self._metadata_cache: ImageMetadata | None = None
        try:
            self._precheck()
            self._oif = self._open()
            self.close_on_release(self._oif.close)
            self.settings: Mapping[str, Any] = self._oif.mainfile
            self._info, self._planes = self._layout()
            self.check_shape(self._info.shape, self._info.dtype)
        except ZstackError:
            self.close()
            raise
        except (
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            AttributeError,
            OSError,
            struct.error,
            UnicodeError,
            NotImplementedError,
            RuntimeError,
        ) as exc:  # oiffile raises all of these on a damaged file
            self.close()
            msg = f"{self.path.name}: invalid {self.format_name} structure: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc

    def _precheck(self) -> None:
        """Checks before oiffile touches the file (none for OIF)."""

    def _open(self) -> Any:
        import oiffile

        return oiffile.OifFile(self.path)

    # ------------------------------------------------------------------ layout
    def _axis(self, code: str) -> Mapping[str, Any] | None:
        for n in range(16):
            section = self.settings.get(f"Axis {n} Parameters Common")
            if section is None:
                break
            if str(section.get("AxisCode", "")).upper() == code:
                return section  # type: ignore[no-any-return]
        return None

    def _size(self, code: str) -> int:
        section = self._axis(code)
        if section is None:
            return 1
        size = int(section.get("MaxSize", 0) or 0)
        if size < 0:
            msg = f"{self.path.name}: axis {code} declares {size} planes"
            raise CorruptFileError(msg, path=self.path)
        return max(size, 1)

    def _layout(self) -> tuple[SceneInfo, dict[tuple[int, int, int], str]]:
        sizes = {code: self._size(code) for code in "XYCZT"}
        extra = {code: self._size(code) for code in "ALP" if self._size(code) > 1}
        planes: dict[tuple[int, int, int], str] = {}
        for name in self._oif.glob("*.tif"):
            match = _PLANE_FILE.match(Path(name).name)
            if not match:
                continue
            index = {k.upper(): int(v) - 1 for k, v in _INDEX.findall(match.group(1))}
            if any(index.get(code, 0) != 0 for code in extra):
                continue  # beyond TCZ: index 0 only
            key = (index.get("T", 0), index.get("C", 0), index.get("Z", 0))
            if not all(
                0 <= k < n for k, n in zip(key, (sizes["T"], sizes["C"], sizes["Z"]), strict=True)
            ):
                msg = f"{self.path.name}: plane file {name} lies outside the declared T={sizes['T']} C={sizes['C']} Z={sizes['Z']}"
                raise CorruptFileError(msg, path=self.path)
            planes[key] = name
        if not planes:
            msg = f"{self.path.name}: no plane files (s_C001Z001....tif) found"
            raise CorruptFileError(msg, path=self.path)
        bits = int(
            self.settings.get("Reference Image Parameter", {}).get("ValidBitCounts", 16) or 16
        )
        info = SceneInfo(
            index=0,
            name=str(self._oif.filesystem.name or "") or None,
            size_t=sizes["T"],
            size_c=sizes["C"],
            size_z=sizes["Z"],
            size_y=sizes["Y"],
            size_x=sizes["X"],
            dtype="uint16" if bits > 8 else "uint8",
            extra_dims=extra,
        )
        return info, planes

    # ------------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """One scene: the acquisition."""
        return [self._info]

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy T,C,Z,Y,X array; one chunk per plane file."""
        self.scene_info(scene)
        if level != 0:
            self.level_count(scene)
            from zstack_analyzer.errors import SceneNotFoundError

            msg = f"{self.path.name}: pyramid level {level} does not exist; it has 1"
            raise SceneNotFoundError(msg, path=self.path)
        info = self._info
        read = functools.partial(self._read, scene)
        return planes_to_dask(read, info.shape, info.dtype, name=type(self).__name__.lower())

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X plane, decoded from its own TIFF."""
        self.check_plane_index(scene, t, c, z)
        return self._read(scene, t, c, z)

    def _read(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        import tifffile

        self.check_open()
        info = self._info
        name = self._planes.get((t, c, z))
        if name is None:
            return np.zeros((info.size_y, info.size_x), info.dtype)
        try:
            with self._io_lock:
                fh = self._oif.open_file(name)
            try:
                with tifffile.TiffFile(fh, name=Path(name).name) as tif:
                    data = tif.pages.first.asarray()
            finally:
                fh.close()
        except Exception as exc:
            msg = (
                f"{self.path.name}: cannot read plane t={t} c={c} z={z} ({Path(name).name}): {exc}"
            )
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        data = np.asarray(data)
        if data.shape != (info.size_y, info.size_x):
            msg = f"{self.path.name}: {Path(name).name} holds {data.shape}, the settings declare {(info.size_y, info.size_x)}"
            raise CorruptFileError(msg, path=self.path)
        return np.ascontiguousarray(data.astype(info.dtype, copy=False))

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata from the main settings file."""
        info = self.scene_info(scene)
        if self._metadata_cache is None:
            try:
                self._metadata_cache = self._build_metadata(info)
            except ZstackError:
                raise
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                msg = f"{self.path.name}: unreadable {self.format_name} settings: {exc}"
                raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        return self._metadata_cache.model_copy(deep=True)

    def _build_metadata(self, info: SceneInfo) -> ImageMetadata:
        settings = self.settings
        warnings: list[str] = []
        provenance: dict[str, str] = {
            "sizes": f"{self.format_name} Axis n Parameters Common/MaxSize"
        }
        reference = settings.get("Reference Image Parameter", {})
        x_um = _convert(reference.get("WidthConvertValue"), reference.get("WidthUnit"))
        y_um = _convert(reference.get("HeightConvertValue"), reference.get("HeightUnit"))
        if x_um is not None:
            provenance["physical_size.x_um"] = (
                f"{self.format_name} Reference Image Parameter/WidthConvertValue"
            )
        if y_um is not None:
            provenance["physical_size.y_um"] = (
                f"{self.format_name} Reference Image Parameter/HeightConvertValue"
            )
        z_um = None
        z_axis = self._axis("Z")
        if z_axis is not None and info.size_z > 1:
            span = _number(z_axis.get("EndPosition"))
            start = _number(z_axis.get("StartPosition"))
            factor = length_to_um(str(z_axis.get("UnitName", "")))
            if span is not None and start is not None and factor is not None and span != start:
                z_um = (span - start) / (info.size_z - 1) * factor
                provenance["physical_size.z_um"] = f"{self.format_name} Z axis Start/EndPosition"
        interval = None
        t_axis = self._axis("T")
        if t_axis is not None and info.size_t > 1:
            end, start = _number(t_axis.get("EndPosition")), _number(t_axis.get("StartPosition"))
            unit = _TIME_UNITS.get(str(t_axis.get("UnitName", "")).strip().lower())
            if end is not None and start is not None and unit is not None and end > start:
                interval = (end - start) / (info.size_t - 1) * unit
                provenance["time_interval_s"] = f"{self.format_name} T axis Start/EndPosition"
        channels = [
            _channel(c, settings.get(f"Channel {c + 1} Parameters", {})) for c in range(info.size_c)
        ]
        section = f"{self.format_name} Channel n Parameters"
        if any(ch.name for ch in channels):
            provenance["channels[].name"] = f"{section}/CH Name"
        if any(ch.fluorophore for ch in channels):
            provenance["channels[].fluorophore"] = f"{section}/DyeName"
        if any(ch.illumination for ch in channels):
            provenance["channels[].illumination"] = (
                f"{section}/CH Name: a TD (transmitted-light detector) channel is Transmitted"
            )
        common = settings.get("Acquisition Parameters Common", {})
        objective = None
        lens = _text(common.get("ObjectiveLens Name"))
        magnification = _positive(common.get("Magnification"))
        aperture = _positive(common.get("ObjectiveLens NAValue"))
        if lens or magnification or aperture:
            immersion = None
            if lens:
                tokens = lens.upper().split()
                immersion = next((v for k, v in _IMMERSION.items() if k in tokens), None)
            objective = ObjectiveInfo(
                name=lens,
                magnification=magnification,
                numerical_aperture=aperture,
                immersion=immersion,
            )
        acquired_local = None
        captured = _text(common.get("ImageCaputreDate")) or _text(common.get("ImageCaptureDate"))
        if captured:
            try:
                acquired_local = datetime.strptime(captured, "%Y-%m-%d %H:%M:%S")
                provenance["acquired_at_local"] = f"{self.format_name} ImageCaputreDate"
                warnings.append(
                    "acquisition time zone unknown: acquired_at_local holds the time as written"
                )
            except ValueError:
                warnings.append(f"unreadable capture date {captured!r}")
        missing = math.prod((info.size_t, info.size_c, info.size_z)) - len(self._planes)
        if missing > 0:
            warnings.append(f"{missing} plane file(s) missing: those planes read as 0")
        if info.extra_dims:
            warnings.append(f"axes {info.extra_dims} beyond TCZYX are read at index 0")
        vendor = {k: v for k, v in settings.items() if k != "ColorLUTData"}
        return self.scene_metadata(
            info,
            physical_size=PhysicalSize(x_um=x_um, y_um=y_um, z_um=z_um),
            time_interval_s=interval,
            channels=channels,
            objective=objective,
            acquired_at_local=acquired_local,
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=vendor_safe(vendor),
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """The main settings file as oiffile parsed it (sections of key/value pairs)."""
        return dict(self.settings.items())


class OifReader(_OlympusReader):
    """Olympus OIF: a UTF-16 settings file beside its ``<name>.oif.files`` folder.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("cells.oif") as image:  # doctest: +SKIP
    ...     image.metadata().channels[0].name
    """

    format_name: ClassVar[str] = "OIF"
    suffixes: ClassVar[tuple[str, ...]] = (".oif",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """A UTF-16 settings file whose sections are FluoView's (or named .oif)."""
        if not head.startswith(_UTF16_SECTION):
            return False
        text = head[2:].decode("utf-16-le", "ignore")
        return path.suffix.lower() == ".oif" or "Parameters Common]" in text

    @classmethod
    def file_set(cls, path: Path, limits: ReadLimits) -> FileSet | None:
        """The settings file and every file in its ``<name>.oif.files`` folder."""
        from zstack_analyzer.errors import LimitExceededError
        from zstack_analyzer.filesets import MAX_SET_FILES, FileSet

        folder = path.parent / f"{path.name}{OIF_FILES_SUFFIX}"
        if not folder.is_dir() or folder.is_symlink():
            return None
        members = []
        for p in folder.rglob("*"):
            if p.is_file():
                members.append(p)
                if len(members) > MAX_SET_FILES:
                    msg = f"{path.name}: over {MAX_SET_FILES:,} files in {folder.name}"
                    raise LimitExceededError(msg, path=path)
        return FileSet.of(path, members)

    @classmethod
    def main_for_member(cls, path: Path) -> Path | None:
        """A file under ``<name>.oif.files/`` belongs to ``<name>.oif`` beside that folder."""
        for parent in list(path.parents)[:_OIF_DEPTH]:
            if parent.name.lower().endswith(".oif" + OIF_FILES_SUFFIX):
                main = parent.with_name(parent.name[: -len(OIF_FILES_SUFFIX)])
                return main if main.is_file() else None
        return None


class OibReader(_OlympusReader):
    """Olympus OIB: the OIF settings and plane TIFFs inside one OLE compound file.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("cells.oib") as image:  # doctest: +SKIP
    ...     image.metadata().size_z
    """

    format_name: ClassVar[str] = "OIB"
    suffixes: ClassVar[tuple[str, ...]] = (".oib",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """An OLE compound file named .oib or holding an ``OibInfo.txt`` stream."""
        if not head.startswith(_CFB_MAGIC):
            return False
        return path.suffix.lower() == ".oib" or "OibInfo.txt".encode("utf-16-le") in head

    def _precheck(self) -> None:
        check_compound_file(self.path)


def check_compound_file(path: Path) -> None:
    """Refuse an OLE file whose FAT, directory or mini-FAT chain loops or leaves the file.

    Why: oiffile follows these chains with ``while sector != END`` and would
    loop forever on a cycle, or read garbage past the end of a cut file.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.read(512)
        if len(header) < 512 or header[:8] != _CFB_MAGIC:
            msg = f"{path.name}: not an OLE compound file (header cut short or wrong magic)"
            raise CorruptFileError(msg, path=path)
        if header[28:30] != b"\xfe\xff":
            msg = f"{path.name}: OLE byte-order mark is not little-endian; the file is corrupt"
            raise CorruptFileError(msg, path=path)
        shift = struct.unpack("<H", header[30:32])[0]
        if shift not in (9, 12):
            msg = f"{path.name}: OLE sector size 2**{shift} is not supported"
            raise CorruptFileError(msg, path=path)
        sector = 1 << shift
        fat_len, dir_start = struct.unpack("<II", header[44:52])
        minifat_start, minifat_len, _difat_start, difat_len = struct.unpack("<IIII", header[60:76])
        n_sectors = max((size - sector) // sector, 0)
        difat = list(struct.unpack("<109I", header[76:512]))[: min(fat_len, 109)]
        if fat_len > 109 or difat_len:
            msg = f"{path.name}: OLE file with {fat_len} FAT sectors (over 109, extended DIFAT) is not supported"
            raise CorruptFileError(msg, path=path)
        fat: list[int] = []
        for sid in difat:
            if sid >= n_sectors:
                msg = f"{path.name}: a FAT sector lies past the end of the file; the file is truncated"
                raise CorruptFileError(msg, path=path)
            fh.seek(sector + sid * sector)
            fat.extend(struct.unpack(f"<{sector // 4}I", fh.read(sector)))
    for name, start in (("directory", dir_start), ("mini-FAT", minifat_start)):
        _check_chain(path, fat, start, n_sectors, name)
    del minifat_len


def _check_chain(path: Path, fat: list[int], start: int, n_sectors: int, name: str) -> None:
    end = 0xFFFFFFFE
    seen: set[int] = set()
    sid = start
    while sid != end:
        if sid in (0xFFFFFFFF,) and not seen:
            return  # no such chain
        if sid >= n_sectors or sid >= len(fat) or sid in seen:
            msg = f"{path.name}: the OLE {name} chain loops or leaves the file; the file is corrupt or truncated"
            raise CorruptFileError(msg, path=path)
        seen.add(sid)
        sid = fat[sid]


#: DyeName values FluoView writes for a channel without a dye.
_NO_DYE = {"none", "n/a", "-"}


def _channel(index: int, section: Mapping[str, Any]) -> ChannelInfo:
    """One ``[Channel n Parameters]`` section, read the way Bio-Formats' FV1000 reader does.

    Why not DyeName as the name: FluoView's channel is ``CH Name`` (``CH1``, ``TD1``);
    ``DyeName`` is the fluorophore chosen for it, and ``None`` there means no dye,
    never a dye called "None". A ``TD`` channel is the transmitted-light detector.
    """
    name = _text(section.get("CH Name"))
    dye = _text(section.get("DyeName"))
    if dye is not None and dye.lower() in _NO_DYE:
        dye = None
    transmitted = name is not None and name.upper().startswith("TD")
    return ChannelInfo(
        index=index,
        name=name,
        fluorophore=dye,
        emission_nm=_positive(section.get("EmissionWavelength")),
        excitation_nm=_positive(section.get("ExcitationWavelength")),
        illumination="Transmitted" if transmitted else None,
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _convert(value: Any, unit: Any) -> float | None:
    number = _positive(value)
    factor = length_to_um(str(unit)) if unit not in (None, "") else 1.0  # FluoView writes µm
    return None if number is None or factor is None else number * factor


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, int | float):
        return None if value is None else str(value)
    text = str(value).strip()
    return text or None
