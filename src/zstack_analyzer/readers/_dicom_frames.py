"""Where the frames of one DICOM file lie, and how one frame is decoded.

Why our own frame index rather than ``Dataset.pixel_array``: pydicom decodes
every frame at once, and a whole-slide level holds thousands of tiles. We parse
the header once (pixels excluded), locate the Pixel Data element, and keep
either the start of native data (frame k at a fixed stride) or the offset of
each compressed fragment. A tile read then seeks to one frame and decodes it
alone: JPEG, JPEG-LS and JPEG 2000 with imagecodecs (already a core
dependency, and it releases the GIL), RLE Lossless as PackBits segments.
Every size is checked against the file before anything is read, so a cut or
lying file fails with :class:`CorruptFileError` instead of a short read.
"""

from __future__ import annotations

import math
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.errors import CorruptFileError, UnsupportedFormatError
from zstack_analyzer.readers._base import owned

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DicomFrames", "read_header"]

PIXEL_DATA = 0x7FE00010
_ITEM = 0xFFFEE000
_NATIVE = {
    "1.2.840.10008.1.2": "<",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": "<",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2": ">",  # Explicit VR Big Endian (retired, still found)
}
_CODEC = {
    "1.2.840.10008.1.2.4.50": "jpeg",  # baseline
    "1.2.840.10008.1.2.4.51": "jpeg",  # extended (12 bit)
    "1.2.840.10008.1.2.4.57": "jpeg",  # lossless
    "1.2.840.10008.1.2.4.70": "jpeg",  # lossless SV1
    "1.2.840.10008.1.2.4.80": "jpegls",
    "1.2.840.10008.1.2.4.81": "jpegls",
    "1.2.840.10008.1.2.4.90": "jpeg2k",
    "1.2.840.10008.1.2.4.91": "jpeg2k",
    "1.2.840.10008.1.2.4.92": "jpeg2k",
    "1.2.840.10008.1.2.4.93": "jpeg2k",
    "1.2.840.10008.1.2.4.201": "jpeg2k",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "jpeg2k",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "jpeg2k",  # HTJ2K
    "1.2.840.10008.1.2.5": "rle",
}
#: Explicit-VR value representations whose length field is 4 bytes after 2 reserved ones.
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"}


def read_header(path: Path) -> tuple[Any, int]:
    """The data set without pixels, and the file offset of the Pixel Data element (or -1).

    Raises
    ------
    CorruptFileError
        When pydicom cannot parse the header.
    """
    import pydicom

    try:
        with path.open("rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            position = fh.tell()
            tag = fh.read(4)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pydicom raises InvalidDicomError, struct.error, ValueError...
        msg = f"{path.name}: unreadable DICOM header: {exc}"
        raise CorruptFileError(msg, path=path, detail=repr(exc)) from exc
    endian = "<" if _is_little_endian(ds) else ">"
    if len(tag) == 4:
        group, element = struct.unpack(endian + "HH", tag)
        if (group << 16 | element) == PIXEL_DATA:
            return ds, position
    return ds, -1


def _is_little_endian(ds: Any) -> bool:
    uid = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    return uid != "1.2.840.10008.1.2.2"


def _dtype(ds: Any, path: Path) -> np.dtype[Any]:
    bits = int(ds.get("BitsAllocated", 0) or 0)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits not in (8, 16, 32):
        msg = f"{path.name}: BitsAllocated {bits} is not supported (8, 16 or 32 bits only)"
        raise UnsupportedFormatError(msg, path=path)
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


@dataclass(frozen=True, slots=True)
class FrameGeometry:
    """Size of one frame and how many the file holds."""

    rows: int
    columns: int
    samples: int
    dtype: np.dtype[Any]
    count: int

    @property
    def shape(self) -> tuple[int, ...]:
        """Y, X(, S) of one decoded frame."""
        return (
            (self.rows, self.columns, self.samples)
            if self.samples > 1
            else (self.rows, self.columns)
        )

    @property
    def nbytes(self) -> int:
        """Bytes of one native frame."""
        return math.prod(self.shape) * self.dtype.itemsize


class DicomFrames:
    """The frames of one DICOM file, located at open and decoded one at a time.

    Examples
    --------
    >>> frames = DicomFrames(Path("slide.dcm"))  # doctest: +SKIP
    >>> frames.read(0).shape  # doctest: +SKIP
    (256, 256, 3)
    """

    def __init__(self, path: Path, *, check: Any = None) -> None:
        self.path = path
        self.ds, pixel_offset = read_header(path)
        ds = self.ds
        self.transfer_syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
        if pixel_offset < 0:
            if "Rows" in ds or "NumberOfFrames" in ds:
                # An image header whose pixels never come: the file was cut short.
                msg = f"{path.name}: DICOM image header without Pixel Data; the file is truncated"
                raise CorruptFileError(msg, path=path)
            msg = f"{path.name}: DICOM file without Pixel Data (7FE0,0010): no image to read"
            raise UnsupportedFormatError(msg, path=path)
        try:
            rows, columns = int(ds.Rows), int(ds.Columns)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            count = int(ds.get("NumberOfFrames", 1) or 1)
        except (AttributeError, TypeError, ValueError) as exc:
            msg = f"{path.name}: DICOM Rows/Columns/NumberOfFrames missing or invalid: {exc}"
            raise CorruptFileError(msg, path=path, detail=repr(exc)) from exc
        if rows <= 0 or columns <= 0 or count <= 0 or samples not in (1, 3):
            msg = f"{path.name}: DICOM declares {count} frame(s) of {rows}x{columns}x{samples}"
            raise CorruptFileError(msg, path=path)
        self.geometry = FrameGeometry(rows, columns, samples, _dtype(ds, path), count)
        if check is not None:
            check(self.geometry)
        self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        self.planar = int(ds.get("PlanarConfiguration", 0) or 0) == 1
        self._lock = threading.Lock()
        self._fh: Any = None
        self._items: list[tuple[int, int]] = []
        self._bounds: list[int] | None = None
        self.size = path.stat().st_size
        self.codec = _CODEC.get(self.transfer_syntax)
        if self.transfer_syntax in _NATIVE:
            self.endian = _NATIVE[self.transfer_syntax]
            self._native_start = self._locate_native(pixel_offset)
        elif self.codec is not None:
            self.endian = "<"
            self._native_start = -1
            self._bounds = self._locate_fragments(pixel_offset)
        else:
            msg = f"{path.name}: DICOM transfer syntax {self.transfer_syntax} is not supported"
            raise UnsupportedFormatError(msg, path=path)

    # ---------------------------------------------------------------- locating
    def _element_header(self, offset: int) -> tuple[int, int]:
        """(value offset, value length) of the element starting at ``offset``."""
        explicit = self.transfer_syntax != "1.2.840.10008.1.2"
        endian = "<" if self.transfer_syntax != "1.2.840.10008.1.2.2" else ">"
        with self.path.open("rb") as fh:
            fh.seek(offset)
            raw = fh.read(12)
        if len(raw) < 8:
            msg = f"{self.path.name}: the Pixel Data element is cut short"
            raise CorruptFileError(msg, path=self.path)
        if explicit and raw[4:6] in _LONG_VRS:
            if len(raw) < 12:
                msg = f"{self.path.name}: the Pixel Data element is cut short"
                raise CorruptFileError(msg, path=self.path)
            (length,) = struct.unpack(endian + "L", raw[8:12])
            return offset + 12, length
        if explicit:
            (length,) = struct.unpack(endian + "H", raw[6:8])
            return offset + 8, length
        (length,) = struct.unpack(endian + "L", raw[4:8])
        return offset + 8, length

    def _locate_native(self, pixel_offset: int) -> int:
        start, length = self._element_header(pixel_offset)
        needed = self.geometry.nbytes * self.geometry.count
        if length == 0xFFFFFFFF:
            msg = f"{self.path.name}: native Pixel Data with undefined length"
            raise CorruptFileError(msg, path=self.path)
        if length < needed:
            msg = (
                f"{self.path.name}: Pixel Data holds {length:,} bytes, but "
                f"{self.geometry.count} frame(s) of {self.geometry.shape} need {needed:,}"
            )
            raise CorruptFileError(msg, path=self.path)
        if start + needed > self.size:
            msg = (
                f"{self.path.name}: Pixel Data ends past the end of the file "
                f"({self.size:,} bytes); the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)
        return start

    def _locate_fragments(self, pixel_offset: int) -> list[int] | None:
        """Find every fragment; return how they group into frames (``None``: one per frame).

        Frame k is fragments ``bounds[k]:bounds[k + 1]`` of ``self._items``.
        """
        from pydicom.encaps import parse_basic_offsets, parse_fragments

        start, length = self._element_header(pixel_offset)
        if length != 0xFFFFFFFF:
            msg = f"{self.path.name}: encapsulated Pixel Data must have undefined length"
            raise CorruptFileError(msg, path=self.path)
        count = self.geometry.count
        try:
            with self.path.open("rb") as fh:
                fh.seek(start)
                basic = parse_basic_offsets(fh)
                first = fh.tell()
                n_fragments, offsets = parse_fragments(fh)
                items = []
                for offset in offsets:
                    fh.seek(offset)
                    _tag, size = struct.unpack("<LL", fh.read(8))
                    items.append((offset + 8, size))
        except (ValueError, struct.error) as exc:
            msg = f"{self.path.name}: encapsulated Pixel Data is corrupt: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        for offset, size in items:
            if offset + size > self.size:
                msg = (
                    f"{self.path.name}: a compressed frame ends past the end of the file "
                    f"({self.size:,} bytes); the file is truncated"
                )
                raise CorruptFileError(msg, path=self.path)
        self._items = items
        if n_fragments == count:
            return None
        if count == 1 and n_fragments > 1:
            return [0, n_fragments]  # one frame made of every fragment
        if len(basic) == count and n_fragments > count:
            index = {offset - 8: i for i, (offset, _) in enumerate(items)}
            starts = [first + b for b in basic]
            if all(s in index for s in starts):
                return [index[s] for s in starts] + [n_fragments]
        msg = (
            f"{self.path.name}: {n_fragments} compressed fragment(s) cannot be mapped to "
            f"{count} frame(s) (NumberOfFrames lies or the offset table is missing)"
        )
        raise CorruptFileError(msg, path=self.path)

    # ---------------------------------------------------------------- reading
    def _handle(self) -> Any:
        if self._fh is None:
            self._fh = self.path.open("rb")
        return self._fh

    def _read_at(self, offset: int, size: int) -> bytes:
        with self._lock:
            fh = self._handle()
            fh.seek(offset)
            data: bytes = fh.read(size)
        if len(data) != size:
            msg = f"{self.path.name}: frame data at {offset:,} is cut short (file changed?)"
            raise CorruptFileError(msg, path=self.path)
        return data

    def _compressed(self, index: int) -> bytes:
        if self._bounds is None:
            return self._read_at(*self._items[index])
        begin, end = self._bounds[index], self._bounds[index + 1]
        return b"".join(self._read_at(*self._items[i]) for i in range(begin, end))

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` decoded to Y, X(, S) in the file's dtype (native byte order)."""
        geometry = self.geometry
        if not 0 <= index < geometry.count:
            msg = f"{self.path.name}: frame {index} does not exist ({geometry.count} frames)"
            raise CorruptFileError(msg, path=self.path)
        if self._native_start >= 0:
            data = self._read_at(self._native_start + index * geometry.nbytes, geometry.nbytes)
            stored = geometry.dtype.newbyteorder("<" if self.endian == "<" else ">")
            frame = np.frombuffer(data, dtype=stored)
            if geometry.samples > 1 and self.planar:
                frame = np.moveaxis(
                    frame.reshape(geometry.samples, geometry.rows, geometry.columns), 0, -1
                )
            frame = frame.reshape(geometry.shape).astype(geometry.dtype, copy=False)
            if self.photometric.startswith("YBR_FULL") and geometry.samples == 3:
                frame = _ybr_to_rgb(frame)
            # a view of the file's bytes is read-only; the caller owns the frame it is given
            return owned(np.ascontiguousarray(frame))
        data = self._compressed(index)
        try:
            frame = self._decode(data)
        except CorruptFileError:
            raise
        except Exception as exc:  # imagecodecs raises its own *Error classes
            msg = f"{self.path.name}: cannot decode frame {index} ({self.codec}): {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        if frame.shape != geometry.shape:
            msg = (
                f"{self.path.name}: frame {index} decodes to {frame.shape}, but the header "
                f"declares {geometry.shape}"
            )
            raise CorruptFileError(msg, path=self.path)
        return np.ascontiguousarray(frame.astype(geometry.dtype, copy=False))

    def _decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        if self.codec == "jpeg":
            return np.asarray(imagecodecs.jpeg_decode(data))
        if self.codec == "jpegls":
            return np.asarray(imagecodecs.jpegls_decode(data))
        if self.codec == "jpeg2k":
            return np.asarray(imagecodecs.jpeg2k_decode(data))
        return self._rle(data)

    def _rle(self, data: bytes) -> np.ndarray:
        """DICOM RLE Lossless (PS3.5 G): a 64-byte header, then one PackBits segment per byte plane."""
        import imagecodecs

        geometry = self.geometry
        header = struct.unpack("<16L", data[:64]) if len(data) >= 64 else (0,) * 16
        n_segments = header[0]
        itemsize = geometry.dtype.itemsize
        if n_segments != itemsize * geometry.samples:
            msg = f"{self.path.name}: RLE frame has {n_segments} segments, expected {itemsize * geometry.samples}"
            raise CorruptFileError(msg, path=self.path)
        offsets = [*header[1 : 1 + n_segments], len(data)]
        pixels = geometry.rows * geometry.columns
        planes = np.empty((geometry.samples, itemsize, pixels), np.uint8)
        for k in range(n_segments):
            segment = np.frombuffer(
                imagecodecs.packbits_decode(data[offsets[k] : offsets[k + 1]]), np.uint8
            )
            if segment.size < pixels:
                msg = (
                    f"{self.path.name}: RLE segment {k} decodes to {segment.size} of {pixels} bytes"
                )
                raise CorruptFileError(msg, path=self.path)
            planes[k // itemsize, k % itemsize] = segment[:pixels]
        # Segments hold the most significant byte first.
        big = planes.transpose(0, 2, 1).copy().view(geometry.dtype.newbyteorder(">"))[..., 0]
        frame = np.moveaxis(big.reshape(geometry.samples, geometry.rows, geometry.columns), 0, -1)
        return frame.reshape(geometry.shape).astype(geometry.dtype)

    def close(self) -> None:
        """Close the file handle (reopened on the next read)."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _ybr_to_rgb(frame: np.ndarray) -> np.ndarray:
    """Native YBR_FULL samples to RGB (PS3.3 C.7.6.3.1.2), as pydicom converts them."""
    from pydicom.pixels.processing import convert_color_space

    return np.asarray(convert_color_space(frame, "YBR_FULL", "RGB"))
