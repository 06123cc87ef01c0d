"""Streaming projections and sections agree exactly with numpy on position-encoded stacks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from tests.synthetic import encoded_stack
from zstack_analyzer import SceneNotFoundError
from zstack_analyzer.render.projection import (
    ArraySource,
    block_mean,
    fit_size,
    project,
    read_section,
    read_slice,
)

SIZES = (1, 3, 7, 20, 30)  # T, C, Z, Y, X: all different, so a swapped axis fails


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return encoded_stack(*SIZES)[0]  # C, Z, Y, X


def _sources(stack: np.ndarray) -> list[ArraySource]:
    return [
        ArraySource(stack),
        ArraySource(da.from_array(stack, chunks=(1, 1, 20, 30))),  # one chunk per plane
        ArraySource(da.from_array(stack, chunks=(1, 3, 20, 30))),  # Z chunks of 3 (ragged end)
    ]


@pytest.mark.parametrize("kind", ["numpy", "dask-plane", "dask-chunk"])
def test_projection_along_each_axis_matches_numpy(stack: np.ndarray, kind: str) -> None:
    source = _sources(stack)[["numpy", "dask-plane", "dask-chunk"].index(kind)]
    channels = [2, 0]
    views = project(source, channels, ["xy", "xz", "yz"], workers=2)
    for position, c in enumerate(channels):
        np.testing.assert_array_equal(views["xy"][position], stack[c].max(axis=0))
        np.testing.assert_array_equal(views["xz"][position], stack[c].max(axis=1))  # rows Z
        np.testing.assert_array_equal(views["yz"][position], stack[c].max(axis=2).T)  # rows Y
        assert views["xz"][position].shape == (7, 30)
        assert views["yz"][position].shape == (20, 7)


def test_projection_is_not_just_the_last_plane() -> None:
    # Maxima spread over different planes: a wrong accumulator fails.
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 60000, size=(2, 9, 16, 12), dtype=np.uint16)
    source = ArraySource(da.from_array(stack, chunks=(1, 1, 16, 12)))
    views = project(source, [0, 1], ["xy", "xz", "yz"], workers=3)
    for c in (0, 1):
        np.testing.assert_array_equal(views["xy"][c], stack[c].max(axis=0))
        np.testing.assert_array_equal(views["xz"][c], stack[c].max(axis=1))
        np.testing.assert_array_equal(views["yz"][c], stack[c].max(axis=2).T)


def test_rgb_samples_are_projected_per_sample() -> None:
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 255, size=(1, 4, 6, 5, 3), dtype=np.uint8)
    views = project(ArraySource(da.from_array(stack, chunks=1)), [0], ["xy", "xz", "yz"])
    np.testing.assert_array_equal(views["xy"][0], stack[0].max(axis=0))
    np.testing.assert_array_equal(views["xz"][0], stack[0].max(axis=1))
    np.testing.assert_array_equal(views["yz"][0], np.swapaxes(stack[0].max(axis=2), 0, 1))


def test_slice_reads_the_chosen_plane_in_channel_order(stack: np.ndarray) -> None:
    for source in _sources(stack):
        planes = read_slice(source, [1, 2, 0], 4)
        for plane, c in zip(planes, [1, 2, 0], strict=True):
            np.testing.assert_array_equal(plane, stack[c, 4])


def test_sections_match_numpy(stack: np.ndarray) -> None:
    for source in _sources(stack):
        (xz,) = read_section(source, [1], "xz", 13)
        np.testing.assert_array_equal(xz, stack[1, :, 13, :])  # rows Z, columns X
        (yz,) = read_section(source, [2], "yz", 29)
        np.testing.assert_array_equal(yz, stack[2, :, :, 29].T)  # rows Y, columns Z


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: read_slice(s, [0], 7), "z=7"),
        (lambda s: read_slice(s, [3], 0), "channel 3"),
        (lambda s: project(s, [-1]), "channel -1"),
        (lambda s: read_section(s, [0], "xz", 20), "y=20"),
        (lambda s: read_section(s, [0], "yz", 30), "x=30"),
    ],
)
def test_out_of_range_indices_raise_scene_not_found(stack: np.ndarray, call, message: str) -> None:
    with pytest.raises(SceneNotFoundError, match=message):
        call(ArraySource(stack))


def test_block_mean_matches_reshape_mean() -> None:
    rng = np.random.default_rng(2)
    data = rng.integers(0, 4096, size=(37, 53), dtype=np.uint16)
    got = block_mean(data, 4, 5)
    want = data[:36, :50].reshape(9, 4, 10, 5).mean(axis=(1, 3))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    rgb = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        block_mean(rgb, 2, 2), rgb.reshape(4, 2, 4, 2, 3).mean(axis=(1, 3)), rtol=1e-6
    )
    assert block_mean(data, 1, 1).dtype == np.float32


def test_fit_size_keeps_physical_aspect() -> None:
    assert fit_size(100, 200, (256, 256)) == (256, 128)
    assert fit_size(200, 100, (256, 256)) == (128, 256)
    # 10 Z planes of 2 µm under 0.5 µm pixels: 20 µm tall, 50 µm wide.
    assert fit_size(10, 100, (500, 500), pixel_height=2.0, pixel_width=0.5) == (500, 200)
    assert fit_size(1, 1, (7, 3)) == (3, 3)


class _SlowSource(ArraySource):
    """Decoding-bound planes (like compressed TIFF): each read takes a while."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__(da.from_array(array, chunks=(1, 1, *array.shape[2:])))
        self.threads: set[str] = set()

    def read_block(self, c: int, z0: int, z1: int) -> np.ndarray:
        import threading
        import time

        self.threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return super().read_block(c, z0, z1)


def test_slow_planes_are_prefetched_on_threads_with_exact_results(stack: np.ndarray) -> None:
    source = _SlowSource(stack)
    views = project(source, [0, 2], ["xy", "xz", "yz"], workers=2)
    assert any(name.startswith("zstack-read") for name in source.threads)
    for position, c in enumerate([0, 2]):
        np.testing.assert_array_equal(views["xy"][position], stack[c].max(axis=0))
        np.testing.assert_array_equal(views["xz"][position], stack[c].max(axis=1))
        np.testing.assert_array_equal(views["yz"][position], stack[c].max(axis=2).T)
    planes = read_slice(source, [2, 1, 0], 5)
    for plane, c in zip(planes, [2, 1, 0], strict=True):
        np.testing.assert_array_equal(plane, stack[c, 5])
