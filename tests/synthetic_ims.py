"""Imaris 5.5 ``.ims`` files written with h5py, following the published file-format layout.

Why: no Imaris file is in the shared corpus. The layout is Imaris' own ("Imaris
5.5 file format"): ``DataSet/ResolutionLevel r/TimePoint t/Channel c/Data`` (Z, Y,
X, chunked, padded to whole chunks) with ``ImageSizeX/Y/Z`` on the channel
group, ``DataSetInfo/Image`` (sizes, extents, unit), ``DataSetInfo/Channel c``
(name, colour, wavelengths) and ``DataSetInfo/TimeInfo``; every attribute is an
array of single characters, as Imaris writes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path


def chars(value: object) -> np.ndarray:
    """An Imaris attribute: the text of ``value`` as an array of single bytes."""
    return np.array([c.encode() for c in str(value)], dtype="S1")


def ims_pixels(t: int, c: int, shape: tuple[int, int, int], dtype: str) -> np.ndarray:
    """A (Z, Y, X) volume whose values say which (t, c, z, y, x) they are."""
    grid = np.indices(shape)
    values = grid[0] * 7 + grid[1] * 3 + grid[2] + 50 * c + 200 * t
    return values.astype(dtype)


def write_ims(
    path: Path,
    *,
    shape: tuple[int, int, int] = (6, 40, 52),
    times: int = 2,
    channels: int = 2,
    levels: int = 2,
    dtype: str = "uint16",
    chunks: tuple[int, int, int] = (4, 16, 16),
    voxel_um: tuple[float, float, float] = (0.2, 0.2, 1.0),
    halve_z: bool = True,
) -> Path:
    """Write an .ims with ``levels`` resolution levels; level r halves X and Y (and Z if ``halve_z``)."""
    import h5py

    z, y, x = shape
    with h5py.File(path, "w") as f:
        for key, value in {
            "DataSetDirectoryName": "DataSet",
            "DataSetInfoDirectoryName": "DataSetInfo",
            "ImarisDataSet": "ImarisDataSet",
            "ImarisVersion": "5.5.0",
            "NumberOfDataSets": 1,
            "ThumbnailDirectoryName": "Thumbnail",
        }.items():
            f.attrs[key] = chars(value) if isinstance(value, str) else np.array([value], "u4")
        image = f.create_group("DataSetInfo/Image")
        extents = {
            "X": x,
            "Y": y,
            "Z": z,
            "Unit": "um",
            "Noc": channels,
            "Name": "synthetic cells",
            "RecordingDate": "2023-05-04 10:11:12.000",
            "ExtMin0": 0,
            "ExtMin1": 0,
            "ExtMin2": 0,
            "ExtMax0": x * voxel_um[0],
            "ExtMax1": y * voxel_um[1],
            "ExtMax2": z * voxel_um[2],
        }
        for key, value in extents.items():
            image.attrs[key] = chars(value)
        for c in range(channels):
            group = f.create_group(f"DataSetInfo/Channel {c}")
            group.attrs["Name"] = chars(["DAPI", "GFP", "mCherry"][c % 3])
            group.attrs["Color"] = chars(["0 0 1", "0 1 0", "1 0 0"][c % 3])
            group.attrs["LSMExcitationWavelength"] = chars([405, 488, 561][c % 3])
            group.attrs["LSMEmissionWavelength"] = chars([450, 520, 610][c % 3])
        timeinfo = f.create_group("DataSetInfo/TimeInfo")
        timeinfo.attrs["DatasetTimePoints"] = chars(times)
        timeinfo.attrs["FileTimePoints"] = chars(times)
        for t in range(times):
            timeinfo.attrs[f"TimePoint{t + 1}"] = chars(f"2023-05-04 10:{11 + t:02d}:12.000")
        for r in range(levels):
            factor = 2**r
            lz = max(1, z // factor) if halve_z else z
            ly, lx = max(1, y // factor), max(1, x // factor)
            padded = tuple(-(-n // k) * k for n, k in zip((lz, ly, lx), chunks, strict=True))
            for t in range(times):
                for c in range(channels):
                    group = f.create_group(f"DataSet/ResolutionLevel {r}/TimePoint {t}/Channel {c}")
                    full = ims_pixels(t, c, shape, dtype)
                    level = full[:: z // lz if halve_z and lz < z else 1, ::factor, ::factor][
                        :lz, :ly, :lx
                    ]
                    data = np.zeros(padded, dtype=dtype)
                    data[:lz, :ly, :lx] = level
                    group.create_dataset(
                        "Data",
                        data=data,
                        chunks=tuple(min(a, b) for a, b in zip(chunks, padded, strict=True)),
                        compression="gzip",
                    )
                    group.attrs["ImageSizeX"] = chars(lx)
                    group.attrs["ImageSizeY"] = chars(ly)
                    group.attrs["ImageSizeZ"] = chars(lz)
                    group.attrs["HistogramMin"] = chars("0.000")
                    group.attrs["HistogramMax"] = chars("65535.000")
                    group.create_dataset("Histogram", data=np.zeros(256, "u8"))
        f.create_dataset("Thumbnail/Data", data=np.zeros((16, 64), "u1"))
    return path
