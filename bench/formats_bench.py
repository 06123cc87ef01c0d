"""Records of issue 16 (more formats): LSM metadata against tifffile, DICOM WSI thumbnail.

Why a module of its own: the LSM file is synthetic (the corpus has none), written
once into the bench data folder, outside the repository; the DICOM slide is the
largest whole-slide DICOM of the real corpus (../shared/testdata/dicom).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import Side

if TYPE_CHECKING:
    from run import Context, Record

REPO = Path(__file__).resolve().parent.parent
LSM_NAME = "f_lsm_synthetic.lsm"
LSM_MODULES = ["tifffile", "imagecodecs"]
DICOM_MODULES = ["pydicom", "imagecodecs", "pydicom.encaps", "dask.array"]


def synthetic_lsm(data: Path) -> Path:
    """A 3-channel, 48-plane 512x512 uint8 LSM with thumbnails and time stamps (written once)."""
    path = data / LSM_NAME
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.lsm")
    # In a child process: the stack would otherwise raise this process's peak RSS,
    # which the forked measurement children inherit (ru_maxrss survives exec).
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from tests.synthetic import encoded_stack\n"
        "from tests.synthetic_lsm import write_lsm\n"
        "write_lsm(Path(sys.argv[2]), encoded_stack(1, 3, 48, 512, 512, dtype='uint8'), timestamps=[0.0])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(REPO), str(tmp)], check=True)
    tmp.replace(path)
    return path


SLIDE_DIR = "g_dicom_wsi_pyramid"


def synthetic_dicom_pyramid(data: Path) -> Path:
    """An 8192x8192 RGB JPEG-tiled DICOM slide in 3 level files (8192, 2048, 512) of one series.

    Written once, tile by tile in a child process (the parent's peak RSS must stay
    small: measurement children inherit it). Returns the level-0 file.
    """
    folder = data / SLIDE_DIR
    level0 = folder / "level0.dcm"
    if level0.exists():
        return level0
    code = r"""
import sys
from pathlib import Path
import numpy as np
import imagecodecs, pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEGBaseline8Bit, generate_uid

folder = Path(sys.argv[1]); tmp = folder.with_suffix(".tmp"); tmp.mkdir(parents=True, exist_ok=True)
series, tile = generate_uid(), 256
for level, size in enumerate((8192, 2048, 512)):
    n = size // tile
    frames = []
    yy, xx = np.mgrid[0:tile, 0:tile]
    for r in range(n):
        for c in range(n):
            y, x = (yy + r * tile) * 8192 // size, (xx + c * tile) * 8192 // size
            rgb = np.stack([(x // 37) % 256, (y // 53) % 256, ((x + y) // 97) % 256], -1).astype("uint8")
            frames.append(imagecodecs.jpeg8_encode(rgb, level=85))
    ds = Dataset(); ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SeriesInstanceUID = series; ds.StudyInstanceUID = generate_uid(); ds.Modality = "SM"
    ds.ImageType = ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED" if level else "NONE"]
    ds.Rows = ds.Columns = tile; ds.TotalPixelMatrixRows = ds.TotalPixelMatrixColumns = size
    ds.TotalPixelMatrixFocalPlanes = 1; ds.NumberOfOpticalPaths = 1; ds.NumberOfFrames = len(frames)
    ds.DimensionOrganizationType = "TILED_FULL"; ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"; ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8; ds.HighBit = 7; ds.PixelRepresentation = 0
    pm = Dataset(); pm.PixelSpacing = [0.00025 * 8192 / size] * 2
    sf = Dataset(); sf.PixelMeasuresSequence = Sequence([pm]); ds.SharedFunctionalGroupsSequence = Sequence([sf])
    ds.PixelData = encapsulate(frames); ds["PixelData"].VR = "OB"; ds["PixelData"].is_undefined_length = True
    pydicom.dcmwrite(tmp / f"level{level}.dcm", ds, enforce_file_format=True)
tmp.replace(folder)
"""
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True)
    return level0


def largest_corpus_dicom_wsi() -> Path | None:
    """The largest VL whole-slide DICOM (by total pixels) in the shared corpus."""
    import pydicom

    folder = REPO.parent / "shared" / "testdata" / "dicom"
    best, best_pixels = None, -1
    for path in sorted(folder.glob("*.dcm")) if folder.is_dir() else []:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "TotalPixelMatrixRows" not in ds:
            continue
        pixels = (
            int(ds.TotalPixelMatrixRows) * int(ds.TotalPixelMatrixColumns) * int(ds.SamplesPerPixel)
        )
        if pixels > best_pixels:
            best, best_pixels = path, pixels
    return best


def issue16(ctx: Context, measured: Any, target: Any) -> list[Record | None]:
    py = ctx.ours_python
    out: list[Record | None] = []
    if ctx.wants("metadata/lsm"):
        lsm = str(synthetic_lsm(ctx.data))
        out.append(
            measured(
                "metadata/lsm",
                Side(
                    "ours",
                    py,
                    "ours_metadata",
                    {"path": lsm, "preimport": LSM_MODULES},
                    ctx.repeats(),
                ),
                Side(
                    "tifffile",
                    py,
                    "tifffile_lsm_metadata",
                    {"path": lsm, "preimport": LSM_MODULES},
                    ctx.repeats(),
                ),
                target("ratio <= 1.3", max_ratio=1.3),
                warm_keys=[],
                ctx=ctx,
                note=(
                    "synthetic LSM (3 C x 48 Z x 512x512 uint8 + 48 thumbnail IFDs); baseline: TiffFile + "
                    "series shape + CZ_LSMINFO voxel sizes, ChannelColors, TimeStamps, objective"
                ),
            )
        )
    dicom = largest_corpus_dicom_wsi() if ctx.wants("slice-thumb/dicom-wsi") else None
    if dicom is not None:
        out.append(
            measured(
                "slice-thumb/dicom-wsi",
                Side(
                    "ours",
                    py,
                    "ours_render",
                    {"path": str(dicom), "preimport": DICOM_MODULES, "spec": {"kind": "thumbnail"}},
                    ctx.repeats(),
                ),
                Side(
                    "pydicom pixel_array + PNG",
                    py,
                    "pydicom_wsi_png",
                    {"path": str(dicom), "preimport": DICOM_MODULES},
                    ctx.repeats(),
                ),
                None,
                warm_keys=[],
                ctx=ctx,
                note=f"{dicom.name} (largest DICOM WSI of the corpus), 256 px thumbnail; RSS reported, no target set",
            )
        )
    if ctx.wants("slice-thumb/dicom-wsi-8k"):
        slide = str(synthetic_dicom_pyramid(ctx.data))
        out.append(
            measured(
                "slice-thumb/dicom-wsi-8k",
                Side(
                    "ours",
                    py,
                    "ours_render",
                    {"path": slide, "preimport": DICOM_MODULES, "spec": {"kind": "thumbnail"}},
                    ctx.repeats(),
                ),
                Side(
                    "pydicom pixel_array + PNG",
                    py,
                    "pydicom_wsi_png",
                    {"path": slide, "preimport": DICOM_MODULES},
                    1,
                ),
                None,
                warm_keys=[],
                ctx=ctx,
                note=(
                    "synthetic 8192x8192 RGB JPEG slide, 3 level files of one series (8192, 2048, 512 px); "
                    "ours reads the 512 px level's 4 tiles; baseline decodes level 0 whole (1 run)"
                ),
            )
        )
    return out
