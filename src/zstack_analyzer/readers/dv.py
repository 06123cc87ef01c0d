"""DeltaVision (``.dv``, ``.r3d``): the MRC variant GE/Applied Precision microscopes write.

Why natively: a DeltaVision file is a 1024-byte header, an optional extended
header (per-section ints and floats) and raw sections; the ``mrc`` package
(Talley Lambert) parses both headers, and the pixels are a memory map. Opening
costs a header read, where Bio-Formats costs a JVM (see bench/native_bench.py).

Layout, as the header states it (and as Bio-Formats' DeltavisionReader reads it):

- ``n_sections`` = Z x C x T, ``NumTimes`` (byte 180) is T, ``NumWaves``
  (byte 196) is C; Z is what remains, and must divide evenly;
- ``ImgSequence`` (byte 182) orders the sections: 0 = Z fastest, then T, then
  wave (ZTW); 1 = wave, Z, T (WZT); 2 = Z, wave, T (ZWT);
- ``dx, dy, dz`` (bytes 40-52) are the voxel size in µm; the wavelengths
  (bytes 198-208) are each channel's emission in nm;
- the extended header, when present, holds per section (among others) the
  time stamp (s), the exposure (s) and the excitation/emission wavelengths.

Every size is checked against the file before the data are mapped: a cut or
lying file is a :class:`~zstack_analyzer.errors.CorruptFileError`, never a
crash on a read past the end.
"""

from __future__ import annotations

import math
import re
import struct
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError, UnsupportedFormatError, ZstackError
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    ObjectiveInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.readers._section_stack import (
    HEADER_BYTES,
    SectionStackReader,
    data_block_offset,
    read_fixed_header,
)
from zstack_analyzer.readers._tiff_common import vendor_safe

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.limits import ReadLimits

__all__ = ["DeltaVisionReader"]

_DV_ID_LE = b"\xa0\xc0"
_DV_ID_BE = b"\xc0\xa0"
#: Pixel types the data block can hold (mode -> numpy code); 3 (complex int16) has no numpy type.
_MODES = {0: "u1", 1: "i2", 2: "f4", 4: "c8", 5: "i2", 6: "u2", 7: "i4"}
_SEQUENCES = {0: "ZTW", 1: "WZT", 2: "ZWT"}
#: The floats each section's extended header starts with (softWoRx; mrc's ExtHeaderFrame names).
_FRAME_FIELDS = (
    "photosensorReading",
    "timeStampSeconds",
    "stageXCoord",
    "stageYCoord",
    "stageZCoord",
    "minInten",
    "maxInten",
    "meanInten",
    "expTime",
    "ndFilter",
    "exWavelen",
    "emWavelen",
    "intenScaling",
    "energyConvFactor",
)


class DeltaVisionReader(SectionStackReader):
    """DeltaVision files: one scene, sections memory-mapped, headers parsed by ``mrc``.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("toxo.dv") as image:  # doctest: +SKIP
    ...     image.metadata().physical_size.z_um
    0.3
    """

    format_name: ClassVar[str] = "DeltaVision"
    suffixes: ClassVar[tuple[str, ...]] = (".dv", ".r3d")
    required_packages: ClassVar[tuple[str, ...]] = ("mrc",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """The DeltaVision id 0xC0A0 at byte 96 (either byte order)."""
        return len(head) >= 98 and head[96:98] in (_DV_ID_LE, _DV_ID_BE)

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        try:
            self._open()
        except ZstackError:
            self.close()
            raise
        except (ValueError, KeyError, IndexError, TypeError, OSError, struct.error) as exc:
            self.close()
            msg = f"{self.path.name}: invalid DeltaVision structure: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc

    def _open(self) -> None:
        path = self.path
        head = read_fixed_header(path, "DeltaVision")
        bo = "<" if head[96:98] == _DV_ID_LE else ">"
        nx, ny, n_sections, mode = struct.unpack(bo + "4i", head[:16])
        (ext_len,) = struct.unpack(bo + "i", head[92:96])
        n_ints, n_floats = struct.unpack(bo + "2h", head[128:132])
        n_t, sequence = struct.unpack(bo + "2h", head[180:184])
        (n_c,) = struct.unpack(bo + "h", head[196:198])
        if mode not in _MODES:
            if mode == 3:
                msg = f"{path.name}: DeltaVision pixel type 3 (complex int16) is not supported"
                raise UnsupportedFormatError(msg, path=path)
            msg = f"{path.name}: DeltaVision pixel type {mode} is not one the format defines; the header is corrupt"
            raise CorruptFileError(msg, path=path)
        if min(nx, ny, n_sections) <= 0 or n_t < 0 or n_c < 0:
            msg = f"{path.name}: the header declares {nx} x {ny} pixels, {n_sections} sections, T={n_t}, C={n_c}; the file is corrupt"
            raise CorruptFileError(msg, path=path)
        size_t, size_c = max(n_t, 1), max(n_c, 1)
        if n_sections % (size_t * size_c):
            msg = f"{path.name}: {n_sections} sections do not divide into T={size_t} x C={size_c}; the header is corrupt"
            raise CorruptFileError(msg, path=path)
        size_z = n_sections // (size_t * size_c)
        if sequence not in _SEQUENCES:
            msg = f"{path.name}: image sequence {sequence} is not one DeltaVision defines (0, 1, 2)"
            raise CorruptFileError(msg, path=path)
        dtype = np.dtype(bo + _MODES[mode])
        info = SceneInfo(
            index=0,
            size_t=size_t,
            size_c=size_c,
            size_z=size_z,
            size_y=ny,
            size_x=nx,
            dtype=dtype.newbyteorder("=").name,
        )
        self.check_shape(info.shape, dtype)
        offset = data_block_offset(
            path,
            extended_bytes=ext_len,
            data_bytes=nx * ny * dtype.itemsize * n_sections,
            limits=self.limits,
            format_name="DeltaVision",
        )
        self._byteorder = bo
        self._header, self._extended = self._parse(n_ints, n_floats, ext_len, n_sections)
        self._sequence = _SEQUENCES[sequence]
        self._info = info
        self._sections = np.memmap(
            path, dtype=dtype, mode="r", offset=offset, shape=(n_sections, ny, nx)
        )
        z_n, c_n, t_n = int(size_z), int(size_c), int(size_t)
        order = self._sequence

        def section(t: int, c: int, z: int) -> int:
            if order == "ZTW":
                return (c * t_n + t) * z_n + z
            if order == "WZT":
                return (t * z_n + z) * c_n + c
            return (t * c_n + c) * z_n + z  # ZWT

        self._section_of = section

    def _parse(
        self, n_ints: int, n_floats: int, ext_len: int, n_sections: int
    ) -> tuple[dict[str, Any], list[dict[str, float]]]:
        """The header through ``mrc`` (its own parse, closed at once) and the extended header's frames.

        Why close it at once: ``DVFile`` maps the data itself; we keep only its
        parsed headers and map the (checked) data block ourselves.
        """
        import mrc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dv = mrc.DVFile(str(self.path))
        try:
            header = dv.hdr._asdict()
            header.pop("blank", None)
            header["lens"] = dv.lens or None
            header["title"] = _titles(getattr(dv, "_title", b""))
        finally:
            dv.close()
        return header, self._frames(n_ints, n_floats, ext_len, n_sections)

    def _frames(
        self, n_ints: int, n_floats: int, ext_len: int, n_sections: int
    ) -> list[dict[str, float]]:
        """Per section, the first 14 floats of the extended header (time stamp, exposure, wavelengths).

        Why not ``mrc``'s ``ExtHeader.frame``: it unpacks in the machine's byte
        order (a big-endian file's values come out as 1e-41) and takes the
        floats from the 9th number whatever NumIntegers says (a file with other
        than 8 ints a section fails to parse). Here each section's floats start
        after its ``n_ints`` ints, in the header's byte order. Read only when
        every section's block is within the declared extended header, which
        :func:`data_block_offset` checked against the file and the metadata limit.
        """
        per_section = (n_ints + n_floats) * 4
        if n_ints < 0 or n_floats < len(_FRAME_FIELDS) or per_section * n_sections > ext_len:
            return []
        with self.path.open("rb") as fh:
            fh.seek(HEADER_BYTES)
            block = fh.read(per_section * n_sections)
        layout = struct.Struct(f"{self._byteorder}{len(_FRAME_FIELDS)}f")
        return [
            dict(
                zip(
                    _FRAME_FIELDS,
                    layout.unpack_from(block, i * per_section + n_ints * 4),
                    strict=True,
                )
            )
            for i in range(n_sections)
        ]

    # ------------------------------------------------------------------ metadata
    def _build_metadata(self) -> ImageMetadata:
        info = self._info
        hdr = self._header
        provenance: dict[str, str] = {
            "sizes": "DeltaVision header (n_sections, NumTimes, NumWaves, ImgSequence)"
        }
        warnings_: list[str] = []
        size = {}
        for axis in ("x", "y", "z"):
            value = _positive(_decimal(hdr.get(f"d{axis}")))
            if axis == "z" and info.size_z == 1:
                value = None
            size[axis] = value
            if value is not None:
                provenance[f"physical_size.{axis}_um"] = f"DeltaVision header d{axis} (µm)"
        waves = [hdr.get(f"wave{i}") for i in range(1, 6)]
        frames = self._extended
        channels = []
        from_frames = False  # an emission the header lacks, taken from the extended header
        for c in range(info.size_c):
            emission = _positive(waves[c]) if c < len(waves) else None
            excitation = exposure = None
            if frames:
                frame = frames[self._section_of(0, c, 0)]
                excitation = _positive(frame.get("exWavelen"))
                exposure_s = _positive(frame.get("expTime"))
                exposure = exposure_s * 1000.0 if exposure_s is not None else None
                if emission is None:
                    emission = _positive(frame.get("emWavelen"))
                    from_frames = from_frames or emission is not None
            channels.append(
                ChannelInfo(
                    index=c, emission_nm=emission, excitation_nm=excitation, exposure_ms=exposure
                )
            )
        if any(ch.emission_nm for ch in channels):
            provenance["channels[].emission_nm"] = (
                "DeltaVision header wavelengths (nm), else extended header emWavelen"
                if from_frames
                else "DeltaVision header wavelengths (nm)"
            )
        if any(ch.excitation_nm for ch in channels):
            provenance["channels[].excitation_nm"] = "DeltaVision extended header exWavelen"
        if any(ch.exposure_ms for ch in channels):
            provenance["channels[].exposure_ms"] = "DeltaVision extended header expTime (s)"
        interval = None
        if frames and info.size_t > 1:
            stamps = [
                frames[self._section_of(t, 0, 0)].get("timeStampSeconds")
                for t in range(info.size_t)
            ]
            steps = np.diff(np.asarray(stamps, dtype=float))
            if steps.size and math.isfinite(float(steps.mean())) and float(steps.mean()) > 0:
                interval = float(steps.mean())
                provenance["time_interval_s"] = (
                    "DeltaVision extended header timeStampSeconds (mean step)"
                )
        objective = _objective(hdr.get("lens"))
        if objective is not None:
            provenance["objective"] = "DeltaVision header LensNum (mrc's lens table)"
        vendor = {
            "header": hdr,
            "image_sequence": self._sequence,
            "byte_order": "little" if self._byteorder == "<" else "big",
            "extended_header_frames": len(frames),
        }
        return self.scene_metadata(
            info,
            physical_size=PhysicalSize(x_um=size["x"], y_um=size["y"], z_um=size["z"]),
            time_interval_s=interval,
            channels=channels,
            objective=objective,
            provenance=provenance,
            warnings=warnings_,
            vendor_metadata=vendor_safe(vendor),
        )

    def raw_metadata(self) -> dict[str, Any]:
        """The header fields as ``mrc`` parsed them, and the extended header's frames."""
        return {"header": dict(self._header), "extended_header": list(self._extended)}


_LENS = re.compile(r"(\d+(?:\.\d+)?)\s*X\s*/\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_IMMERSION = {"oil": "Oil", "water": "Water", "sil": "Silicone", "glyc": "Glycerol", "air": "Air"}


def _objective(lens: Any) -> ObjectiveInfo | None:
    """The lens mrc's table names for LensNum ("Olympus 100X/1.35, U Plan Apo, IX70")."""
    if not lens:
        return None
    name = str(lens).strip()
    found = _LENS.search(name)
    immersion = next((v for k, v in _IMMERSION.items() if k in name.lower()), None)
    return ObjectiveInfo(
        name=name,
        magnification=float(found.group(1)) if found else None,
        numerical_aperture=float(found.group(2)) if found else None,
        immersion=immersion,
    )


def _decimal(value: Any) -> float | None:
    """A float32 header value as the decimal its writer meant (0.13262, not 0.13262000679969788).

    Why: the header stores float32; widening it to float64 adds digits the
    instrument never wrote, and every other reader (Bio-Formats included)
    reports the shortest decimal that round-trips.
    """
    try:
        return float(str(np.float32(value)))
    except (TypeError, ValueError, OverflowError):
        return None


def _titles(raw: Any) -> list[str]:
    """The ten 80-character title lines, without the empty ones."""
    data = bytes(raw) if isinstance(raw, bytes | bytearray) else b""
    lines = [
        data[i : i + 80].split(b"\x00")[0].decode("latin-1").strip()
        for i in range(0, len(data), 80)
    ]
    return [line for line in lines if line]


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
