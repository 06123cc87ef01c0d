"""Write a nested demo archive of small OME-TIFF stacks: ``python scripts/demo_archive.py DIR [N]``.

For trying ``zstack ingest`` and ``zstack watch`` without a microscope: N stacks
(default 300; 2 channels, 8 planes, 256x256, uint16, ~2 MB each) in
``DIR/plateP/wellW/``, each with a bright blob in a different place.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile


def main() -> int:
    root = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"plate{i // 100:02d}" / f"well{(i // 10) % 10:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = rng.integers(100, 300, size=(2, 8, 256, 256), dtype=np.uint16)
        y, x = rng.integers(32, 224, size=2)
        data[0, :, y - 24 : y + 24, x - 24 : x + 24] += 3000
        data[1, 2:6, y - 12 : y + 12, x - 40 : x + 40] += 2000
        tifffile.imwrite(
            folder / f"stack{i:04d}.ome.tif",
            data,
            ome=True,
            metadata={"axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
                      "PhysicalSizeZ": 1.0, "Channel": {"Name": ["DAPI", "GFP"]}},
        )  # fmt: skip
    print(f"wrote {count} stacks under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
