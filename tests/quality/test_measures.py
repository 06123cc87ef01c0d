"""Quality measures on synthetic planes and stacks whose answers are known."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.synthetic_tiff import write_bigtiff_tiled, write_ome_tiff
from zstack_analyzer import open_image
from zstack_analyzer.quality import (
    PlaneAccumulator,
    QualityBuilder,
    exponential_rate,
    measure_file,
    measure_plane,
    measure_reader,
    thumbnail_with_quality,
)
from zstack_analyzer.quality import read as quality_read
from zstack_analyzer.render.spec import RenderSpec

if TYPE_CHECKING:
    from pathlib import Path


def _blur(plane: np.ndarray, passes: int) -> np.ndarray:
    """Box blur by repeated 3x3 means (edges wrap): enough to kill fine detail."""
    out = plane.astype(np.float64)
    for _ in range(passes):
        out = sum(np.roll(np.roll(out, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    return out


def _focus_stack(size_z: int, sharp_z: int, *, seed: int = 3) -> np.ndarray:
    """Z planes of one random texture, sharp at ``sharp_z`` and more blurred away from it."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(200, 3000, size=(96, 80)).astype(np.float64)
    planes = [_blur(texture, 2 * abs(z - sharp_z)) for z in range(size_z)]
    return np.stack(planes).round().astype(np.uint16)


def _reference(plane: np.ndarray, scale: float) -> dict[str, float]:
    """The formulas of the docs written directly in numpy (the yardstick)."""
    data = plane.astype(np.float64)
    scaled = data / scale
    mean = scaled.mean()
    h = (data[:, 2:] - data[:, :-2]) ** 2
    v = (data[2:] - data[:-2]) ** 2
    return {
        "focus_score": float(((scaled - mean) ** 2).sum() / (scaled.size * mean)),
        "brenner": float((h.sum() + v.sum()) / (h.size + v.size) / scale**2),
        "mean": float(data.mean()),
        "std": float(data.std()),
        "min": float(data.min()),
        "max": float(data.max()),
        "p1": float(np.percentile(data, 1)),
        "p50": float(np.percentile(data, 50)),
        "p99": float(np.percentile(data, 99)),
    }


def _otsu_brute(plane: np.ndarray) -> float:
    """Otsu by trying every integer threshold: foreground is value > t."""
    data = plane.reshape(-1).astype(np.float64)
    best, best_t = -1.0, 0.0
    for t in np.unique(data)[:-1]:
        fg, bg = data[data > t], data[data <= t]
        score = fg.size * bg.size * (fg.mean() - bg.mean()) ** 2
        if score > best:
            best, best_t = score, float(t)
    return best_t


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_plane_measures_equal_numpy(dtype: str) -> None:
    rng = np.random.default_rng(7)
    plane = rng.integers(0, 250, size=(41, 37)).astype(dtype)
    quality = measure_plane(plane)
    scale = float(np.iinfo(plane.dtype).max) if plane.dtype.kind in "ui" else 1.0
    for key, value in _reference(plane, scale).items():
        assert getattr(quality, key) == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_otsu_threshold_and_snr_of_two_populations() -> None:
    rng = np.random.default_rng(1)
    plane = rng.normal(100, 5, size=(64, 64))
    plane[:, 40:] = rng.normal(1000, 20, size=(64, 24))
    plane16 = plane.round().astype(np.uint16)
    quality = measure_plane(plane16)
    assert quality.otsu == _otsu_brute(plane16)
    assert quality.foreground_fraction == pytest.approx(24 / 64)
    data = plane16.astype(np.float64)
    fg, bg = data[data > quality.otsu], data[data <= quality.otsu]
    assert quality.snr == pytest.approx(fg.mean() / bg.std())


def test_known_saturated_fraction_in_8_and_12_bit_data() -> None:
    plane8 = np.full((100, 100), 40, np.uint8)
    plane8.reshape(-1)[:1234] = 255
    assert measure_plane(plane8).saturated_fraction == pytest.approx(0.1234)
    # 12-bit data in uint16: 4095 saturates, although the dtype holds 65535.
    plane12 = np.full((50, 40), 300, np.uint16)
    plane12.reshape(-1)[:100] = 4095
    quality = measure_plane(plane12, significant_bits=12)
    assert quality.saturated_fraction == pytest.approx(0.05)
    assert quality.max_fraction == pytest.approx(0.05)
    assert quality.min_fraction == pytest.approx(0.95)
    assert measure_plane(plane12).saturated_fraction == 0.0  # at the dtype's max: none


def test_bands_give_the_same_answer_as_the_whole_plane() -> None:
    rng = np.random.default_rng(5)
    plane = rng.integers(0, 4096, size=(103, 57)).astype(np.uint16)
    whole = measure_plane(plane, significant_bits=12)
    acc = PlaneAccumulator(plane.dtype, 12)
    for start, stop in (
        (0, 1),  # bands of 1, 1, 8, 40, 49 and 4 rows
        (1, 2),
        (2, 10),
        (10, 50),
        (50, 99),
        (99, 103),
    ):
        acc.add_rows(plane[start:stop])
    banded = acc.finish()
    for key, value in whole.as_dict().items():
        assert getattr(banded, key) == pytest.approx(value, rel=1e-12), key


def test_sharp_plane_among_blurred_is_best_focus() -> None:
    stack = _focus_stack(9, 6)
    builder = QualityBuilder(size_t=1, size_c=1, size_z=9)
    for z, plane in enumerate(stack):
        builder.add(0, 0, z, measure_plane(plane))
    channel = builder.finish().channels[0]
    assert channel.best_focus_z == 6
    assert int(np.argmax(channel.brenner)) == 6
    assert not channel.focus_edge
    edge = QualityBuilder(size_t=1, size_c=1, size_z=9)
    for z, plane in enumerate(_focus_stack(9, 0)):
        edge.add(0, 0, z, measure_plane(plane))
    result = edge.finish()
    assert result.channels[0].best_focus_z == 0
    assert result.focus_edge


def test_known_bleaching_rate_through_a_file(tmp_path: Path) -> None:
    rate = 0.15
    base = _focus_stack(3, 1).astype(np.float64)  # T, C, Z, Y, X below
    stack = np.stack([base * np.exp(-rate * t) for t in range(6)])[:, np.newaxis]
    stack = stack.round().astype(np.uint16)
    path = write_ome_tiff(tmp_path / "bleach.ome.tif", [stack])
    (quality,) = measure_file(path)
    channel = quality.channels[0]
    assert channel.bleaching_rate == pytest.approx(rate, abs=2e-3)
    means = stack[:, 0].reshape(6, -1).mean(axis=1)
    assert channel.intensity_t == pytest.approx(list(means))
    assert exponential_rate([1.0, 2.0]) is None
    assert exponential_rate([1.0, 0.0, 2.0]) is None


def test_thumbnail_pass_feeds_the_measures_without_a_second_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 4000, size=(2, 2, 4, 32, 40)).astype(np.uint16)
    path = write_ome_tiff(tmp_path / "s.ome.tif", [stack])
    reads: list[tuple[int, int, int]] = []
    with open_image(path) as reader:
        original = reader.read_plane

        def counting(scene: int, t: int, c: int, z: int) -> np.ndarray:
            reads.append((t, c, z))
            return original(scene, t, c, z)

        monkeypatch.setattr(reader, "read_plane", counting)
        image, quality = thumbnail_with_quality(reader, RenderSpec(kind="thumbnail"))
    assert image.size[0] > 0
    assert sorted(reads) == sorted(set(reads))  # every plane read exactly once
    assert len(reads) == 2 * 2 * 4
    for t in range(2):
        for c in range(2):
            for z in range(4):
                expected = measure_plane(stack[t, c, z])
                assert quality.channels[c].planes[t][z] == expected


def test_large_planes_are_measured_in_bands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(9)
    stack = rng.integers(0, 60000, size=(2, 200, 96)).astype(np.uint16)
    path = write_bigtiff_tiled(tmp_path / "tiled.tif", stack, tile=(32, 32))
    monkeypatch.setattr("zstack_analyzer.render.reduce.WHOLE_PLANE_BYTES", 1024)
    monkeypatch.setattr(quality_read, "BAND_BYTES", 64 * 96 * 2)
    with open_image(path) as reader:
        monkeypatch.setattr(reader, "read_plane", None)  # a whole-plane read would fail
        quality = measure_reader(reader)
    for z in range(2):
        assert quality.channels[0].planes[0][z] == measure_plane(stack[z])


def test_large_planes_are_measured_on_threads_with_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planes of 1 MiB and more are measured on threads while the next are read.

    Every plane's measures must land on its own (t, c, z), whichever thread
    finished first; a single thread (``workers=1``) measures in line.
    """
    rng = np.random.default_rng(4)
    stack = rng.integers(0, 4000, size=(2, 2, 3, 1024, 512)).astype(np.uint16)
    for index in np.ndindex(stack.shape[:3]):  # each plane its own range: a swap shows
        stack[index] += np.uint16(1000 * (index[1] * 3 + index[2]))
    path = write_ome_tiff(tmp_path / "big.ome.tif", [stack])
    threads: set[str] = set()
    measure = measure_plane

    def recording(plane: np.ndarray, **kwargs: Any) -> Any:
        threads.add(threading.current_thread().name)
        return measure(plane, **kwargs)

    monkeypatch.setattr(quality_read, "measure_plane", recording)
    with open_image(path) as reader:
        threaded = measure_reader(reader, workers=2)
        assert threads and all(name.startswith("zstack-quality") for name in threads)
        threads.clear()
        inline = measure_reader(reader, workers=1)
        assert threads == {threading.current_thread().name}
    for t in range(2):
        for c in range(2):
            for z in range(3):
                expected = measure(stack[t, c, z])
                assert threaded.channels[c].planes[t][z] == expected
                assert inline.channels[c].planes[t][z] == expected
    assert threaded.as_dict() == inline.as_dict()


def test_large_planes_are_read_into_a_few_reused_arrays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Measuring threads read each plane into one of ``workers`` arrays made once.

    Why: a new array a plane came back from the allocator as fresh pages (a page
    fault every 4 KiB), a third of the CPU time of ``quality`` over a 2 GB stack.
    Every plane is read once, into at most ``workers`` distinct arrays, and each
    plane's measures are its own although the arrays are reused. With fewer planes
    than twice the threads the planes come through ``iter_blocks`` as before.
    """
    rng = np.random.default_rng(6)
    stack = rng.integers(0, 4000, size=(1, 2, 5, 1024, 512)).astype(np.uint16)
    for index in np.ndindex(stack.shape[:3]):  # each plane its own range: a mix-up shows
        stack[index] += np.uint16(900 * (index[1] * 5 + index[2]))
    path = write_ome_tiff(tmp_path / "big.ome.tif", [stack])
    reads: list[tuple[int, int, int]] = []
    arrays: set[int] = set()
    with open_image(path) as reader:
        original = reader.read_plane_into

        def recording(scene: int, t: int, c: int, z: int, out: np.ndarray) -> None:
            reads.append((t, c, z))
            arrays.add(out.__array_interface__["data"][0])
            original(scene, t, c, z, out)

        monkeypatch.setattr(reader, "read_plane_into", recording)
        quality = measure_reader(reader, workers=2)
        assert sorted(reads) == [(0, c, z) for c in range(2) for z in range(5)]
        assert 1 <= len(arrays) <= 2
        # Fewer planes than twice the threads: iter_blocks' reads (every core on one plane).
        reads.clear()
        few = measure_reader(reader, workers=6)
        assert reads == []
    for c in range(2):
        for z in range(5):
            assert quality.channels[c].planes[0][z] == measure_plane(stack[0, c, z])
    assert few.as_dict() == quality.as_dict()


def test_image_quality_is_the_endpoint_structure(tmp_path: Path) -> None:
    """``open_image(path).quality(scene)``: every scene, the keys the service serves."""
    from zstack_analyzer.errors import SceneNotFoundError
    from zstack_analyzer.service.routes.quality import ChannelQualityPublic, QualityPublic

    rng = np.random.default_rng(2)
    first = rng.integers(100, 200, size=(1, 2, 4, 12, 14)).astype(np.uint16)
    second = rng.integers(100, 200, size=(3, 1, 5, 10, 9)).astype(np.uint16)
    second[:, 0, 4] = rng.integers(0, 9000, size=(3, 10, 9))  # sharpest at the last Z
    path = write_ome_tiff(tmp_path / "two.ome.tif", [first, second])
    with open_image(path) as image:
        zero = image.quality()
        one = image.quality(1)
        with pytest.raises(SceneNotFoundError):
            image.quality(2)
        expected = measure_reader(image, 1).as_dict(planes=False)
    assert list(zero) == list(QualityPublic.model_fields)
    assert list(one["channels"][0]) == list(ChannelQualityPublic.model_fields) or set(
        one["channels"][0]
    ) == set(ChannelQualityPublic.model_fields)
    assert (zero["scene"], zero["status"], len(zero["channels"])) == (0, "ready", 2)
    assert one["scene"] == 1
    assert one["channels"][0]["best_focus_z"] == 4
    assert one["focus_edge"] is True
    assert one["channels"] == expected["channels"]
    assert QualityPublic.model_validate(one).model_dump() == one
