"""The S3 backend (``storage/s3.py``) against a real S3 server: what its own tests leave open.

Object keys under the prefix, part sizes of uploads (the multipart ETag counts the parts),
streamed GETs in chunks of at least ``GET_CHUNK_BYTES``, empty ranges, the local cache's
bound (exactly at the bound, the copy being kept, least recently used first out, a copy
touched by a read), failures named as storage failures (and a failed fetch leaving nothing),
the sweep's grace, cache and log line. The server is the session's ``s3_server`` (or the
one ``ZSTACK_TEST_S3_ENDPOINT`` names, for mutation runs: see ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import obstore
import pytest

from zstack_analyzer.storage.base import StorageUnavailableError
from zstack_analyzer.storage.s3 import GET_CHUNK_BYTES, S3Location, S3Storage

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.s3server import S3Server

MiB = 1024 * 1024
#: Buckets made by the running test, deleted after it (see :func:`_drop_buckets`).
_MADE: list[tuple[S3Server, str]] = []


@pytest.fixture(autouse=True)
def _drop_buckets() -> Iterator[None]:
    """Delete each test's buckets: SeaweedFS gives a bucket 7 volumes of its 1,000, so a
    server shared by a whole mutation run (thousands of tests) would run out after ~140."""
    yield
    while _MADE:
        server, bucket = _MADE.pop()
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{server.endpoint}/{bucket}", timeout=30)


def _storage(
    server: S3Server, tmp_path: Path, *, bound: int = 8 * MiB, **options: int
) -> S3Storage:
    bucket = server.create_bucket()
    _MADE.append((server, bucket))
    storage = S3Storage(
        S3Location(bucket, "lab/originals"),
        server.options(**{"part_bytes": 5 * MiB, "max_concurrency": 2, **options}),
        tmp_dir=tmp_path / "tmp" / "in-flight",
        cache_dir=tmp_path / "cache" / "objects",
        cache_max_bytes=bound,
    )
    storage.ensure_dirs()
    return storage


def _unreachable(tmp_path: Path) -> S3Storage:
    """A storage whose endpoint nobody listens on (port 1): every request fails at once."""
    from zstack_analyzer.storage.remote import S3Options

    options = S3Options(
        endpoint_url="http://127.0.0.1:1",
        access_key_id="k",
        secret_access_key="s",  # noqa: S106 - nobody listens
        region="us-east-1",
        allow_http=True,
    )
    storage = S3Storage(
        S3Location("gone", "p"),
        options,
        tmp_dir=tmp_path / "tmp",
        cache_dir=tmp_path / "cache",
        cache_max_bytes=MiB,
    )
    storage.ensure_dirs()
    return storage


def _commit(storage: S3Storage, name: str, data: bytes, *, mtime: float | None = None) -> Path:
    temp = storage.temp_path(name)
    temp.write_bytes(data)
    if mtime is not None:
        os.utime(temp, (mtime, mtime))
    return storage.commit(temp, name)


def _cached(storage: S3Storage) -> list[str]:
    return sorted(p.name for p in storage.cache_dir.iterdir())


@pytest.fixture
def storage(s3_server: S3Server, tmp_path: Path) -> S3Storage:
    return _storage(s3_server, tmp_path)


def test_objects_are_images_slash_name_below_the_prefix(
    storage: S3Storage, s3_server: S3Server
) -> None:
    assert S3Storage.key("a.tif") == "images/a.tif"
    _commit(storage, "a.tif", b"abc")
    whole = obstore.store.S3Store(
        storage.location.bucket,
        config={"endpoint": s3_server.endpoint, "skip_signature": True, "region": "us-east-1"},
        client_options={"allow_http": True},
    )
    keys = [str(m["path"]) for batch in obstore.list(whole) for m in batch]
    assert keys == ["lab/originals/images/a.tif"]
    assert storage.temp_path("x.czi") == storage.tmp_dir / "x.czi"
    storage.ensure_dirs()  # again: the folders exist, no error
    assert storage.tmp_dir.is_dir() and storage.cache_dir.is_dir()
    assert storage.is_local is False


def test_a_commit_uploads_in_parts_of_part_bytes_and_keeps_the_copy(storage: S3Storage) -> None:
    data = os.urandom(12 * MiB + 1)
    final = _commit(storage, "big.tif", data)
    assert final == storage.cache_dir / "big.tif"
    assert final.read_bytes() == data
    assert not storage.temp_path("big.tif").exists()
    meta = obstore.head(storage.store, storage.key("big.tif"))
    assert str(meta["e_tag"]).strip('"').endswith("-3")  # 5 + 5 + 2 MiB
    assert storage.size("big.tif") == len(data)
    assert isinstance(storage.size("big.tif"), int)


def test_a_mirrored_commit_uploads_nothing_more(storage: S3Storage) -> None:
    temp = storage.temp_path("m.tif")
    temp.write_bytes(b"local only")
    final = storage.commit(temp, "m.tif", mirrored=True)
    assert final.read_bytes() == b"local only"
    assert storage.size("m.tif") is None  # the mirror would have written the object
    mirror = storage.open_mirror("m2.tif")
    assert mirror.write(b"0123456789") == 10
    assert mirror.write(memoryview(b"abc")) == 3
    mirror.close()
    assert b"".join(storage.iter_range("m2.tif", 0, 13)) == b"0123456789abc"


def test_a_mirror_uploads_in_parts_of_part_bytes(s3_server: S3Server, tmp_path: Path) -> None:
    storage = _storage(s3_server, tmp_path, part_bytes=6 * MiB)
    mirror = storage.open_mirror("p.tif")
    mirror.write(os.urandom(13 * MiB))
    mirror.close()
    meta = obstore.head(storage.store, storage.key("p.tif"))
    assert str(meta["e_tag"]).strip('"').endswith("-3")  # 6 + 6 + 1 MiB


def test_a_mirror_refuses_writes_after_close_as_a_storage_failure(storage: S3Storage) -> None:
    mirror = storage.open_mirror("c.tif")
    mirror.write(b"x")
    mirror.close()
    with pytest.raises(StorageUnavailableError) as info:
        mirror.write(b"y")
    assert str(info.value) == "upload to object storage failed: Writer already closed."
    with pytest.raises(StorageUnavailableError) as info:
        mirror.close()
    assert str(info.value) == "upload to object storage failed: Writer already closed."
    mirror.abort()  # nothing left to abort: no error either
    assert b"".join(storage.iter_range("c.tif", 0, 1)) == b"x"


def test_an_aborted_mirror_leaves_no_object_even_after_many_parts(
    storage: S3Storage, s3_server: S3Server
) -> None:
    uploads = f"{s3_server.endpoint}/{storage.location.bucket}?uploads"
    mirror = storage.open_mirror("a.tif")
    mirror.write(os.urandom(11 * MiB))  # two parts sent already
    assert "<Upload>" in httpx.get(uploads, timeout=30).text  # a multipart upload in flight
    mirror.abort()
    assert "<Upload>" not in httpx.get(uploads, timeout=30).text  # aborted, its parts gone
    assert storage.size("a.tif") is None
    assert storage.stored_objects() == []


def test_failures_of_the_bucket_are_storage_failures(tmp_path: Path) -> None:
    storage = _unreachable(tmp_path)
    mirror = storage.open_mirror("u.tif")
    mirror.write(b"x")
    with pytest.raises(StorageUnavailableError) as info:
        mirror.close()
    assert str(info.value).startswith("upload to object storage failed: ")
    (storage.cache_dir / "d.tif").write_bytes(b"copy")
    with pytest.raises(StorageUnavailableError) as info:
        storage.remove("d.tif")
    assert str(info.value).startswith("delete to object storage failed: ")
    assert "127.0.0.1:1" in str(info.value)  # the client's own error, not lost
    assert not (storage.cache_dir / "d.tif").exists()  # the copy goes first


def test_ranges_stream_in_chunks_of_at_least_get_chunk_bytes(storage: S3Storage) -> None:
    assert 8 * MiB == GET_CHUNK_BYTES
    data = os.urandom(20 * MiB)
    _commit(storage, "r.bin", data)
    chunks = list(storage.iter_range("r.bin", 0, len(data)))
    assert all(type(chunk) is bytes for chunk in chunks)
    assert b"".join(chunks) == data
    assert len(chunks) >= 2
    assert all(8 * MiB <= len(chunk) < 9 * MiB for chunk in chunks[:-1])
    assert list(storage.iter_range("r.bin", 5, 5)) == []
    assert list(storage.iter_range("r.bin", 6, 5)) == []
    assert b"".join(storage.iter_range("r.bin", 5, 6)) == data[5:6]
    copy = storage.cache_dir / "r.bin"
    copy.unlink()
    assert storage.path("r.bin").read_bytes() == data  # fetched in the same chunks


def test_the_cache_holds_exactly_its_bound(s3_server: S3Server, tmp_path: Path) -> None:
    storage = _storage(s3_server, tmp_path, bound=3000)
    now = time.time()
    _commit(storage, "a", b"a" * 1000, mtime=now - 30)
    _commit(storage, "b", b"b" * 1000, mtime=now - 20)
    _commit(storage, "c", b"c" * 1000, mtime=now - 10)
    assert _cached(storage) == ["a", "b", "c"]  # 3000 <= 3000: nothing out
    _commit(storage, "d", b"d" * 1500, mtime=now)
    assert _cached(storage) == ["c", "d"]  # the two oldest out, and no more
    assert storage.path("a").read_bytes() == b"a" * 1000  # fetched back: it is the newest now
    assert _cached(storage) == ["a", "d"]


def test_the_copy_just_committed_stays_even_alone_over_the_bound(
    s3_server: S3Server, tmp_path: Path
) -> None:
    storage = _storage(s3_server, tmp_path, bound=1000)
    _commit(storage, "small", b"s" * 600, mtime=time.time())
    old = time.time() - 3600  # an upload whose temp file is older than the cached copies
    final = _commit(storage, "old", b"o" * 1500, mtime=old)
    assert _cached(storage) == ["old"]  # kept although the oldest; the others go past it
    assert final.read_bytes() == b"o" * 1500
    assert storage.path("old") == final
    assert _cached(storage) == ["old"]


def test_a_read_marks_the_copy_most_recently_used(s3_server: S3Server, tmp_path: Path) -> None:
    storage = _storage(s3_server, tmp_path, bound=2000)
    now = time.time()
    _commit(storage, "a", b"a" * 1000, mtime=now - 100)
    _commit(storage, "b", b"b" * 1000, mtime=now - 50)
    before = (storage.cache_dir / "a").stat().st_mtime
    assert storage.path("a") == storage.cache_dir / "a"  # a hit: touched
    assert (storage.cache_dir / "a").stat().st_mtime > before
    _commit(storage, "c", b"c" * 1000, mtime=now - 10)
    assert _cached(storage) == ["a", "c"]  # b, now the least recently used, is out
    assert storage.cached_copy("b") is None
    os.utime(storage.cache_dir / "c", (now - 200, now - 200))
    assert storage.cached_copy("c") == storage.cache_dir / "c"
    assert (storage.cache_dir / "c").stat().st_mtime > now - 100  # touched too
    _commit(storage, "d", b"d" * 1000, mtime=now - 5)
    assert _cached(storage) == ["c", "d"]


def test_a_failed_fetch_leaves_no_partial_copy(
    storage: S3Storage, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(FileNotFoundError) as info:
        storage.path("missing.tif")
    assert "not found" in str(info.value)  # the bucket's answer, not the cleanup's
    assert list(storage.tmp_dir.iterdir()) == []
    assert list(storage.cache_dir.iterdir()) == []
    _commit(storage, "here.tif", b"h" * 10)
    (storage.cache_dir / "here.tif").unlink()
    with caplog.at_level(logging.INFO, logger="zstack_analyzer.storage.s3"):
        assert storage.path("here.tif").read_bytes() == b"h" * 10
    assert "fetched here.tif from the bucket into the local cache" in caplog.messages
    assert list(storage.tmp_dir.iterdir()) == []


def test_one_lock_per_stored_name(storage: S3Storage) -> None:
    """Concurrent readers of one object wait for one fetch (``path`` holds the name's lock)."""
    assert storage._lock("a") is storage._lock("a")
    assert storage._lock("a") is not storage._lock("b")
    data = os.urandom(3 * MiB)
    _commit(storage, "shared.tif", data)
    (storage.cache_dir / "shared.tif").unlink()
    results: list[bytes] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            results.append(storage.path("shared.tif").read_bytes())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [data] * 4


def test_remote_object_names_the_key(storage: S3Storage) -> None:
    remote = storage.remote_object("x.tif")
    assert remote.location == storage.location
    assert remote.options == storage.options
    assert remote.key == "images/x.tif"
    assert remote.name == "x.tif"


def test_remove_without_a_local_copy(storage: S3Storage) -> None:
    _commit(storage, "r.tif", b"r")
    (storage.cache_dir / "r.tif").unlink()
    assert storage.remove("r.tif") is True
    assert storage.size("r.tif") is None
    assert storage.remove("r.tif") is False


def test_stored_objects_are_names_with_their_times(storage: S3Storage) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    _commit(storage, "one.tif", b"1")
    _commit(storage, "two.czi", b"2")
    found = dict(storage.stored_objects())
    assert sorted(found) == ["one.tif", "two.czi"]
    for modified in found.values():
        assert before <= modified <= datetime.now(UTC) + timedelta(seconds=5)


def test_the_sweep_keeps_young_files_and_logs_what_it_removed(
    storage: S3Storage, caplog: pytest.LogCaptureFixture
) -> None:
    old = time.time() - 7200
    _commit(storage, "kept.tif", b"k")
    _commit(storage, "orphan.tif", b"o")
    os.utime(storage.cache_dir / "orphan.tif", (old, old))
    os.utime(storage.cache_dir / "kept.tif", (old, old))
    (storage.cache_dir / "young-orphan.tif").write_bytes(b"y")
    (storage.tmp_dir / "old.upload").write_bytes(b"z")
    os.utime(storage.tmp_dir / "old.upload", (old, old))
    (storage.tmp_dir / "new.upload").write_bytes(b"n")
    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.storage.s3"):
        report = storage.sweep({"kept.tif"}, grace_seconds=3600)
    assert report.temp_files == ["old.upload"]
    assert report.orphan_files == []  # the orphan object is younger than the grace
    assert sorted(p.name for p in storage.tmp_dir.iterdir()) == ["new.upload"]
    assert _cached(storage) == ["kept.tif", "young-orphan.tif"]  # the old orphan copy is out
    assert caplog.messages == [
        "start-up sweep removed 1 temp file(s) and 0 orphan object(s) in s3://"
        f"{storage.location.bucket}/lab/originals"
    ]
    caplog.clear()
    time.sleep(1.1)  # S3 times have one-second resolution
    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.storage.s3"):
        report = storage.sweep({"kept.tif"})
    assert report.orphan_files == ["orphan.tif"]
    assert report.temp_files == ["new.upload"]
    assert [name for name, _ in storage.stored_objects()] == ["kept.tif"]
    assert caplog.messages == [
        "start-up sweep removed 1 temp file(s) and 1 orphan object(s) in s3://"
        f"{storage.location.bucket}/lab/originals"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.storage.s3"):
        report = storage.sweep({"kept.tif"})
    assert report.orphan_files == [] and report.temp_files == []
    assert caplog.messages == []  # nothing removed, nothing said


def test_the_sweep_without_local_folders(s3_server: S3Server, tmp_path: Path) -> None:
    storage = _storage(s3_server, tmp_path)
    _commit(storage, "o.tif", b"o")
    storage.tmp_dir.rmdir()
    for path in storage.cache_dir.iterdir():
        path.unlink()
    storage.cache_dir.rmdir()
    time.sleep(1.1)
    report = storage.sweep(set())
    assert report.temp_files == [] and report.orphan_files == ["o.tif"]
