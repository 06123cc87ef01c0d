"""Issue 27: our measures against CellProfiler's definitions on the shared corpus.

CellProfiler itself does not install on this Python (``pip install cellprofiler``
needs ``mysqlclient`` and pins old packages), so its definitions are taken from
where CellProfiler takes them: MeasureImageQuality's own formulas (FocusScore,
PercentMaximal, PercentMinimal; a few lines of numpy, written out below from
its source) and its thresholds from ``centrosome`` (CellProfiler's math library:
``centrosome.threshold.get_otsu_threshold``, log-transformed, 256 bins) and
scikit-image (``skimage.filters.threshold_otsu``, what CellProfiler 4's global
two-class Otsu calls). Each plane is scaled to 0..1 by its dtype's maximum, as
CellProfiler loads integer images.

For every readable corpus file (scene 0, T=0, every channel, the middle Z plane)
prints a Markdown table: the largest relative difference of FocusScore, the
largest absolute difference of PercentMaximal / PercentMinimal (in percent
points), and for Otsu the threshold of each definition and the foreground
fractions they give. Needs ``centrosome`` (bench only). It pins ``pillow<12``, so
install it in a throwaway venv, never the project's: ``python -m venv /tmp/cp &&
/tmp/cp/bin/pip install -e '.[quality]' centrosome``.

Run: ``/tmp/cp/bin/python bench/cellprofiler_compare.py [CORPUS_DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from zstack_analyzer.errors import ZstackError
from zstack_analyzer.loader import open_image
from zstack_analyzer.quality import measure_plane


def cellprofiler_focus(image: np.ndarray) -> float:
    """MeasureImageQuality's FocusScore (normalised variance)."""
    mean = float(np.mean(image))
    if mean <= 0:
        return 0.0
    return float(np.sum((image - mean) ** 2) / (image.size * mean))


def cellprofiler_percent(image: np.ndarray) -> tuple[float, float]:
    """MeasureImageQuality's PercentMaximal and PercentMinimal."""
    n = image.size
    return (
        100.0 * np.count_nonzero(image == image.max()) / n,
        100.0 * np.count_nonzero(image == image.min()) / n,
    )


def compare_plane(plane: np.ndarray, bits: int | None) -> dict[str, Any]:
    """Our measures and CellProfiler's on one plane (scaled to 0..1)."""
    from centrosome.threshold import get_otsu_threshold
    from skimage.filters import threshold_otsu

    scale = float(np.iinfo(plane.dtype).max) if plane.dtype.kind in "ui" else 1.0
    image = plane.astype(np.float64) / scale
    ours = measure_plane(plane, significant_bits=bits)
    pmax, pmin = cellprofiler_percent(image)
    focus = cellprofiler_focus(image)
    otsu_ours = None if ours.otsu is None else ours.otsu / scale
    flat = image.reshape(-1)
    otsu_sk = float(threshold_otsu(flat)) if flat.min() < flat.max() else None
    otsu_cp = float(get_otsu_threshold(flat)) if flat.min() < flat.max() else None

    def fraction(threshold: float | None) -> float | None:
        return None if threshold is None else float(np.count_nonzero(flat > threshold) / flat.size)

    return {
        "focus_rel": abs(ours.focus_score - focus) / focus if focus else abs(ours.focus_score),
        "pmax_abs": abs(100 * ours.max_fraction - pmax),
        "pmin_abs": abs(100 * ours.min_fraction - pmin),
        "otsu": (otsu_ours, otsu_sk, otsu_cp),
        "fg": (fraction(otsu_ours), fraction(otsu_sk), fraction(otsu_cp)),
    }


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    default = os.environ.get("ZSTACK_TESTDATA") or str(
        Path(__file__).resolve().parents[2] / "shared" / "testdata"
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", nargs="?", default=default)
    args = parser.parse_args()
    root = Path(args.corpus)
    expected = json.loads((root / "EXPECTED.json").read_text())
    entries = expected if isinstance(expected, list) else expected.get("files", [])
    names = sorted({str(e["path"]) for e in entries if e.get("expect") == "ok"})
    print(
        "| file | dtype | planes | FocusScore max rel. diff | PercentMaximal / PercentMinimal "
        "max diff (points) | Otsu (0-1): ours / skimage / centrosome | foreground: ours / "
        "skimage / centrosome |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        path = root / name
        if not path.exists() or path.stat().st_size > 200 * 1024**2:
            continue
        try:
            with open_image(path) as reader:
                info = reader.scene_info(0)
                bits = reader.metadata(0).significant_bits
                rows = [
                    compare_plane(reader.read_plane(0, 0, c, info.size_z // 2), bits)
                    for c in range(info.size_c)
                ]
                dtype = str(reader.read_plane(0, 0, 0, 0).dtype)
        except (ZstackError, OSError, ValueError) as exc:
            print(f"<!-- {name}: {exc} -->")
            continue
        first = rows[0]
        print(
            f"| {name} | {dtype} | {len(rows)} | {max(r['focus_rel'] for r in rows):.1e} | "
            f"{max(r['pmax_abs'] for r in rows):.1e} / {max(r['pmin_abs'] for r in rows):.1e} | "
            + " / ".join(_fmt(v) for v in first["otsu"])
            + " | "
            + " / ".join(_fmt(v, ".3f") for v in first["fg"])
            + " |"
        )


if __name__ == "__main__":
    main()
