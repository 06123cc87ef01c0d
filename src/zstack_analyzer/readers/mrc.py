"""MRC (``.mrc``, ``.st``, ``.map``, ``.rec``, ``.mrcs``): electron microscopy maps and stacks.

Why natively: an MRC file is a 1024-byte header, an optional extended header
(``nsymbt`` bytes: FEI, SerialEM, CCP4 symmetry records) and raw sections.
``mrcfile`` (CCP-EM, the format's reference library) parses and validates the
header; the pixels are a memory map of the checked data block.

Conventions (MRC2014, as Bio-Formats' MRCReader reads the same files):

- ``nx, ny, nz``: columns, rows, sections. Sections are Z, except in a volume
  stack (space group 401-630) where ``mz`` sections make one volume and the
  volumes are T;
- the pixel spacing is ``cella / (mx, my, mz)`` in Å (µm here); a zero sampling
  or cell length means no calibration;
- mode 0 is int8 (MRC2014, as mrcfile reads it), except in a file IMOD
  stamped (``imodStamp`` 1146047817 at byte 152) without the signed-bytes flag
  (bit 0 of ``imodFlags``, byte 156): IMOD wrote unsigned bytes there, so
  uint8. Bio-Formats reads every mode-0 file as uint8;
- 1 int16, 2 float32, 6 uint16, 12 float16, 4 complex64; mode 3 (complex
  int16) and 101 (packed 4-bit) are refused as unsupported.
"""

from __future__ import annotations

import math
import struct
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError, UnsupportedFormatError, ZstackError
from zstack_analyzer.metadata import ChannelInfo, ImageMetadata, PhysicalSize, SceneInfo
from zstack_analyzer.readers._section_stack import (
    SectionStackReader,
    data_block_offset,
    read_fixed_header,
)
from zstack_analyzer.readers._tiff_common import vendor_safe

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.limits import ReadLimits

__all__ = ["MrcReader"]

ANGSTROM_TO_UM = 1e-4
IMOD_STAMP = 1146047817
_MODES = {0: "i1", 1: "i2", 2: "f4", 4: "c8", 6: "u2", 12: "f2"}
_SUFFIXES = (".mrc", ".st", ".map", ".rec", ".mrcs", ".ali")


class MrcReader(SectionStackReader):
    """MRC files: one scene, header by ``mrcfile``, sections memory-mapped.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("scan.mrc") as image:  # doctest: +SKIP
    ...     image.metadata().physical_size.x_um
    """

    format_name: ClassVar[str] = "MRC"
    suffixes: ClassVar[tuple[str, ...]] = _SUFFIXES
    required_packages: ClassVar[tuple[str, ...]] = ("mrcfile",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """``MAP`` at byte 208 (MRC2000 and later), or an MRC name with a plausible old header."""
        if len(head) < 224:
            return False
        if head[208:211] == b"MAP":
            return True
        if not path.name.lower().endswith(_SUFFIXES):
            return False
        for bo in "<>":
            nx, ny, nz, mode = struct.unpack(bo + "4i", head[:16])
            if mode in _MODES and all(0 < n <= 1 << 20 for n in (nx, ny, nz)):
                return True
        return False

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        self._notes: list[str] = []
        try:
            self._open()
        except ZstackError:
            self.close()
            raise
        except (ValueError, KeyError, IndexError, TypeError, OSError, struct.error) as exc:
            self.close()
            msg = f"{self.path.name}: invalid MRC structure: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc

    def _byte_order(self, head: bytes) -> str:
        """From the machine stamp (byte 212): 0x44 little-endian, 0x11 big; else by plausibility."""
        if head[212] == 0x44:
            return "<"
        if head[212] == 0x11:
            return ">"
        (mode,) = struct.unpack("<i", head[12:16])
        return "<" if mode in _MODES or mode in (3, 101) else ">"

    def _open(self) -> None:
        path = self.path
        head = read_fixed_header(path, "MRC")
        bo = self._byte_order(head)
        nx, ny, nz, mode = struct.unpack(bo + "4i", head[:16])
        (ispg, nsymbt) = struct.unpack(bo + "2i", head[88:96])
        mx, my, mz = struct.unpack(bo + "3i", head[28:40])
        if mode in (3, 101):
            kind = "complex int16" if mode == 3 else "packed 4-bit"
            msg = f"{path.name}: MRC mode {mode} ({kind}) is not supported"
            raise UnsupportedFormatError(msg, path=path)
        if mode not in _MODES:
            msg = (
                f"{path.name}: MRC mode {mode} is not one the format defines; the header is corrupt"
            )
            raise CorruptFileError(msg, path=path)
        if min(nx, ny, nz) <= 0:
            msg = f"{path.name}: the header declares {nx} x {ny} x {nz} voxels; the file is corrupt"
            raise CorruptFileError(msg, path=path)
        size_t, size_z = 1, nz
        if 401 <= ispg <= 630 and 0 < mz < nz and nz % mz == 0:
            size_t, size_z = nz // mz, mz
        code = _MODES[mode]
        imod_stamp, imod_flags = struct.unpack(bo + "2i", head[152:160])
        if mode == 0 and imod_stamp == IMOD_STAMP and not imod_flags & 1:
            code = "u1"
            self._notes.append("IMOD file without the signed-bytes flag: mode 0 read as uint8")
        dtype = np.dtype(bo + code)
        info = SceneInfo(
            index=0,
            size_t=size_t,
            size_z=size_z,
            size_y=ny,
            size_x=nx,
            dtype=dtype.newbyteorder("=").name,
        )
        self.check_shape(info.shape, dtype)
        offset = data_block_offset(
            path,
            extended_bytes=nsymbt,
            data_bytes=nx * ny * nz * dtype.itemsize,
            limits=self.limits,
            format_name="MRC",
        )
        self._header = self._parse()
        self._mxyz = (mx, my, mz)
        self._info = info
        self._sections = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(nz, ny, nx))
        self._section_of = lambda t, c, z: t * size_z + z

    def _parse(self) -> dict[str, Any]:
        """The header through ``mrcfile`` (header and extended header only; it validates in passing).

        Why permissive: files from real instruments often break a rule of the
        standard (a stale ``rms``, no machine stamp) while their data are fine;
        mrcfile's complaints become warnings of the record instead of a refusal.
        """
        import mrcfile

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mrcfile.open(self.path, mode="r", permissive=True, header_only=True) as mrc:
                header = mrc.header
                fields = {name: _plain(header[name]) for name in header.dtype.names or ()}
                extended = mrc.extended_header
                fields["extended_header_bytes"] = int(getattr(extended, "nbytes", 0) or 0)
                fields["voxel_size_angstrom"] = [float(v) for v in mrc.voxel_size.tolist()]
        self._notes += [f"mrcfile: {w.message}" for w in caught]
        labels = fields.pop("label", [])
        count = int(fields.get("nlabl", 0) or 0)
        fields["labels"] = [str(v).strip() for v in list(labels)[: max(0, min(count, 10))]]
        return fields

    # ------------------------------------------------------------------ metadata
    def _build_metadata(self) -> ImageMetadata:
        info = self._info
        hdr = self._header
        provenance = {"sizes": "MRC header nx, ny, nz (mz per volume in a volume stack)"}
        cell = hdr.get("cella") or [0.0, 0.0, 0.0]
        size: dict[str, float | None] = {}
        for i, axis in enumerate("xyz"):
            sampling = self._mxyz[i]
            # cella is float32: its shortest decimal is what the writer meant (908.661 Å).
            length = _number(str(np.float32(cell[i]))) if i < len(cell) else None
            value = None
            if sampling > 0 and length is not None and length > 0:
                value = length / sampling * ANGSTROM_TO_UM
            if axis == "z" and info.size_z == 1:
                value = None
            size[axis] = value
            if value is not None:
                provenance[f"physical_size.{axis}_um"] = f"MRC header cella.{axis} / m{axis} (Å)"
        vendor = {
            key: hdr.get(key)
            for key in (
                "mode",
                "ispg",
                "exttyp",
                "nversion",
                "origin",
                "dmin",
                "dmax",
                "dmean",
                "labels",
            )
        }
        vendor["extended_header_bytes"] = hdr.get("extended_header_bytes")
        return self.scene_metadata(
            info,
            physical_size=PhysicalSize(x_um=size["x"], y_um=size["y"], z_um=size["z"]),
            channels=[ChannelInfo(index=0)],
            provenance=provenance,
            warnings=list(self._notes),
            vendor_metadata=vendor_safe(vendor),
        )

    def raw_metadata(self) -> dict[str, Any]:
        """Every header field as mrcfile parsed it (the extended header's size, not its bytes)."""
        return dict(self._header)


def _plain(value: Any) -> Any:
    """A numpy record field as plain Python (bytes decoded, records as lists)."""
    array = np.asarray(value)
    if array.dtype.names:
        return [_plain(array[name]) for name in array.dtype.names]
    if array.dtype.kind in "SV":
        return (
            [bytes(v).split(b"\x00")[0].decode("latin-1") for v in array.ravel()]
            if array.ndim
            else bytes(array.item()).split(b"\x00")[0].decode("latin-1")
        )
    return array.tolist()


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
