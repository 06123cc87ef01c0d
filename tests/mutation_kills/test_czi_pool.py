"""CZI: the pool of libCZI readers and libCZI's refusal to open a file (mutation kills).

References: the pool's documented rule (at most ``_MAX_NATIVE_READERS`` libCZI readers on
one file, each lent to one thread at a time; a borrower waits for one to come back; a
failed open gives its place back) and the reader's typed errors (a file libCZI cannot open
is a :class:`CorruptFileError` naming it, with libCZI's message as its detail). Files are
written by pylibCZIrw (``tests/synthetic_czi.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.needs import unavailable
from tests.synthetic_czi import write_czi_stack
from zstack_analyzer import CorruptFileError, LimitExceededError, MetadataError
from zstack_analyzer.readers.czi import _MAX_NATIVE_READERS, CziReader, _NativePool

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def _garbage(path: Path) -> bytes:
    """Replace ``path`` by as many bytes of zeros (libCZI refuses it); return the old bytes."""
    original = path.read_bytes()
    path.write_bytes(bytes(len(original)))
    return original


def test_a_file_libczi_cannot_open_is_a_corrupt_file_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.czi"
    write_czi_stack(path, z=2)
    with CziReader(path) as reader:  # opening reads the header only: libCZI comes with pixels
        _garbage(path)
        with pytest.raises(CorruptFileError) as info:
            reader.read_plane(0, 0, 0, 1)
    error = info.value
    assert str(error).startswith("gone.czi: libCZI cannot open the file: ")
    assert error.path == path
    assert error.detail
    assert str(error) == f"gone.czi: libCZI cannot open the file: {error.detail}"


def test_the_pool_lends_at_most_its_readers_and_reuses_returned_ones(tmp_path: Path) -> None:
    path = tmp_path / "pool.czi"
    expected = write_czi_stack(path, z=2)
    original = _garbage(path)
    pool = _NativePool(path)
    # Failed opens give their place back: as many failures as the pool has places and more.
    for _ in range(_MAX_NATIVE_READERS + 2):
        with pytest.raises(CorruptFileError, match="libCZI cannot open the file"), pool.borrow():
            pass
    path.write_bytes(original)
    got: list[Any] = []
    with contextlib.ExitStack() as stack:
        lent = [stack.enter_context(pool.borrow()) for _ in range(_MAX_NATIVE_READERS)]
        assert len({id(native) for native in lent}) == _MAX_NATIVE_READERS

        def borrow_one() -> None:
            with pool.borrow() as native:
                got.append(native)

        waiter = threading.Thread(target=borrow_one)
        waiter.start()
        # Every place is taken: the thread waits on the pool (or, if it did not, it is done).
        while waiter.is_alive() and not pool._condition._waiters:  # type: ignore[attr-defined]
            waiter.join(0.01)
        stack.pop_all().close()  # every reader back; the waiter takes one of them
        waiter.join(30)
    assert not waiter.is_alive()
    assert len(got) == 1
    assert any(got[0] is native for native in lent)  # a returned reader, not a new one
    plane = got[0].read(plane={"T": 0, "C": 0, "Z": 1})
    np.testing.assert_array_equal(np.asarray(plane)[..., 0], expected[0, 0, 1])
    pool.close()


def _open_on(path: Path) -> int:
    """How many of this process's descriptors are open on ``path``."""
    folder = "/proc/self/fd"
    if not os.path.isdir(folder):
        unavailable("/proc/self/fd (Linux) to see which files are open")
    found = 0
    for fd in os.listdir(folder):
        with contextlib.suppress(OSError):
            found += os.path.realpath(f"{folder}/{fd}") == str(path)
    return found


def test_sequential_reads_share_one_libczi_reader(tmp_path: Path) -> None:
    path = tmp_path / "one.czi"
    expected = write_czi_stack(path, z=3)
    with CziReader(path) as reader:
        assert _open_on(path) == 0  # opening needs no libCZI reader
        for z in (0, 1, 2, 1):
            np.testing.assert_array_equal(reader.read_plane(0, 0, 0, z), expected[0, 0, z])
        assert _open_on(path) == 1
    assert _open_on(path) == 0


def test_the_xml_read_at_open_serves_metadata_later(tmp_path: Path) -> None:
    path = tmp_path / "named.czi"
    write_czi_stack(path, c=2, channel_names=["DAPI", "GFP"])
    with CziReader(path) as reader:
        path.unlink()  # the XML was read with the header: nothing is read again for it
        assert [c.name for c in reader.metadata().channels] == ["DAPI", "GFP"]
        assert "DAPI" in reader.raw_metadata()["xml"]


def test_libczi_running_out_of_memory_is_a_limit(tmp_path: Path) -> None:
    path = tmp_path / "m.czi"
    write_czi_stack(path)
    with CziReader(path) as reader:
        error = reader._wrap(MemoryError(), "reading plane t=0 c=0 z=0")
        other = reader._wrap(RuntimeError("bad"), "reading plane t=0 c=0 z=0")
    assert isinstance(error, LimitExceededError)
    assert str(error) == "m.czi: not enough memory reading plane t=0 c=0 z=0"
    assert error.path == path
    assert isinstance(other, CorruptFileError)
    assert str(other) == "m.czi: libCZI failed reading plane t=0 c=0 z=0: bad"
    assert (other.path, other.detail) == (path, "bad")


def test_xml_that_is_not_utf8_is_read_through_libczi(tmp_path: Path) -> None:
    path = tmp_path / "latin.czi"
    write_czi_stack(path, c=2, channel_names=["CafX", "GFP"])
    path.write_bytes(path.read_bytes().replace(b"CafX", b"Caf\xe9"))  # one byte not UTF-8
    with CziReader(path) as reader:
        assert [c.name for c in reader.metadata().channels] == ["Caf", "GFP"]
        assert reader.raw_metadata()["xml"].startswith('<?xml version="1.0"?>')  # libCZI's copy


def test_xml_neither_we_nor_libczi_can_read_fails_the_same_way_each_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "broken.czi"
    expected = write_czi_stack(path, z=2)
    data = path.read_bytes().replace(b"</ImageDocument>", b"</ImageDocum\xe9nt>")
    path.write_bytes(data)
    with CziReader(path) as reader:
        with pytest.raises(
            MetadataError, match=r"broken\.czi: libCZI cannot read the metadata XML: "
        ) as first:
            reader.metadata()
        assert first.value.path == path
        assert first.value.detail
        assert str(first.value).endswith(first.value.detail)
        with pytest.raises(MetadataError) as second:
            reader.metadata()
        assert second.value is first.value  # parsed once
        with caplog.at_level(logging.DEBUG, logger="zstack_analyzer.readers.czi"):
            assert [s.name for s in reader.scenes()] == [None]  # pixels stay readable
        assert [r.getMessage() for r in caplog.records] == [
            "broken.czi: scene names unavailable (unreadable XML)"
        ]
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 1), expected[0, 0, 1])


def test_metadata_says_where_sizes_channel_and_scene_names_come_from(
    tmp_path: Path, testdata: Path
) -> None:
    path = tmp_path / "plain.czi"
    write_czi_stack(path, c=2, y=6, x=8, channel_names=["DAPI", "GFP"])
    with CziReader(path) as reader:
        md = reader.metadata(0)
    assert md.provenance["sizes"] == "CZI subblock directory (libCZI bounding boxes)"
    assert md.provenance["channels.name"] == (
        "CZI Information/Image/Dimensions/Channels/Channel/@Name"
    )
    assert "scene_name" not in md.provenance
    assert md.pyramid_levels == [(6, 8)]
    with CziReader(testdata / "czi" / "mosaic_test.czi") as reader:
        md = reader.metadata(0)
    assert md.scene_name == "TR1"
    assert md.provenance["scene_name"] == "CZI Information/Image/Dimensions/S/Scenes/Scene/@Name"
    assert md.pyramid_levels == [(624, 1756)]
