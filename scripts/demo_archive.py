"""Write a nested demo archive of small OME-TIFF stacks: ``python scripts/demo_archive.py DIR [N]``.

For trying ``zstack ingest`` and ``zstack watch`` without a microscope (``make demo``
does it all): N stacks (default 300; 2 channels, 8 planes, 256x256, uint16, ~2 MB each)
in ``DIR/plateP/wellW/``, each with a bright DAPI blob (48x48, every plane) and a GFP
bar (24x80, planes 2-5) around the same place, wholly inside the picture.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile

if TYPE_CHECKING:
    from collections.abc import Iterator

SIDE = 256
#: Half height and half width of each channel's bright region.
DAPI_HALF = (24, 24)
GFP_HALF = (12, 40)


def demo_stack(rng: np.random.Generator) -> np.ndarray:
    """One C, Z, Y, X stack: noise 100-299, DAPI +3000 and GFP +2000 at one centre.

    Why the centre is drawn from the margins of the larger half-size: a centre
    closer to an edge than a blob's half-size cut it, and one closer than 40 px to
    the left made ``x - 40`` negative, an empty slice: 6 of 300 stacks had no GFP.
    """
    data = rng.integers(100, 300, size=(2, 8, SIDE, SIDE), dtype=np.uint16)
    half_y = max(DAPI_HALF[0], GFP_HALF[0])
    half_x = max(DAPI_HALF[1], GFP_HALF[1])
    y = int(rng.integers(half_y, SIDE - half_y + 1))
    x = int(rng.integers(half_x, SIDE - half_x + 1))
    dy, dx = DAPI_HALF
    data[0, :, y - dy : y + dy, x - dx : x + dx] += 3000
    dy, dx = GFP_HALF
    data[1, 2:6, y - dy : y + dy, x - dx : x + dx] += 2000
    return data


def demo_stacks(count: int, seed: int = 0) -> Iterator[tuple[Path, np.ndarray]]:
    """``(relative path, stack)`` of the archive's ``count`` stacks, reproducibly."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = Path(f"plate{i // 100:02d}") / f"well{(i // 10) % 10:02d}"
        yield folder / f"stack{i:04d}.ome.tif", demo_stack(rng)


def main() -> int:
    """Write the archive under ``sys.argv[1]``."""
    root = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    for relative, data in demo_stacks(count):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(
            path,
            data,
            ome=True,
            metadata={"axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
                      "PhysicalSizeZ": 1.0, "Channel": {"Name": ["DAPI", "GFP"]}},
        )  # fmt: skip
    print(f"wrote {count} stacks under {root.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
