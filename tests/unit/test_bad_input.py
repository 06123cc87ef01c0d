"""Bad input through ``open_image``: always a typed error naming the file, quickly, in bounded memory."""

from __future__ import annotations

import struct
import tracemalloc
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.synthetic import encoded_stack
from tests.synthetic_tiff import (
    write_bigtiff_tiled,
    write_imagej,
    write_ome_tiff,
    write_plain_pages,
)
from zstack_analyzer import (
    CorruptFileError,
    ImageLoadError,
    LimitExceededError,
    UnsupportedFormatError,
    open_image,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)


def _read_everything(path: Path) -> None:
    """Open ``path`` and read every plane of every scene (what a careless caller would do)."""
    with open_image(path) as image:
        for info in image.scenes():
            image.metadata(info.index)
            for t in range(info.size_t):
                for c in range(info.size_c):
                    for z in range(info.size_z):
                        image.read_plane(info.index, t, c, z)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"empty\.tif"):
        open_image(path)


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "stack.tif"
    folder.mkdir()
    with pytest.raises(UnsupportedFormatError, match=r"stack\.tif"):
        open_image(folder)


def test_missing_path_with_known_extension(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "missing.tif")


def test_missing_path_with_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"x\.xyz"):
        open_image(tmp_path / "x.xyz")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    data = b"\x00\x01" + np.random.default_rng(seed).bytes(20000)
    path = tmp_path / "noise.tif"
    path.write_bytes(data)
    with pytest.raises(UnsupportedFormatError, match=r"noise\.tif"):
        open_image(path)


@pytest.mark.parametrize("magic", [b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00"])
@pytest.mark.parametrize("seed", range(4))
def test_tiff_magic_then_random_bytes(tmp_path: Path, magic: bytes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / "garbage.tif"
    # the first IFD offset points inside the file half the time, at random bytes
    offset = struct.pack("<I" if magic[:2] == b"II" else ">I", int(rng.integers(8, 4000)))
    body = offset if seed % 2 else b""
    path.write_bytes(magic + body + rng.bytes(4096))
    with pytest.raises(ImageLoadError, match=r"garbage\.tif"):
        _read_everything(path)


def _plain(path: Path) -> Path:
    return write_plain_pages(path, encoded_stack(1, 1, 6, 64, 48)[0, 0])


def _ome(path: Path) -> Path:
    return write_ome_tiff(path, [encoded_stack(2, 2, 3, 40, 30)])


def _imagej(path: Path) -> Path:
    return write_imagej(path, encoded_stack(2, 2, 3, 40, 30), unit="um", pixel_size=0.5)


def _tiled(path: Path) -> Path:
    return write_bigtiff_tiled(path, encoded_stack(1, 1, 4, 80, 70)[0, 0])


@pytest.mark.parametrize("writer", [_plain, _ome, _imagej, _tiled], ids=lambda w: w.__name__)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_tiff(tmp_path: Path, writer: Callable[[Path], Path], fraction: float) -> None:
    full = writer(tmp_path / "whole.ome.tif" if writer is _ome else tmp_path / "whole.tif")
    data = full.read_bytes()
    path = tmp_path / ("cut.ome.tif" if writer is _ome else "cut.tif")
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageLoadError, match=r"cut\.(ome\.)?tif") as info:
        _read_everything(path)
    assert isinstance(info.value, CorruptFileError | LimitExceededError | UnsupportedFormatError)


def _huge_tiff_header(width: int, height: int) -> bytes:
    """A classic little-endian TIFF whose one IFD claims ``width`` x ``height`` 8-bit pixels."""
    entries = [
        (256, 4, 1, width),  # ImageWidth (LONG)
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: min-is-black
        (273, 4, 1, 200),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, width * height % 2**32),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0" * 256


def test_huge_declared_plain_tiff(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    path.write_bytes(_huge_tiff_header(10**6, 10**6))
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceededError, match=r"huge\.tif"):
            open_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024**2


def test_huge_declared_ome_tiff(tmp_path: Path) -> None:
    path = tmp_path / "huge.ome.tif"
    tifffile.imwrite(path, np.zeros((4, 4), "uint8"), description="x", metadata=None)
    xml = (
        '<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0"><Pixels DimensionOrder="XYZCT" ID="Pixels:0" Type="uint16" '
        'SizeC="1" SizeT="1" SizeX="1000000" SizeY="1000000" SizeZ="1000"><TiffData/></Pixels>'
        "</Image></OME>"
    )
    tifffile.imwrite(path, np.zeros((4, 4), "uint8"), description=xml, metadata=None)
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceededError, match=r"huge\.ome\.tif"):
            open_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024**2


def test_strips_past_end_of_file(tmp_path: Path) -> None:
    """An uncompressed TIFF whose strip offsets point past EOF is corrupt, not zeros."""
    path = tmp_path / "short.tif"
    header = _huge_tiff_header(100, 100)  # claims 10,000 bytes of strip at offset 200
    path.write_bytes(header)
    with pytest.raises(CorruptFileError, match=r"short\.tif"):
        open_image(path)  # the first IFD is checked at open: a cut single image fails early
