"""Writers of synthetic DICOM files (pydicom), built from the standard's modules.

The corpus has two tiny highdicom whole-slide objects and one MR slice; these
writers add what it lacks: several optical paths and focal planes, tiles that
do not divide the image, compressed frames (JPEG 2000, JPEG, RLE), pyramids
of several files in one series and label images beside them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

if TYPE_CHECKING:
    from pathlib import Path

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


def tiles_of(plane: np.ndarray, tile: tuple[int, int]) -> list[np.ndarray]:
    """Row-major tiles of a Y,X(,S) plane, edge tiles padded with zeros to full size."""
    th, tw = tile
    rows, cols = -(-plane.shape[0] // th), -(-plane.shape[1] // tw)
    padded = np.zeros((rows * th, cols * tw, *plane.shape[2:]), plane.dtype)
    padded[: plane.shape[0], : plane.shape[1]] = plane
    return [
        padded[r * th : (r + 1) * th, c * tw : (c + 1) * tw]
        for r in range(rows)
        for c in range(cols)
    ]


def _rle_frame(frame: np.ndarray) -> bytes:
    """DICOM RLE Lossless (PS3.5 G): byte planes, most significant first, PackBits each."""
    import imagecodecs

    samples = frame.reshape(frame.shape[0], frame.shape[1], -1)
    big = samples.astype(samples.dtype.newbyteorder(">"))
    segments = []
    for s in range(big.shape[2]):
        raw = np.ascontiguousarray(big[:, :, s]).view(np.uint8).reshape(-1, big.dtype.itemsize)
        segments.extend(
            imagecodecs.packbits_encode(np.ascontiguousarray(raw[:, k]).tobytes())
            for k in range(raw.shape[1])
        )
    offsets, position = [], 64
    for segment in segments:
        offsets.append(position)
        position += len(segment) + (len(segment) % 2)
    header = np.zeros(16, "<u4")
    header[0] = len(segments)
    header[1 : 1 + len(segments)] = offsets
    body = b"".join(seg + (b"\0" if len(seg) % 2 else b"") for seg in segments)
    return header.tobytes() + body


def _encode(frames: list[np.ndarray], compression: str | None) -> tuple[Any, bytes]:
    import imagecodecs

    if compression is None:
        return ExplicitVRLittleEndian, b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    if compression == "jpeg2k":
        encoded = [imagecodecs.jpeg2k_encode(f, level=0, codecformat="j2k") for f in frames]
        return JPEG2000Lossless, encapsulate(encoded)
    if compression == "jpeg":
        encoded = [imagecodecs.jpeg8_encode(f, level=95) for f in frames]
        return JPEGBaseline8Bit, encapsulate(encoded)
    if compression == "rle":
        return RLELossless, encapsulate([_rle_frame(f) for f in frames])
    raise ValueError(compression)


def write_dicom_wsi(
    path: Path,
    stack: np.ndarray,
    *,
    tile: tuple[int, int] = (16, 16),
    compression: str | None = None,
    series_uid: str | None = None,
    image_type: str = "VOLUME",
    pixel_spacing_mm: float = 0.00025,
    optical_paths: list[str] | None = None,
    objective_power: float | None = 20.0,
    acquisition: str | None = "20240501100000+0200",
    frames_override: int | None = None,
    sparse: bool = False,
) -> Path:
    """A VL Whole Slide Microscopy image of canonical C,Z,Y,X(,S) ``stack`` (TILED_FULL unless ``sparse``).

    Frames are in the standard's TILED_FULL order: tile columns, tile rows,
    focal planes, optical paths.
    """
    size_c, size_z, size_y, size_x = stack.shape[:4]
    spp = stack.shape[4] if stack.ndim == 5 else 1
    frames = []
    positions = []
    for c in range(size_c):
        for z in range(size_z):
            for k, t in enumerate(tiles_of(stack[c, z], tile)):
                frames.append(t)
                cols = -(-size_x // tile[1])
                positions.append((c, z, k // cols, k % cols))
    syntax, pixel_bytes = _encode(frames, compression)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = WSI_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "SM"
    ds.ImageType = [
        "DERIVED" if image_type == "VOLUME" else "ORIGINAL",
        "PRIMARY",
        image_type,
        "NONE",
    ]
    ds.Manufacturer = "Synthetic Scanner Co"
    ds.ManufacturerModelName = "S-1"
    ds.DeviceSerialNumber = "42"
    ds.SoftwareVersions = "synth 1.0"
    if acquisition:
        ds.AcquisitionDateTime = acquisition
    ds.SeriesDescription = "synthetic slide"
    ds.Rows, ds.Columns = tile
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = size_y, size_x
    ds.TotalPixelMatrixFocalPlanes = size_z
    ds.NumberOfOpticalPaths = size_c
    ds.NumberOfFrames = frames_override or len(frames)
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = "RGB" if spp == 3 else "MONOCHROME2"
    if compression == "jpeg" and spp == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    if spp == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = stack.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    measures = Dataset()
    measures.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    measures.SliceThickness = 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    if sparse:
        ds.DimensionOrganizationType = "TILED_SPARSE"
        per_frame = []
        for c, z, row, col in positions:
            item = Dataset()
            plane = Dataset()
            plane.ColumnPositionInTotalImagePixelMatrix = col * tile[1] + 1
            plane.RowPositionInTotalImagePixelMatrix = row * tile[0] + 1
            plane.ZOffsetInSlideCoordinateSystem = float(z)
            item.PlanePositionSlideSequence = Sequence([plane])
            ident = Dataset()
            ident.OpticalPathIdentifier = str(c + 1)
            item.OpticalPathIdentificationSequence = Sequence([ident])
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    else:
        ds.DimensionOrganizationType = "TILED_FULL"
    paths = []
    for c in range(size_c):
        item = Dataset()
        item.OpticalPathIdentifier = str(c + 1)
        if optical_paths:
            item.OpticalPathDescription = optical_paths[c]
        item.IlluminationWaveLength = 488.0 + 100 * c
        if objective_power:
            item.ObjectiveLensPower = objective_power
            item.ObjectiveLensNumericalAperture = 0.75
        paths.append(item)
    ds.OpticalPathSequence = Sequence(paths)
    ds.PixelData = pixel_bytes
    if compression:
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_dicom_pyramid(
    folder: Path, plane: np.ndarray, *, levels: int = 3, tile: tuple[int, int] = (32, 32)
) -> list[Path]:
    """``levels`` files of one series (each half the size of the one before) and a label image."""
    uid = generate_uid()
    paths = []
    for level in range(levels):
        step = 2**level
        paths.append(
            write_dicom_wsi(
                folder / f"level{level}.dcm",
                plane[np.newaxis, np.newaxis, ::step, ::step],
                tile=tile,
                series_uid=uid,
                pixel_spacing_mm=0.00025 * step,
            )
        )
    write_dicom_wsi(
        folder / "label.dcm",
        plane[np.newaxis, np.newaxis, :16, :16],
        tile=(16, 16),
        series_uid=uid,
        image_type="LABEL",
    )
    return paths


def write_dicom_frames(
    path: Path, frames: np.ndarray, *, modality: str = "OT", spacing_between: float | None = None
) -> Path:
    """A plain (non-tiled) multi-frame DICOM of F,Y,X frames, uncompressed."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = (
        "1.2.840.10008.5.1.4.1.1.7.3"  # multi-frame grayscale word SC
    )
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = frames.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.001, 0.002]
    if spacing_between is not None:
        ds.SpacingBetweenSlices = spacing_between
    ds.ContentDate, ds.ContentTime = "20200102", "030405"
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path
