"""Planes too large to read whole are rendered region by region, in bounded memory.

The reduced planes are checked exactly against numpy block reductions of the
same data, for every TIFF layout the region reader handles (tiles, strips, RGB
chunky and planar, uncompressed rows, ImageJ). The decompression bomb of issue
#15 (a ~1 MB zlib-tiled TIFF declaring a 30720 x 30720 plane) is rendered in a
child process whose peak RSS is measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from zstack_analyzer import LimitExceededError, ReadLimits, open_image
from zstack_analyzer.render.projection import ReaderSource, project, read_section
from zstack_analyzer.render.reduce import ReducedSource, bounded_source
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_file

if TYPE_CHECKING:
    from pathlib import Path

Z, Y, X = 3, 150, 250


def _stack(samples: int = 0) -> np.ndarray:
    z, y, x = np.meshgrid(np.arange(Z), np.arange(Y), np.arange(X), indexing="ij")
    data = (z * 1000 + (y * 37 + x * 11) % 997).astype(np.uint16)
    if samples:
        data = np.stack([data + 3 * s for s in range(samples)], axis=-1)
    return data


LAYOUTS: dict[str, tuple[int, dict[str, Any]]] = {
    "tiles-zlib": (0, {"tile": (32, 48), "compression": "zlib", "photometric": "minisblack"}),
    "strips-rgb": (3, {"rowsperstrip": 7, "compression": "zlib", "photometric": "rgb"}),
    "strips-planar": (3, {"rowsperstrip": 9, "photometric": "rgb", "planarconfig": "separate"}),
    "uncompressed": (0, {"photometric": "minisblack"}),
    "imagej": (0, {"imagej": True, "metadata": {"axes": "ZYX"}}),
}


def _write(path: Path, layout: str) -> np.ndarray:
    samples, options = LAYOUTS[layout]
    data = _stack(samples)
    if options.get("planarconfig") == "separate":
        tifffile.imwrite(path, np.moveaxis(data, -1, 1), **options)
    else:
        tifffile.imwrite(path, data, **options)
    return data


def _block(plane: np.ndarray, ky: int, kx: int, how: str) -> np.ndarray:
    """Block mean (rounded) or max with edge blocks kept, by plain loops (the oracle)."""
    rows, cols = -(-plane.shape[0] // ky), -(-plane.shape[1] // kx)
    out = np.zeros((rows, cols, *plane.shape[2:]), dtype=plane.dtype)
    for i in range(rows):
        for j in range(cols):
            block = plane[i * ky : (i + 1) * ky, j * kx : (j + 1) * kx].astype(np.float64)
            value = block.max(axis=(0, 1)) if how == "max" else np.rint(block.mean(axis=(0, 1)))
            out[i, j] = value
    return out


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_region_reads_equal_the_plane(tmp_path: Path, layout: str) -> None:
    data = _write(tmp_path / "stack.tif", layout)
    with open_image(tmp_path / "stack.tif") as reader:
        assert reader.region_grid(0) is not None
        for z in range(Z):
            for rows, cols in [((0, Y), (0, X)), ((5, 77), (13, 249)), ((149, 150), (0, 1))]:
                region = reader.read_region(0, 0, 0, z, rows, cols)
                np.testing.assert_array_equal(region, data[z, rows[0] : rows[1], cols[0] : cols[1]])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("mode", ["mean", "max"])
def test_reduced_planes_equal_block_reductions(tmp_path: Path, layout: str, mode: str) -> None:
    data = _write(tmp_path / "stack.tif", layout)
    with open_image(tmp_path / "stack.tif") as reader:
        # A tiny region size forces many regions, split across rows and columns.
        source = ReducedSource(
            ReaderSource(reader), 7, 9, mode=mode, limits=ReadLimits(), region_bytes=3000
        )
        assert (source.size_y, source.size_x) == (-(-Y // 7), -(-X // 9))
        for z in range(Z):
            np.testing.assert_array_equal(
                source.read_block(0, z, z + 1)[0], _block(data[z], 7, 9, mode)
            )
        if mode == "max":
            views = project(source, [0], ["xy", "xz", "yz"], workers=2)
            top = data.max(axis=0)
            np.testing.assert_array_equal(views["xy"][0], _block(top, 7, 9, "max"))
            xz = np.stack([_block(data[z].max(axis=0)[None], 1, 9, "max")[0] for z in range(Z)])
            np.testing.assert_array_equal(views["xz"][0], xz)
        section = read_section(source, [0], "xz", 100)[0]
        expected = np.stack([_block(data[z, 100:101], 1, 9, "mean")[0] for z in range(Z)])
        np.testing.assert_array_equal(section, expected)
        section = read_section(source, [0], "yz", 201)[0]
        expected = np.stack([_block(data[z, :, 201:202], 7, 1, "mean")[:, 0] for z in range(Z)])
        np.testing.assert_array_equal(section, np.swapaxes(expected, 0, 1))


def test_render_limit_reads_tiles_or_refuses(tmp_path: Path) -> None:
    """Under a small render limit a tiled file still renders; one big compressed strip is refused."""
    tiled, strip = tmp_path / "tiled.tif", tmp_path / "strip.tif"
    data = _stack()
    grey = {"compression": "zlib", "photometric": "minisblack"}
    tifffile.imwrite(tiled, data, tile=(32, 32), **grey)
    tifffile.imwrite(strip, data, rowsperstrip=Y, **grey)
    small = ReadLimits(max_render_plane_bytes=8192)  # 32 x 32 x 2 bytes = 2 KiB tiles pass
    spec = RenderSpec(kind="mip", width=64, height=64)
    assert render_file(tiled, spec, limits=small).data
    with open_image(tiled, limits=small) as reader:
        source = bounded_source(ReaderSource(reader), (3, 3), mode="max", limits=small)
        assert isinstance(source, ReducedSource)
    with pytest.raises(LimitExceededError, match="render limit"):
        render_file(strip, spec, limits=small)
    # Without the limit the same file renders whole, as before.
    assert render_file(strip, spec).data


N, TILE = 30720, 256
BUDGET_MIB = 400

BOMB = r"""
import json, sys
import numpy as np
import tifffile

path = sys.argv[1]
N, T = 30720, 256

def value(z, ty, tx):
    return (ty * 7 + tx * 3 + z * 50) % 251

def tiles():
    for ty in range(N // T):
        for tx in range(N // T):
            yield np.full((T, T), value(0, ty, tx), np.uint8)

tifffile.imwrite(path, tiles(), shape=(N, N), dtype=np.uint8, tile=(T, T),
                 compression="zlib", compressionargs={"level": 1})
size = __import__("os").path.getsize(path)
with open("/proc/self/clear_refs", "w") as fh:  # the peak below is the renders', not the writer's
    fh.write("5")

from zstack_analyzer import open_image
from zstack_analyzer.render.projection import ReaderSource, project
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_file
from zstack_analyzer.render.reduce import bounded_source

sizes = {}
for name, spec in {
    "thumbnail": RenderSpec(kind="thumbnail", width=65, height=65),
    "orthogonal": RenderSpec(kind="orthogonal", width=768, height=256),
    "section": RenderSpec(kind="section", plane="yz", index=12345, width=256, height=256),
}.items():
    sizes[name] = len(render_file(path, spec).data)
with open_image(path) as reader:
    source = bounded_source(ReaderSource(reader), (480, 480), mode="max", limits=reader.limits)
    xy = project(source, [0], ["xy"])["xy"][0]
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
# Oracle: the block maximum of 480 x 480 pixels over tiles of 256 with known values.
expected = np.zeros((64, 64), np.uint8)
for i in range(64):
    for j in range(64):
        tys = range(i * 480 // T, ((i + 1) * 480 - 1) // T + 1)
        txs = range(j * 480 // T, ((j + 1) * 480 - 1) // T + 1)
        expected[i, j] = max(value(0, ty, tx) for ty in tys for tx in txs)
print(json.dumps({
    "file_bytes": size,
    "peak_mib": peak_kib / 1024,
    "sizes": sizes,
    "reduced_shape": list(xy.shape),
    "exact": bool(np.array_equal(xy, expected)),
}))
"""


@pytest.mark.slow
def test_decompression_bomb_renders_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tif"
    out = subprocess.run(
        [sys.executable, "-c", BOMB, str(path)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["file_bytes"] < 4 * 1024**2  # a few MB on disk, 900 MiB decoded
    assert all(size > 0 for size in report["sizes"].values()), report
    assert report["reduced_shape"] == [64, 64]
    assert report["exact"], "the reduced projection differs from the block maxima"
    print(f"bomb render peak RSS {report['peak_mib']:.0f} MiB")  # shown with -s / -rA
    assert report["peak_mib"] < BUDGET_MIB, report
