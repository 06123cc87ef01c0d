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
    return out
