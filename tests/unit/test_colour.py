"""Colours, windows and composites follow the documented rules exactly."""

from __future__ import annotations

import numpy as np
import pytest

from zstack_analyzer import ChannelInfo, ImageMetadata
from zstack_analyzer.render.colour import (
    apply_window,
    channel_colors,
    composite,
    dtype_window,
    parse_color,
    percentile_window,
    wavelength_to_color,
)


def _md(channels: list[ChannelInfo]) -> ImageMetadata:
    return ImageMetadata(
        filename="x.tif",
        file_format="TIFF",
        size_x=4,
        size_y=4,
        size_c=len(channels),
        dtype="uint16",
        bit_depth=16,
        channels=channels,
    )


def test_default_colours() -> None:
    assert channel_colors([0]) == [(1.0, 1.0, 1.0)]
    assert channel_colors([0, 1]) == [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)]
    assert channel_colors([0, 1, 2]) == [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]
    # A channel keeps its colour when only a subset is shown.
    assert channel_colors([2], total=3) == [(1.0, 0.0, 0.0)]
    five = channel_colors(list(range(5)))
    assert len(set(five)) == 5


def test_file_colours_win_then_emission_then_defaults() -> None:
    md = _md(
        [
            ChannelInfo(index=0, color="#FF8000", emission_nm=461),
            ChannelInfo(index=1, emission_nm=461),
            ChannelInfo(index=2),
        ]
    )
    got = channel_colors([0, 1, 2], metadata=md)
    assert got[0] == parse_color("FF8000")
    assert got[1] == (0.0, 0.0, 1.0)  # DAPI-like emission: blue
    assert got[2] == (1.0, 0.0, 0.0)  # default third of three
    # Explicit colours win over everything.
    assert channel_colors([0], metadata=md, colors=["00ffff"]) == [(0.0, 1.0, 1.0)]


def test_uninformative_file_colours_are_ignored() -> None:
    white = _md([ChannelInfo(index=0, color="#FFFFFF"), ChannelInfo(index=1, color="#FFFFFF")])
    assert channel_colors([0, 1], metadata=white) == [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)]
    black = _md([ChannelInfo(index=0, color="#000000")])
    assert channel_colors([0], metadata=black) == [(1.0, 1.0, 1.0)]


def test_wavelength_colours() -> None:
    assert wavelength_to_color(461) == "0000FF"
    assert wavelength_to_color(509) == "00FF00"
    assert wavelength_to_color(610) == "FF0000"
    assert wavelength_to_color(250) is None


def test_percentile_window_ignores_hot_and_dead_pixels() -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(100, 4000, size=(200, 200)).astype(np.uint16)  # 12-bit in 16-bit
    data[0, 0] = 65535
    data[1, 1] = 0
    lo, hi = percentile_window(data, 1, 99)
    want_lo, want_hi = np.percentile(data, [1, 99])
    assert (lo, hi) == (pytest.approx(want_lo), pytest.approx(want_hi))
    assert hi < 4100


def test_percentile_window_of_constant_and_empty_images() -> None:
    lo, hi = percentile_window(np.full((5, 5), 7, np.uint16))
    assert lo < 7 < hi
    assert percentile_window(np.zeros((5, 5), np.uint8)) == (0.0, 1.0)
    assert percentile_window(np.full(4, np.nan, np.float32)) == (0.0, 1.0)


def test_dtype_window() -> None:
    assert dtype_window(np.dtype(np.uint16)) == (0.0, 65535.0)
    assert dtype_window(np.dtype(np.uint8)) == (0.0, 255.0)
    assert dtype_window(np.dtype(np.float32), np.array([0.2, 0.7])) == (0.0, 1.0)
    assert dtype_window(np.dtype(np.float32), np.array([-3.0, 5.0])) == (-3.0, 5.0)


def test_apply_window_and_gamma() -> None:
    data = np.array([0, 50, 100, 150, 200], np.uint16)
    np.testing.assert_allclose(apply_window(data, (50, 150)), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(apply_window(data, (50, 150), gamma=2.0), [0, 0, 0.25, 1, 1])


def test_composite_is_additive_and_clipped() -> None:
    a = np.array([[0.0, 10.0, 10.0]], np.float32)
    b = np.array([[10.0, 0.0, 10.0]], np.float32)
    rgb = composite([a, b], [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)], [(0.0, 10.0), (0.0, 10.0)])
    assert rgb.dtype == np.uint8
    assert rgb.tolist() == [[[255, 0, 255], [0, 255, 0], [255, 255, 255]]]
    # Overlapping same-colour channels clip rather than wrap.
    both = composite([a, a], [(0.0, 1.0, 0.0)] * 2, [(0.0, 10.0)] * 2)
    assert both[0, 1].tolist() == [0, 255, 0]
    half = composite([np.array([[5.0]])], [(1.0, 0.5, 0.0)], [(0.0, 10.0)])
    assert half[0, 0].tolist() == [128, 64, 0]


def test_colours_from_dye_names() -> None:
    md = _md(
        [
            ChannelInfo(index=0, name="DAPI"),
            ChannelInfo(index=1, name="EGFP"),
            ChannelInfo(index=2, name="Alexa Fluor 594"),
        ]
    )
    assert channel_colors([0, 1, 2], metadata=md) == [
        (0.0, 0.0, 1.0),
        (0.0, 1.0, 0.0),
        (1.0, 0.0, 0.0),
    ]
    # Names that are not dyes fall back to the defaults (two channels: green, magenta).
    plain = _md([ChannelInfo(index=0, name="Ch1"), ChannelInfo(index=1, name="Ch2")])
    assert channel_colors([0, 1], metadata=plain) == [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)]
