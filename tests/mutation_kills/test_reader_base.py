"""The reader protocol base (mutation kills, seventh round).

References: :class:`ImageReader`'s documented defaults (one plane through :meth:`to_dask`,
regions clipped as the TIFF region path clips them, ``None`` grid, one level), its checks
(scene, plane index, declared shape) and their messages, closing and pickling by what was
opened, and the decode budget one whole plane reserves. Files: a ``.npy`` stack served by a
minimal reader that keeps every default (so the defaults themselves run), DICOM pyramids
written with pydicom (a real reader that keeps the default region read), and ND2 from the
corpus (the reader that serialises its reads with the base's lock).
"""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest

from tests.needs import unavailable
from tests.synthetic import encoded_stack
from tests.synthetic_dicom import write_dicom_pyramid, write_dicom_wsi
from zstack_analyzer import budget, open_image
from zstack_analyzer.errors import CorruptFileError, LimitExceededError, SceneNotFoundError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.metadata import SceneInfo
from zstack_analyzer.readers._base import ImageReader, plane_count, planes_to_dask, reserve_plane
from zstack_analyzer.storage.remote import RemoteObject, S3Location, S3Options

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    import dask.array as da

    from zstack_analyzer.metadata import ImageMetadata

STACK = encoded_stack(2, 3, 4, 12, 16)  # T, C, Z, Y, X: every plane differs


class NpyReader(ImageReader):
    """A ``.npy`` T,C,Z,Y,X stack with every default of the base (no faster paths)."""

    format_name: ClassVar[str] = "npy-stack"
    suffixes: ClassVar[tuple[str, ...]] = (".npy",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        return head.startswith(b"\x93NUMPY") and path.suffix == ".npy"

    def __init__(self, path: Path | str | RemoteObject, /, *, limits: ReadLimits | None = None):
        super().__init__(path, limits=limits)
        self.threads: set[int] = set()  # the threads planes were decoded in
        if isinstance(self.source, RemoteObject):
            self._array = None
            return
        self._array = np.load(self.path, mmap_mode="r")
        t, c, z, y, x = self._array.shape
        self._info = SceneInfo(
            index=0, size_t=t, size_c=c, size_z=z, size_y=y, size_x=x, dtype=self._array.dtype.name
        )

    def scenes(self) -> Sequence[SceneInfo]:
        return [self._info]

    def metadata(self, scene: int = 0) -> ImageMetadata:
        return self.scene_metadata(self.scene_info(scene))

    def _plane(self, t: int, c: int, z: int) -> np.ndarray:
        self.check_open()
        assert self._array is not None
        self.threads.add(threading.get_ident())
        return np.array(self._array[t, c, z])

    def _half(self, t: int, c: int, z: int) -> np.ndarray:
        return np.ascontiguousarray(self._plane(t, c, z)[::2, ::2])

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Level 1 is every second row and column: a two-level pyramid."""
        self.scene_info(scene)
        if level == 1:
            info = self._info
            shape = (*info.shape[:3], -(-info.size_y // 2), -(-info.size_x // 2))
            return planes_to_dask(self._half, shape, info.dtype, name="npyreader")
        return planes_to_dask(self._plane, self._info.shape, self._info.dtype, name="npyreader")

    def raw_metadata(self) -> Mapping[str, Any]:
        return {"shape": list(self._info.shape)}


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("npy") / "stack.npy"
    np.save(path, STACK)
    return path


@pytest.fixture
def reader(stack_file: Path) -> Iterator[NpyReader]:
    with NpyReader(stack_file) as opened:
        yield opened


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    plane = encoded_stack(1, 1, 1, 64, 48)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path_factory.mktemp("pyr"), plane, levels=2, tile=(16, 16))
    return paths[0], plane


def _clipped(plane: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The documented region: a negative bound is 0, a bound past the end is the end."""
    return plane[max(0, rows[0]) : max(0, rows[1]), max(0, cols[0]) : max(0, cols[1])]


BOUNDS = [((2, 9), (3, 11)), ((-4, 5), (-2, 7)), ((0, -3), (0, 16)), ((10, 99), (-9, -1))]


# ----------------------------------------------------------------------------- dask builder
def test_planes_to_dask_puts_each_plane_at_its_t_c_z(reader: NpyReader) -> None:
    lazy = reader.to_dask(0)
    assert lazy.shape == STACK.shape
    assert lazy.dtype == STACK.dtype
    assert lazy.chunks[:3] == ((1, 1), (1, 1, 1), (1, 1, 1, 1))
    assert lazy.chunks[3:] == ((12,), (16,))
    np.testing.assert_array_equal(np.asarray(lazy[1, 2, 3]), STACK[1, 2, 3])
    np.testing.assert_array_equal(np.asarray(lazy[0, 1, 2]), STACK[0, 1, 2])
    np.testing.assert_array_equal(lazy.compute(), STACK)


def test_graph_names_start_with_the_prefix_and_are_unique(reader: NpyReader) -> None:
    first, second = reader.to_dask(0), reader.to_dask(0)
    assert first.name.startswith("npyreader-")
    assert second.name.startswith("npyreader-")
    assert first.name != second.name


def test_planes_with_samples_are_six_dimensional() -> None:
    rgb = np.arange(2 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 5, 6, 3)
    lazy = planes_to_dask(lambda t, c, z: rgb[z], (1, 1, 2, 5, 6, 3), "uint8", name="rgb")
    assert lazy.chunks == ((1,), (1,), (1, 1), (5,), (6,), (3,))
    np.testing.assert_array_equal(lazy.compute()[0, 0], rgb)


# ----------------------------------------------------------------------------- default reads
def test_default_plane_read_and_read_into(reader: NpyReader) -> None:
    np.testing.assert_array_equal(reader.read_plane(0, 1, 2, 3), STACK[1, 2, 3])
    np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), STACK[0, 0, 0])
    out = np.zeros((12, 16), np.uint16)
    reader.read_plane_into(0, 1, 0, 2, out)
    np.testing.assert_array_equal(out, STACK[1, 0, 2])


@pytest.mark.parametrize(("rows", "cols"), BOUNDS)
def test_default_region_read_is_the_clipped_plane(
    reader: NpyReader, rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    region = reader.read_region(0, 1, 2, 1, rows, cols)
    np.testing.assert_array_equal(region, _clipped(STACK[1, 2, 1], rows, cols))
    assert region.flags.c_contiguous


@pytest.mark.parametrize(("rows", "cols"), BOUNDS)
def test_default_region_read_of_a_lower_level(
    pyramid: tuple[Path, np.ndarray], rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    path, plane = pyramid
    with open_image(path) as image:
        region = image.read_region(0, 0, 0, 0, rows, cols, level=1)
        np.testing.assert_array_equal(region, _clipped(plane[::2, ::2], rows, cols))
        assert region.flags.c_contiguous
        full = image.read_region(0, 0, 0, 0, rows, cols)
        np.testing.assert_array_equal(full, _clipped(plane, rows, cols))


def test_default_reads_decode_in_the_calling_thread(reader: NpyReader) -> None:
    """The synchronous scheduler: the caller's decode scope (a context variable) holds."""
    reader.read_plane(0, 1, 1, 1)
    np.testing.assert_array_equal(
        reader.read_region(0, 1, 1, 1, (0, 4), (2, 6), level=1), STACK[1, 1, 1, ::2, ::2][0:4, 2:6]
    )
    assert reader.threads == {threading.get_ident()}


def test_a_lower_level_region_reserves_only_its_own_plane(reader: NpyReader) -> None:
    level1_bytes = 6 * 8 * 2
    fits = budget.DecodeBudget(total_bytes=1 << 20, block_bytes=level1_bytes)
    with budget.decode_scope(fits):
        region = reader.read_region(0, 0, 1, 2, (1, 5), (-2, 3), level=1)
    np.testing.assert_array_equal(region, STACK[0, 1, 2, ::2, ::2][1:5, 0:3])
    assert _reserved(reader, 1) == level1_bytes
    assert _reserved(reader, 0) == 12 * 16 * 2


def test_region_and_plane_indexes_are_checked(reader: NpyReader) -> None:
    with pytest.raises(SceneNotFoundError, match=r"stack.npy: c=3 is out of range \(0..2\)"):
        reader.read_region(0, 0, 3, 0, (0, 1), (0, 1))
    with pytest.raises(SceneNotFoundError, match="scene 1 does not exist"):
        reader.read_region(1, 0, 0, 0, (0, 1), (0, 1))


def test_default_grid_and_levels(reader: NpyReader) -> None:
    assert reader.region_grid(0) is None
    assert reader.region_grid() is None
    assert reader.level_count(0) == 1
    assert reader.level_count() == 1
    for call in (reader.region_grid, reader.level_count):
        with pytest.raises(SceneNotFoundError):
            call(1)


def test_quality_reads_a_scene_or_refuses_a_missing_one(reader: NpyReader) -> None:
    report = reader.quality(0)
    assert len(report["channels"]) == 3
    assert reader.quality() == report
    with pytest.raises(SceneNotFoundError, match="scene 1 does not exist; it has 1"):
        reader.quality(1)


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize("scene", [-1, 1, 5])
def test_scene_info_refuses_scenes_out_of_range(reader: NpyReader, scene: int) -> None:
    with pytest.raises(SceneNotFoundError) as caught:
        reader.scene_info(scene)
    assert str(caught.value) == f"stack.npy: scene {scene} does not exist; it has 1"
    assert caught.value.path == reader.path
    assert reader.scene_info(0).size_c == 3


@pytest.mark.parametrize(
    ("index", "words"),
    [
        ((2, 0, 0), "t=2 is out of range (0..1)"),
        ((-1, 0, 0), "t=-1 is out of range (0..1)"),
        ((0, 3, 0), "c=3 is out of range (0..2)"),
        ((0, -1, 0), "c=-1 is out of range (0..2)"),
        ((0, 0, 4), "z=4 is out of range (0..3)"),
        ((0, 0, -1), "z=-1 is out of range (0..3)"),
    ],
)
def test_plane_indexes_out_of_range(
    reader: NpyReader, index: tuple[int, int, int], words: str
) -> None:
    with pytest.raises(SceneNotFoundError) as caught:
        reader.check_plane_index(0, *index)
    assert str(caught.value) == f"stack.npy: {words}"
    assert caught.value.path == reader.path
    with pytest.raises(SceneNotFoundError):
        reader.read_plane(0, *index)


def test_the_last_plane_index_is_in_range(reader: NpyReader) -> None:
    reader.check_plane_index(0, 1, 2, 3)
    np.testing.assert_array_equal(reader.read_region(0, 1, 2, 3, (0, 12), (0, 16)), STACK[1, 2, 3])


def test_an_empty_shape_is_not_corrupt(reader: NpyReader) -> None:
    reader.check_shape((), "uint8")  # no extent at all: nothing declared negative or zero


@pytest.mark.parametrize("shape", [(1, 1, 0, 4, 4), (1, -2, 1, 4, 4), (1, 1, 1, 4, 4, 0)])
def test_empty_or_negative_shapes_are_corrupt(reader: NpyReader, shape: tuple[int, ...]) -> None:
    with pytest.raises(CorruptFileError) as caught:
        reader.check_shape(shape, "uint8")
    assert str(caught.value) == (
        f"stack.npy: declares an empty or negative size {shape}; the file is corrupt"
    )
    assert caught.value.path == reader.path


def test_declared_shapes_are_checked_against_the_limits(stack_file: Path) -> None:
    limits = ReadLimits(max_plane_bytes=100 * 100 * 3)
    with NpyReader(stack_file, limits=limits) as small:
        assert small.limits is limits
        small.check_shape((1, 1, 1, 100, 100, 3), "uint8")  # a plane of Y, X and S at the limit
        small.check_shape((1, 1, 1, 1, 1), "uint8")
        with pytest.raises(LimitExceededError, match=r"one plane of \(100, 101, 3\)"):
            small.check_shape((1, 1, 1, 100, 101, 3), "uint8")
        with pytest.raises(LimitExceededError, match=r"one plane of \(150, 101\)") as caught:
            small.check_shape((1, 1, 1, 150, 101), "uint16")
        assert caught.value.path == stack_file
    with NpyReader(stack_file) as default:
        assert default.limits == ReadLimits()


# ----------------------------------------------------------------------------- decode budget
def _reserved(reader: ImageReader, level: int) -> int:
    own = budget.DecodeBudget(total_bytes=1 << 30, block_bytes=1 << 30, request_bytes=1 << 40)
    with budget.decode_scope(own), reserve_plane(reader, 0, level):
        return own.in_use


def test_one_plane_is_reserved_for_a_default_read(reader: NpyReader) -> None:
    assert _reserved(reader, 0) == 12 * 16 * 2
    own = budget.DecodeBudget(total_bytes=1 << 30, block_bytes=1 << 30)
    with budget.decode_scope(own), reserve_plane(reader, 0):  # level 0 by default
        assert own.in_use == 12 * 16 * 2
    tight = budget.DecodeBudget(total_bytes=1 << 20, block_bytes=12 * 16 * 2 - 1)
    with (
        budget.decode_scope(tight),
        pytest.raises(LimitExceededError, match=r"stack\.npy: one plane") as caught,
    ):
        reader.read_region(0, 0, 0, 0, (0, 2), (0, 2))
    assert caught.value.path == reader.path
    exact = budget.DecodeBudget(total_bytes=1 << 20, block_bytes=12 * 16 * 2)
    with budget.decode_scope(exact):
        assert reader.read_region(0, 0, 0, 0, (0, 2), (0, 2)).shape == (2, 2)


def test_a_lower_level_reserves_its_own_plane(pyramid: tuple[Path, np.ndarray]) -> None:
    path, _ = pyramid
    with open_image(path) as image:
        assert _reserved(image, 0) == 64 * 48 * 2
        assert _reserved(image, 1) == 32 * 24 * 2


def test_samples_count_in_the_reserved_plane(tmp_path: Path) -> None:
    rgb = np.zeros((1, 1, 32, 32, 3), np.uint8)  # C, Z, Y, X, S
    rgb[..., 0] = 200
    path = write_dicom_wsi(tmp_path / "rgb.dcm", rgb, tile=(16, 16))
    with open_image(path) as image:
        assert image.scenes()[0].samples_per_pixel == 3
        assert _reserved(image, 0) == 32 * 32 * 3


def test_readers_that_reserve_their_own_decodes_reserve_nothing_here(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16))
    with open_image(path) as image:
        assert image.reserves_decodes
        assert _reserved(image, 0) == 0


# ----------------------------------------------------------------------------- life cycle
def test_close_runs_every_closer_once_newest_first(reader: NpyReader) -> None:
    calls: list[str] = []
    reader.close_on_release(lambda: calls.append("first"))
    reader.close_on_release(lambda: calls.append("second"))
    assert not reader.closed
    reader.check_open()
    reader.close()
    assert calls == ["second", "first"]
    assert reader.closed
    reader.close()
    assert calls == ["second", "first"]
    with pytest.raises(ValueError, match=r"^stack.npy: the reader is closed$"):
        reader.check_open()


def test_with_gives_the_reader_and_closes_it(stack_file: Path) -> None:
    opened = NpyReader(stack_file)
    with opened as inside:
        assert inside is opened
        assert not opened.closed
    assert opened.closed


def test_a_reader_pickles_by_its_path_and_limits(stack_file: Path) -> None:
    limits = ReadLimits(max_plane_bytes=12345)
    with NpyReader(str(stack_file), limits=limits) as original:
        assert isinstance(original.path, Path)
        assert original.source == stack_file
        assert repr(original) == f"NpyReader({str(stack_file)!r})"
        reopen, args = original.__reduce__()
        assert callable(reopen)
        assert args == (NpyReader, str(stack_file), limits)
        clone = pickle.loads(pickle.dumps(original))
        try:
            assert type(clone) is NpyReader
            assert clone.path == stack_file
            assert clone.limits == limits
            np.testing.assert_array_equal(clone.read_plane(0, 1, 1, 1), STACK[1, 1, 1])
        finally:
            clone.close()


def test_a_remote_object_is_the_source_and_its_name_the_path() -> None:
    obj = RemoteObject(S3Location("lab", "pre"), S3Options(), "images/ab.npy", "cells.npy")
    remote = NpyReader(obj)
    assert remote.source is obj
    assert remote.path == Path("cells.npy")
    assert repr(remote) == "NpyReader('cells.npy')"
    assert remote.__reduce__()[1][1] is obj
    head = b"\x93NUMPY" + b"\0" * 10
    assert NpyReader.sniff_remote(head, obj)
    other = RemoteObject(S3Location("lab"), S3Options(), "images/ab.npy", "cells.tif")
    assert not NpyReader.sniff_remote(head, other)


def test_no_file_set_and_no_main_file_by_default(stack_file: Path) -> None:
    assert NpyReader.file_set(stack_file, ReadLimits()) is None
    assert NpyReader.main_for_member(stack_file) is None


def test_scene_metadata_names_the_file_format_and_scenes(reader: NpyReader) -> None:
    md = reader.metadata(0)
    assert md.filename == "stack.npy"
    assert md.file_format == "npy-stack"
    assert md.scenes == list(reader.scenes())
    assert md.shape == STACK.shape


def test_plane_count_multiplies_t_c_and_z() -> None:
    info = SceneInfo(index=0, size_t=2, size_c=3, size_z=5, size_y=4, size_x=4, dtype="uint8")
    assert plane_count(info) == 30


def test_nd2_reads_under_the_base_lock(testdata: Path) -> None:
    files = sorted((testdata / "nd2").glob("*.nd2"))
    if not files:
        unavailable("no ND2 file in the corpus")
    with open_image(files[0]) as image:
        plane = image.read_plane(0, 0, 0, 0)
        assert plane.shape[:2] == (image.scenes()[0].size_y, image.scenes()[0].size_x)
        assert image.metadata().file_format == "ND2"


def test_quality_measures_the_scene_asked_for(tmp_path: Path) -> None:
    from tests.synthetic_mm import write_mm_dataset

    files = write_mm_dataset(tmp_path, positions=2, frames=1, channels=1, slices=2)
    with open_image(files[0]) as image:
        first, second = image.quality(0), image.quality(1)
    # the writer's second position is 1000 brighter than its first
    assert first["channels"][0]["intensity_z"] == [50.0, 51.0]
    assert second["channels"][0]["intensity_z"] == [1050.0, 1051.0]
