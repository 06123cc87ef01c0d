"""ThumbnailGenerator and render_file against numpy references on position-encoded data."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.synthetic import encoded_stack
from zstack_analyzer import (
    ChannelInfo,
    ImageMetadata,
    PhysicalSize,
    SceneNotFoundError,
    ThumbnailGenerator,
)
from zstack_analyzer.cache import RenderCache
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import (
    PANEL_BACKGROUND,
    channel_histograms,
    orthogonal_layout,
    render_file,
)

if TYPE_CHECKING:
    from pathlib import Path

T, C, Z, Y, X = 2, 3, 6, 24, 40


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return encoded_stack(T, C, Z, Y, X)


def _md(**physical: float) -> ImageMetadata:
    return ImageMetadata(
        filename="synthetic.ome.tif",
        file_format="OME-TIFF",
        size_x=X,
        size_y=Y,
        size_z=Z,
        size_c=C,
        size_t=T,
        dtype="uint16",
        bit_depth=16,
        physical_size=PhysicalSize(**physical),
    )


def _expected(
    values: np.ndarray, window: tuple[float, float], colour: tuple[int, int, int]
) -> np.ndarray:
    lo, hi = window
    norm = np.clip((values.astype(np.float64) - lo) / (hi - lo), 0, 1)
    return np.stack([np.rint(norm * 255 * (k / 255)) for k in colour], axis=-1).astype(np.uint8)


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_chosen_plane_exact(stack: np.ndarray) -> None:
    gen = ThumbnailGenerator()
    window = (float(stack[0, 1, 3].min()), float(stack[0, 1, 3].max()))
    image = _run(
        gen.generate_thumbnail(stack[0], size=(X, Y), z_slice=3, channels=[1], windows=[window])
    )
    assert image.size == (X, Y)
    got = np.asarray(image)
    # Channel 1 of 3: default green.
    np.testing.assert_array_equal(got, _expected(stack[0, 1, 3], window, (0, 255, 0)))


def test_default_is_z_projection_and_timepoint_selects_t(stack: np.ndarray) -> None:
    gen = ThumbnailGenerator()
    window = (0.0, 65535.0)
    image = _run(
        gen.generate_thumbnail(stack, size=(X, Y), channels=[2], windows=[window], timepoint=1)
    )
    want = _expected(stack[1, 2].max(axis=0), window, (255, 0, 0))
    np.testing.assert_array_equal(np.asarray(image), want)
    with pytest.raises(SceneNotFoundError):
        _run(gen.generate_thumbnail(stack, timepoint=2))
    with pytest.raises(SceneNotFoundError):
        _run(gen.generate_thumbnail(stack[0], z_slice=Z))


def test_channel_order_and_explicit_colours(stack: np.ndarray) -> None:
    gen = ThumbnailGenerator()
    spec = RenderSpec(
        kind="slice",
        z=2,
        channels=(2, 0),
        colors=("FF0000", "0000FF"),
        windows=((0, 65535), (0, 65535)),
        width=X,
        height=Y,
    )
    got = np.asarray(_run(gen.render(stack[0], spec)))
    np.testing.assert_array_equal(
        got[..., 0], _expected(stack[0, 2, 2], (0, 65535), (255, 0, 0))[..., 0]
    )
    np.testing.assert_array_equal(
        got[..., 2], _expected(stack[0, 0, 2], (0, 65535), (0, 0, 255))[..., 2]
    )
    assert not got[..., 1].any()


def test_percentile_window_default(stack: np.ndarray) -> None:
    gen = ThumbnailGenerator()
    plane = stack[0, 0, 4]
    image = _run(gen.generate_thumbnail(stack[0], size=(X, Y), z_slice=4, channels=[0]))
    lo, hi = np.percentile(plane, [1, 99])
    want = _expected(plane, (lo, hi), (0, 0, 255))
    diff = np.abs(np.asarray(image).astype(int) - want.astype(int))
    assert diff.max() <= 1  # float32 arithmetic vs float64 reference


def test_normalize_false_is_linear_dtype_range(stack: np.ndarray) -> None:
    gen = ThumbnailGenerator()
    image = _run(
        gen.generate_thumbnail(stack[0], size=(X, Y), z_slice=0, channels=[1], normalize=False)
    )
    want = _expected(stack[0, 1, 0], (0, 65535), (0, 255, 0))
    np.testing.assert_array_equal(np.asarray(image), want)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_mip_along_each_axis_exact(stack: np.ndarray, axis: int) -> None:
    gen = ThumbnailGenerator()
    reference = [stack[1, 0].max(axis=0), stack[1, 0].max(axis=1), stack[1, 0].max(axis=2).T][axis]
    rows, cols = reference.shape
    lazy = da.from_array(stack, chunks=(1, 1, 1, Y, X))  # T, C, Z, Y, X like a reader's
    image = _run(
        gen.generate_mip_thumbnail(
            lazy, size=(cols, rows), channels=[0], axis=axis, timepoint=1, windows=[(0, 65535)]
        )
    )
    assert image.size == (cols, rows)
    np.testing.assert_array_equal(np.asarray(image), _expected(reference, (0, 65535), (0, 0, 255)))


def test_mip_scales_z_by_voxel_aspect(stack: np.ndarray) -> None:
    gen = ThumbnailGenerator()
    md = _md(x_um=0.5, y_um=0.5, z_um=2.0)  # Z 6 x 2 µm = 12 µm; X 40 x 0.5 = 20 µm
    image = _run(gen.generate_mip_thumbnail(stack[0], size=(200, 200), axis=1, metadata=md))
    assert image.size == (200, 120)
    image = _run(gen.generate_mip_thumbnail(stack[0], size=(200, 200), axis=2, metadata=md))
    assert image.size == (200, 200)  # YZ: rows Y (12 µm), columns Z (12 µm): square
    # Without metadata every voxel is a cube: YZ is Y=24 rows by Z=6 columns.
    image = _run(gen.generate_mip_thumbnail(stack[0], size=(200, 200), axis=2))
    assert image.size == (50, 200)


def test_multi_view_panels_have_physical_aspect(stack: np.ndarray) -> None:
    gen = ThumbnailGenerator()
    md = _md(x_um=0.25, y_um=0.25, z_um=1.0)  # X 10 µm, Y 6 µm, Z 6 µm
    image = _run(gen.generate_multi_view_thumbnail(stack[0], size=(768, 256), metadata=md))
    layout = orthogonal_layout((Z, Y, X), (768, 256), metadata=md)
    xy, xz, yz = layout["xy"], layout["xz"], layout["yz"]
    assert xy[2] == xz[2]  # XY and XZ share the X extent
    assert xy[3] == yz[3]  # XY and YZ share the Y extent
    assert xz[3] == yz[2]  # Z has one length in both
    assert xz[3] / xy[2] == pytest.approx(6 / 10, abs=0.02)
    assert image.size[0] <= 768 and image.size[1] <= 256
    assert image.size == (yz[0] + yz[2], max(xy[3], xz[3]))
    pixels = np.asarray(image)
    # Below the short XZ panel is background; inside it is the picture.
    if xz[3] < image.size[1]:
        assert pixels[xz[3] :, xz[0] : xz[0] + xz[2]].reshape(-1, 3).tolist()[0] == list(
            PANEL_BACKGROUND
        )
    assert pixels[: xy[3], : xy[2]].max() > 0


def test_large_input_fits_box_and_keeps_aspect() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4095, size=(2, 3, 500, 800), dtype=np.uint16)
    data[0, 1, 10, 10] = 65535  # a hot pixel does not blacken the picture
    image = _run(ThumbnailGenerator().generate_thumbnail(data, size=(256, 256)))
    assert image.size == (256, 160)
    assert np.asarray(image).mean() > 40


def test_rgb_shown_as_rgb() -> None:
    rgb = np.zeros((1, 1, 4, 6, 3), np.uint8)  # C, Z, Y, X, S
    rgb[..., 0] = 200
    rgb[..., 2] = 50
    md = ImageMetadata(
        filename="rgb.tif",
        file_format="TIFF",
        size_x=6,
        size_y=4,
        samples_per_pixel=3,
        dtype="uint8",
        bit_depth=8,
    )
    image = _run(ThumbnailGenerator().generate_thumbnail(rgb, size=(6, 4), metadata=md))
    assert np.asarray(image)[0, 0].tolist() == [200, 0, 50]


def test_file_colours_used(stack: np.ndarray) -> None:
    md = _md()
    md.channels = [
        ChannelInfo(index=i, color=c) for i, c in enumerate(["#00FFFF", "#FFFF00", "#FF0000"])
    ]
    image = _run(
        ThumbnailGenerator().generate_thumbnail(
            stack[0], size=(X, Y), z_slice=0, channels=[0], metadata=md, windows=[(0, 100)]
        )
    )
    got = np.asarray(image)
    assert not got[..., 0].any() and got[..., 1].any()
    np.testing.assert_array_equal(got[..., 1], got[..., 2])


@pytest.mark.parametrize(("suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP")])
def test_save_thumbnail_by_extension(tmp_path: Path, suffix: str, fmt: str) -> None:
    image = Image.new("RGB", (8, 6), (10, 200, 30))
    target = tmp_path / f"thumb{suffix}"
    _run(ThumbnailGenerator().save_thumbnail(image, target))
    with Image.open(target) as saved:
        assert saved.format == fmt
        assert saved.size == (8, 6)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp file left


def test_save_thumbnail_rejects_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.gif"):
        _run(ThumbnailGenerator().save_thumbnail(Image.new("RGB", (2, 2)), tmp_path / "a.gif"))


def test_generator_survives_several_event_loops(stack: np.ndarray) -> None:
    gen = ThumbnailGenerator()
    for _ in range(2):
        assert _run(gen.generate_thumbnail(stack[0], size=(16, 16))).size[0] == 16


# ------------------------------------------------------------------ path-based entry
@pytest.fixture
def ome_file(tmp_path: Path, stack: np.ndarray) -> Path:
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        path,
        stack,
        ome=True,
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.5,
            "PhysicalSizeY": 0.5,
            "PhysicalSizeZ": 2.0,
        },
    )
    return path


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_render_file_kinds_match_numpy(ome_file: Path, stack: np.ndarray) -> None:
    w = ((0, 65535),)
    common = {"channels": (1,), "windows": w, "t": 1}
    cases = [
        (RenderSpec(kind="slice", z=4, width=X, height=Y, **common), stack[1, 1, 4]),
        (RenderSpec(kind="thumbnail", width=X, height=Y, **common), stack[1, 1].max(axis=0)),
        (RenderSpec(kind="mip", axis=0, width=X, height=Y, **common), stack[1, 1].max(axis=0)),
        # XZ section at Y=5: rows Z (2 µm) and columns X (0.5 µm): 6 rows -> 24 after scaling.
        (RenderSpec(kind="section", plane="xz", index=5, width=X, height=100, **common), None),
    ]
    etags = []
    for spec, reference in cases:
        result = render_file(ome_file, spec)
        assert result.media_type == "image/png"
        # The ETag names this picture: stable for the same file and spec, hex, and
        # different for every other spec (checked after the loop).
        assert render_file(ome_file, spec).etag == result.etag
        assert len(result.etag) >= 32 and int(result.etag, 16) >= 0
        etags.append(result.etag)
        assert not result.from_cache
        got = _decode(result.data)
        if reference is None:
            assert got.shape[:2] == (24, 40)
            continue
        np.testing.assert_array_equal(got, _expected(reference, (0, 65535), (0, 255, 0)))
    assert len(set(etags)) == len(cases)


def test_etag_follows_the_file_content(ome_file: Path, stack: np.ndarray) -> None:
    """A rewritten file gets a new ETag for the same spec (no stale picture behind a 304)."""
    spec = RenderSpec(kind="mip", width=X, height=Y)
    before = render_file(ome_file, spec).etag
    tifffile.imwrite(ome_file, stack[::-1].copy(), ome=True, metadata={"axes": "TCZYX"})
    after = render_file(ome_file, spec).etag
    assert after != before
    assert render_file(ome_file, spec).etag == after


def test_render_file_formats(ome_file: Path) -> None:
    for fmt, magic in (("jpeg", b"\xff\xd8"), ("webp", b"RIFF")):
        result = render_file(ome_file, RenderSpec(kind="orthogonal", image_format=fmt))  # type: ignore[arg-type]
        assert result.media_type == f"image/{fmt}"
        assert result.data.startswith(magic)


@pytest.mark.parametrize(
    "spec",
    [
        RenderSpec(scene=1),
        RenderSpec(t=2),
        RenderSpec(kind="slice", z=6),
        RenderSpec(channels=(3,)),
        RenderSpec(kind="mip", axis=3),
        RenderSpec(kind="section", plane="yz", index=X),
        RenderSpec(kind="section", plane="xz", index=-1),
    ],
)
def test_render_file_out_of_range(ome_file: Path, spec: RenderSpec) -> None:
    with pytest.raises(SceneNotFoundError):
        render_file(ome_file, spec)


def test_render_file_uses_cache(ome_file: Path, tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "cache")
    spec = RenderSpec(kind="mip", width=64, height=64)
    first = render_file(ome_file, spec, cache=cache)
    second = render_file(ome_file, spec, cache=cache)
    assert not first.from_cache and second.from_cache
    assert first.data == second.data and first.etag == second.etag
    third = render_file(ome_file, spec, cache=cache, identity="sha256-of-upload")
    # Another identity is another cache entry and another ETag; asking again hits it.
    assert not third.from_cache and third.etag != first.etag
    fourth = render_file(ome_file, spec, cache=cache, identity="sha256-of-upload")
    assert fourth.from_cache and fourth.etag == third.etag and fourth.data == third.data
    gen = ThumbnailGenerator(cache=cache)
    assert _run(gen.render_file(ome_file, spec)).from_cache


def test_channel_histograms(ome_file: Path, stack: np.ndarray) -> None:
    stats = channel_histograms(ome_file, t=1, z=2)
    assert [s["index"] for s in stats] == [0, 1, 2]
    plane = stack[1, 2, 2]
    third = stats[2]
    assert third["min"] == plane.min() and third["max"] == plane.max()
    assert third["p_low"] == pytest.approx(np.percentile(plane, 1))
    assert third["p_high"] == pytest.approx(np.percentile(plane, 99))
    assert len(third["bins"]) == 256 and sum(third["bins"]) == plane.size
    assert third["bin_lo"] == plane.min() and third["bin_hi"] == plane.max()
    assert third["color"] == "FF0000"
    whole = channel_histograms(ome_file)
    assert whole[0]["max"] == stack[0, 0].max()
    with pytest.raises(SceneNotFoundError):
        channel_histograms(ome_file, z=Z)


def test_slice_of_pyramid_reads_the_smallest_sufficient_level(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = rng.integers(0, 4000, (2, 1024, 1024), dtype=np.uint16)
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(data, subifds=2, metadata={"axes": "CYX"}, tile=(256, 256))
        for level in (1, 2):
            writer.write(data[:, :: 2**level, :: 2**level], subfiletype=1, tile=(256, 256))
    spec = RenderSpec(kind="slice", z=0, channels=(0,), windows=((0, 4000),), width=256, height=256)
    got = _decode(render_file(path, spec).data)
    # Level 2 (256 x 256) is read as is; level 0 would have been block-averaged.
    want = _expected(data[0, ::4, ::4], (0, 4000), (0, 255, 0))
    assert np.abs(got.astype(int) - want).max() <= 1  # float32 vs float64 rounding


def test_line_scan_default_thumbnail_is_its_xz_view() -> None:
    scan = encoded_stack(1, 1, 30, 1, 50)[0]  # C, Z=30 lines, Y=1, X=50
    image = _run(ThumbnailGenerator().generate_thumbnail(scan, size=(50, 30), windows=[(0, 65535)]))
    assert image.size == (50, 30)  # rows Z, columns X
    np.testing.assert_array_equal(
        np.asarray(image), _expected(scan[0, :, 0, :], (0, 65535), (255, 255, 255))
    )


def test_render_file_picks_the_scene(tmp_path: Path) -> None:
    first = encoded_stack(1, 1, 2, 10, 12)
    second = encoded_stack(1, 2, 3, 14, 9)
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(first, metadata={"axes": "TCZYX"})
        writer.write(second, metadata={"axes": "TCZYX"})
    spec = RenderSpec(
        kind="slice", scene=1, z=2, channels=(1,), windows=((0, 65535),), width=9, height=14
    )
    got = _decode(render_file(path, spec).data)
    np.testing.assert_array_equal(got, _expected(second[0, 1, 2], (0, 65535), (255, 0, 255)))
