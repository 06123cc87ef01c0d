"""Reads of a remote object by ranges (``storage/remote.py``), over obstore's own local store.

Why obstore's ``LocalStore``: ``RangedFile`` talks to any obstore store through the same
``get``/``get_range``/``get_ranges`` calls it makes to S3, so its logic (positions, the size
learnt from the first GET, the block read from the end for a zip, read-ahead that doubles
on sequential reads, direct large reads, the extent cache and its bound, prefetch
coalescing and budget) can be checked byte for byte and request by request, without a
server. The S3 specifics (``store_for``, errors of a bucket that is down) are covered by
the S3 tests.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pytest
from obstore.store import LocalStore

from zstack_analyzer.storage.remote import (
    DIRECT_BYTES,
    MAX_READAHEAD_BYTES,
    RangedFile,
    RemoteObject,
    RemoteReadError,
    S3Location,
    S3Options,
    ranged_totals,
)

if TYPE_CHECKING:
    from pathlib import Path

SIZE = 3 * DIRECT_BYTES + 12345


@pytest.fixture
def data() -> bytes:
    return np.random.default_rng(3).integers(0, 256, SIZE, dtype=np.uint8).tobytes()


@pytest.fixture
def store(tmp_path: Path, data: bytes) -> LocalStore:
    (tmp_path / "obj.bin").write_bytes(data)
    (tmp_path / "empty.bin").write_bytes(b"")
    return LocalStore(str(tmp_path))


def _file(store: LocalStore, **kw: int) -> RangedFile:
    return RangedFile(store, "obj.bin", name="obj.bin", **kw)  # type: ignore[arg-type]


def test_reads_are_the_objects_bytes_wherever_they_start(store: LocalStore, data: bytes) -> None:
    f = _file(store)
    assert f.readable()
    assert f.seekable()
    assert f.name == "obj.bin"
    for start, count in [(0, 10), (5, 100), (1000, 70000), (SIZE - 7, 100), (300000, DIRECT_BYTES)]:
        assert f.seek(start) == start
        assert f.read(count) == data[start : start + count], (start, count)
        assert f.tell() == min(SIZE, start + count)
    f.seek(SIZE - 50)
    assert f.read() == data[-50:]
    f.seek(SIZE - 50)
    assert f.readall() == data[-50:]
    f.seek(SIZE - 50)
    assert f.read(None) == data[-50:]
    assert f.read(10) == b""
    f.seek(SIZE + 100)
    assert f.read(5) == b""
    assert f.size == SIZE


def test_seek_whences(store: LocalStore, data: bytes) -> None:
    f = _file(store)
    assert f.seek(100) == 100
    assert f.seek(50, io.SEEK_CUR) == 150
    assert f.seek(-20, io.SEEK_CUR) == 130
    assert f.seek(-10, io.SEEK_END) == SIZE - 10
    assert f.read() == data[-10:]
    assert f.seek(0, io.SEEK_END) == SIZE
    with pytest.raises(ValueError, match="negative seek position -1"):
        f.seek(-1)
    with pytest.raises(ValueError, match="negative seek position"):
        f.seek(-SIZE - 1, io.SEEK_END)
    with pytest.raises(ValueError, match="invalid whence 7"):
        f.seek(0, 7)
    assert f.tell() == SIZE


def test_the_first_read_from_the_end_fetches_the_last_block(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=4096)
    f.seek(-22, io.SEEK_END)  # a zip's end-of-directory record
    assert f.requests == 1
    assert f.bytes_fetched == 4096
    assert f.read(22) == data[-22:]
    f.seek(-4096, io.SEEK_END)
    assert f.read(4096) == data[-4096:]
    assert f.requests == 1  # all within the block fetched at the seek


def test_the_size_is_learnt_from_the_first_get(store: LocalStore) -> None:
    f = _file(store, block_bytes=1000)
    assert f.size == SIZE
    assert (f.requests, f.bytes_fetched) == (1, 1000)
    assert f.size == SIZE
    assert f.requests == 1


def test_small_reads_fetch_a_block_and_sequential_ones_read_ahead(
    store: LocalStore, data: bytes
) -> None:
    f = _file(store, block_bytes=1000)
    assert f.read(10) == data[:10]
    assert (f.requests, f.bytes_fetched) == (1, 1000)
    assert f.read(990) == data[10:1000]  # within the first block
    assert f.requests == 1
    # Sequential small reads past it: read-ahead doubles (2000, 4000, ...), up to its cap.
    assert f.read(10) == data[1000:1010]
    assert (f.requests, f.bytes_fetched) == (2, 3000)
    assert f.read(1990) == data[1010:3000]  # held
    assert f.requests == 2
    assert f.read(10) == data[3000:3010]
    assert (f.requests, f.bytes_fetched) == (3, 7000)
    # A jump resets read-ahead to one block.
    f.seek(200000)
    assert f.read(10) == data[200000:200010]
    assert (f.requests, f.bytes_fetched) == (4, 8000)


def test_read_ahead_is_capped(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=200000)
    pos = 0
    for _ in range(6):
        f.seek(pos)
        assert f.read(1) == data[pos : pos + 1]
        pos = f.tell()
        before = f.bytes_fetched
        f.seek(pos)
        f.read(1)
        fetched = f.bytes_fetched - before
        assert fetched <= MAX_READAHEAD_BYTES
        pos = f.tell()
        if pos >= SIZE - 10:
            break


def test_a_small_read_near_the_end_fetches_the_block_that_ends_there(
    store: LocalStore, data: bytes
) -> None:
    f = _file(store, block_bytes=1000)
    _ = f.size  # one block at 0
    f.seek(SIZE - 100)
    assert f.read(10) == data[SIZE - 100 : SIZE - 90]
    assert (f.requests, f.bytes_fetched) == (2, 2000)
    f.seek(SIZE - 1000)
    assert f.read(900) == data[SIZE - 1000 : SIZE - 100]  # inside the block moved back
    assert f.requests == 2


def test_large_reads_are_fetched_exactly(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=1000)
    f.seek(5000)
    assert f.read(DIRECT_BYTES) == data[5000 : 5000 + DIRECT_BYTES]
    # The size's block at 5000, then exactly the rest of the read.
    assert f.bytes_fetched == DIRECT_BYTES
    assert f.requests == 2
    buffer = bytearray(DIRECT_BYTES)
    f.seek(400000)
    before = f.requests
    assert f.readinto(buffer) == DIRECT_BYTES
    assert bytes(buffer) == data[400000 : 400000 + DIRECT_BYTES]
    assert f.tell() == 400000 + DIRECT_BYTES
    assert f.requests == before + 1
    # Direct reads are not remembered: the same read fetches again.
    f.seek(400000)
    f.readinto(buffer)
    assert f.requests == before + 2


def test_readinto_small_and_at_the_end(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=1000)
    buffer = bytearray(100)
    f.seek(10)
    assert f.readinto(buffer) == 100
    assert bytes(buffer) == data[10:110]
    f.seek(SIZE - 30)
    assert f.readinto(buffer) == 30
    assert bytes(buffer[:30]) == data[-30:]
    assert f.readinto(buffer) == 0
    array = np.zeros(50, dtype=np.uint16)
    f.seek(0)
    assert f.readinto(array) == 100
    assert array.tobytes() == data[:100]


def test_a_read_whose_start_is_fetched_fetches_only_the_rest(
    store: LocalStore, data: bytes
) -> None:
    f = _file(store, block_bytes=1000)
    f.read(10)  # block 0..1000
    f.seek(900)
    assert f.read(DIRECT_BYTES) == data[900 : 900 + DIRECT_BYTES]
    assert f.bytes_fetched == 1000 + DIRECT_BYTES - 100
    buffer = bytearray(DIRECT_BYTES)
    f.seek(500)
    assert f.readinto(buffer) == DIRECT_BYTES  # its start is held: not a direct read
    assert bytes(buffer) == data[500 : 500 + DIRECT_BYTES]


def test_the_cache_is_bounded_least_recent_out(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=1000, cache_bytes=2500)
    for start in (0, 10000, 20000):
        f.seek(start)
        f.read(1)
    assert f.requests == 3  # three blocks; 0 is dropped (3000 bytes are over 2500)
    f.seek(10000)
    f.read(1)  # held, and now the most recently used
    assert f.requests == 3
    f.seek(0)
    f.read(1)
    assert f.requests == 4  # fetched again; 20000 (least recently used) is dropped
    f.seek(10000)
    f.read(1)
    assert f.requests == 4
    f.seek(20000)
    assert f.read(5) == data[20000:20005]
    assert f.requests == 5


def test_an_extent_larger_than_the_cache_is_not_kept(store: LocalStore) -> None:
    f = _file(store, block_bytes=1000, cache_bytes=500)
    f.read(1)  # the size's block is not kept (larger than the cache), nor the read's
    assert f.requests == 2
    f.seek(0)
    f.read(1)
    assert f.requests == 3


def test_prefetch_coalesces_and_respects_the_budget(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=1000, cache_bytes=10**9)
    f.prefetch([(5000, 6000), (7000, 8000), (300000, 300100), (100, 50)])
    # One GET for the size, one get_ranges for the two coalesced spans (ranges < 1 MiB apart
    # coalesce: 5000..300100 is one span).
    assert f.requests == 2
    before = f.requests
    for start, end in ((5000, 6000), (7000, 8000), (300000, 300100), (6000, 7000)):
        f.seek(start)
        assert f.read(end - start) == data[start:end]
    assert f.requests == before
    # Ranges already held are not fetched again; empty and inverted ones are ignored.
    f.prefetch([(5000, 5500), (9, 9)])
    assert f.requests == before
    # Ranges past the end are cut at the end.
    f.prefetch([(SIZE - 10, SIZE + 1000)])
    f.seek(SIZE - 10)
    assert f.read() == data[-10:]


def test_prefetch_stops_at_the_cache_budget(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=100, cache_bytes=2000)
    _ = f.size
    f.prefetch([(1000, 1500), (1600, 3000)])  # one span of 2000 bytes: exactly the budget
    assert f.requests == 2
    f.seek(1000)
    assert f.read(2000) == data[1000:3000]
    assert f.requests == 2
    f.prefetch([(5000, 7001)])  # 2001 bytes: over the budget, nothing fetched
    assert f.requests == 2
    f.seek(5000)
    assert f.read(2001) == data[5000:7001]


def test_closed_files_refuse_reads(store: LocalStore) -> None:
    f = _file(store)
    f.read(10)
    f.close()
    f.close()
    assert f.closed
    with pytest.raises(ValueError, match=r"obj\.bin: I/O operation on a closed file"):
        f.read(1)
    with pytest.raises(ValueError, match="closed file"):
        f.readinto(bytearray(4))
    with pytest.raises(ValueError, match="closed file"):
        f.prefetch([(0, 10)])


def test_missing_and_empty_objects(store: LocalStore) -> None:
    with pytest.raises(FileNotFoundError):
        RangedFile(store, "missing.bin", name="m").read(1)  # type: ignore[arg-type]
    empty = RangedFile(store, "empty.bin", name="e")  # type: ignore[arg-type]
    assert empty.read(10) == b""
    assert empty.size == 0


def test_totals_count_every_file(store: LocalStore) -> None:
    requests, nbytes = ranged_totals()
    f = _file(store, block_bytes=1000)
    f.read(1)
    assert ranged_totals() == (requests + 1, nbytes + 1000)
    assert (f.requests, f.bytes_fetched) == (1, 1000)


def test_locations_and_remote_objects() -> None:
    assert S3Location.parse("s3://lab/zstack/originals/") == S3Location("lab", "zstack/originals")
    assert S3Location.parse("s3://lab") == S3Location("lab", "")
    for bad in ("http://lab/x", "s3:///x", "lab/x", ""):
        with pytest.raises(ValueError, match="expected s3://BUCKET/PREFIX"):
            S3Location.parse(bad)
    obj = RemoteObject(S3Location("lab", "pre"), S3Options(), "images/ab.tif", "cells.tif")
    assert str(obj) == "s3://lab/pre/images/ab.tif"
    assert obj.path.name == "cells.tif"
    bare = RemoteObject(S3Location("lab"), S3Options(), "ab.tif", "ab.tif")
    assert str(bare) == "s3://lab/ab.tif"
    options = S3Options(access_key_id="k", secret_access_key="hidden")  # noqa: S106
    assert "hidden" not in repr(options)


MiB = 1 << 20


@pytest.fixture
def big(tmp_path: Path) -> tuple[LocalStore, bytes]:
    blob = np.random.default_rng(5).integers(0, 256, 3 * MiB + 4096, dtype=np.uint8).tobytes()
    (tmp_path / "big.bin").write_bytes(blob)
    return LocalStore(str(tmp_path)), blob


def _big(store: LocalStore, **kw: int) -> RangedFile:
    return RangedFile(store, "big.bin", name="big.bin", **kw)  # type: ignore[arg-type]


def test_prefetch_takes_spans_in_order_while_the_budget_lasts(
    big: tuple[LocalStore, bytes],
) -> None:
    store, blob = big
    f = _big(store, block_bytes=10, cache_bytes=250)
    _ = f.size  # 10 bytes at 0
    f.prefetch([(1000, 1100), (MiB + 5000, MiB + 5120), (3 * MiB, 3 * MiB + 40)])
    # 100 + 120 fit the 250-byte budget; the 40 after them do not (230 + 40 > 250).
    # (A prefetch counts one request per range it fetches.)
    assert (f.requests, f.bytes_fetched) == (3, 10 + 220)
    for start, end in ((1000, 1100), (MiB + 5000, MiB + 5120)):
        f.seek(start)
        assert f.read(end - start) == blob[start:end]
    assert f.requests == 3


def test_prefetch_coalesces_ranges_up_to_one_mebibyte_apart(
    big: tuple[LocalStore, bytes],
) -> None:
    store, _ = big
    f = _big(store, block_bytes=10)
    _ = f.size
    f.prefetch([(100, 200), (200 + MiB, 300 + MiB)])  # exactly 1 MiB apart: one span
    assert (f.requests, f.bytes_fetched) == (2, 10 + 200 + MiB)
    g = _big(store, block_bytes=10)
    _ = g.size
    g.prefetch([(100, 200), (201 + MiB, 301 + MiB)])  # one byte more: two spans
    assert (g.requests, g.bytes_fetched) == (3, 10 + 200)


def test_prefetch_learns_the_size_from_the_first_block(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=100)
    f.prefetch([(0, 5)])  # inside the first block, which the size's GET fetched
    assert (f.requests, f.bytes_fetched) == (1, 100)
    g = _file(store, block_bytes=10)
    _ = g.size
    g.prefetch([(0, 50)])
    assert g.bytes_fetched == 10 + 50
    before = g.requests
    g.prefetch([(SIZE, SIZE + 10)])  # empty once cut at the end: nothing to fetch
    assert g.requests == before


def test_read_zero_and_readinto_at_the_end_fetch_nothing(store: LocalStore) -> None:
    f = _file(store, block_bytes=100)
    f.seek(50)
    assert f.read(0) == b""
    assert f.tell() == 50
    g = _file(store, block_bytes=100)
    _ = g.size
    g.seek(SIZE)
    assert g.readinto(bytearray(10)) == 0
    assert g.requests == 1


def test_a_read_of_exactly_the_direct_size_is_not_kept(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=100)
    _ = f.size
    for _ in range(2):
        f.seek(400000)
        assert f.read(DIRECT_BYTES) == data[400000 : 400000 + DIRECT_BYTES]
    assert (f.requests, f.bytes_fetched) == (3, 100 + 2 * DIRECT_BYTES)


def test_a_direct_readinto_is_followed_by_read_ahead(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=100)
    _ = f.size
    f.seek(300000)
    f.readinto(bytearray(DIRECT_BYTES))
    before = f.bytes_fetched
    assert f.read(10) == data[300000 + DIRECT_BYTES : 300010 + DIRECT_BYTES]
    assert f.bytes_fetched - before == 200  # sequential: the read-ahead doubled


def test_a_held_start_is_used_by_readinto(store: LocalStore, data: bytes) -> None:
    f = _file(store, block_bytes=1000)
    f.read(10)
    buffer = bytearray(DIRECT_BYTES)
    f.seek(500)
    f.readinto(buffer)
    assert bytes(buffer) == data[500 : 500 + DIRECT_BYTES]
    assert f.bytes_fetched == 1000 + DIRECT_BYTES - 500


def test_an_extent_fetched_again_replaces_the_old_one_in_the_count(store: LocalStore) -> None:
    f = _file(store, block_bytes=1000, cache_bytes=2500)
    _ = f.size  # 1000 bytes at 0
    f.prefetch([(0, 1500)])  # replaces them: 1500 held, not 2500
    f.seek(10000)
    f.read(1)  # 1000 more: 2500 held, exactly the cache
    requests = f.requests
    f.seek(0)
    f.read(1500)  # still held
    f.seek(10000)
    f.read(1)
    assert f.requests == requests


def test_two_extents_over_the_cache_keep_the_newest(store: LocalStore) -> None:
    f = _file(store, block_bytes=1000, cache_bytes=1500)
    _ = f.size
    f.seek(10000)
    f.read(1)
    f.seek(10000)
    f.read(1)
    assert f.requests == 2
    f.seek(0)
    f.read(1)  # dropped when the second came
    assert f.requests == 3


def test_a_prefix_starting_with_the_strip_character() -> None:
    assert S3Location.parse("s3://lab/Xrays/") == S3Location("lab", "Xrays")


def test_a_fresh_process_counts_from_zero_across_threads(tmp_path: Path) -> None:
    """``ranged_totals`` of a new process starts at (0, 0) and adds every file's GETs.

    In a child process: the count is made at import, which a test in this process
    cannot see again.
    """
    import subprocess
    import sys

    (tmp_path / "o.bin").write_bytes(bytes(range(256)) * 400)
    script = f"""
import threading
from obstore.store import LocalStore
from zstack_analyzer.storage.remote import RangedFile, ranged_totals
assert ranged_totals() == (0, 0), ranged_totals()
store = LocalStore({str(tmp_path)!r})
def one():
    RangedFile(store, "o.bin", name="o.bin", block_bytes=1000).read(5)
threads = [threading.Thread(target=one) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(ranged_totals())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(4, 4000)"


def test_an_object_that_shrinks_under_the_reader_is_a_remote_read_error(
    store: LocalStore, tmp_path: Path
) -> None:
    """The size was learnt from the first GET; a later GET past the new end names the file."""
    f = _file(store)
    fresh = _file(store)
    assert len(f.read(10)) == 10
    (tmp_path / "obj.bin").write_bytes(b"x" * 100)
    f.seek(2 * DIRECT_BYTES)
    with pytest.raises(RemoteReadError) as caught:
        f.read(DIRECT_BYTES)  # a direct read
    # The store's own error is kept in the message (what went wrong, for the log).
    cause = caught.value.__cause__
    assert cause is not None
    assert "Requested range was invalid" in str(cause)
    assert str(caught.value) == f"obj.bin: ranged read from object storage failed: {cause}"
    with pytest.raises(RemoteReadError) as caught:
        f.prefetch([(DIRECT_BYTES, DIRECT_BYTES + 10)])
    cause = caught.value.__cause__
    assert "Requested range was invalid" in str(cause)
    assert str(caught.value) == f"obj.bin: ranged read from object storage failed: {cause}"
    # A fresh file's first read past the (new) end is at EOF, as in any file.
    fresh.seek(DIRECT_BYTES)
    assert fresh.read(1) == b""
    assert fresh.size == 100


def test_a_first_read_at_or_past_the_end_is_at_eof(store: LocalStore) -> None:
    """Regression: the block GET of a first read past the end is refused (S3's 416), which was
    reported as a RemoteReadError (storage unavailable) instead of the end of the file."""
    past = _file(store)
    past.seek(SIZE + 100)
    assert past.read(1) == b""
    assert past.tell() == SIZE + 100
    assert past.size == SIZE
    at_end = _file(store)
    at_end.seek(SIZE)
    assert at_end.readinto(bytearray(10)) == 0
    assert at_end.size == SIZE


def test_empty_object_read_from_its_end(store: LocalStore) -> None:
    """A suffix GET of an empty object is refused too: the HEAD's size 0 says it is empty."""
    empty = RangedFile(store, "empty.bin", name="e")  # type: ignore[arg-type]
    assert empty.seek(0, io.SEEK_END) == 0
    assert empty.read() == b""


class _FailingGets:
    """A loopback HTTP server whose GETs fail (500) and whose HEAD answers per path."""

    def __init__(self) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:
                if self.path.endswith("/sized.bin"):
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.send_header("Last-Modified", "Mon, 07 Dec 2026 10:00:00 GMT")
                else:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_failing_get_is_a_remote_read_error_naming_its_cause() -> None:
    """The server fails the block GET: with or without a size from HEAD, the error says why."""
    import datetime

    from obstore.store import HTTPStore

    server = _FailingGets()
    try:
        store = HTTPStore.from_url(
            server.url,
            client_options={"allow_http": True},
            retry_config={"max_retries": 0, "retry_timeout": datetime.timedelta(seconds=5)},
        )
        for key in ("sized.bin", "unsized.bin"):
            f = RangedFile(store, key, name=key)  # type: ignore[arg-type]
            with pytest.raises(RemoteReadError) as caught:
                f.read(1)
            cause = caught.value.__cause__
            assert cause is not None
            assert str(caught.value) == f"{key}: ranged read from object storage failed: {cause}"
    finally:
        server.close()
