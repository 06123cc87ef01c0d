"""images_service.py beyond in-place registration: rows, views, lookups, the memo, tombstones, sources.

Found by mutation testing (the first round measured only the in-place functions): the
columns a row takes from a real file, the list and API views of a row, 404 messages,
the record memo's TTL, LRU bound and tombstones, tombstone pruning, which source a
reader opens on local and object storage, and the in-place checks of a symlink, a
FIFO or a swapped file were not pinned. The database is a migrated SQLite copy; the
files are real (/work/shared/testdata) or made here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import (
    add_group,
    add_image,
    add_user,
)
from zstack_analyzer.errors import LimitExceededError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.service import images_service as svc
from zstack_analyzer.service.auth.labels import labels_for
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.quality import ImageQuality
from zstack_analyzer.service.db.session import Database
from zstack_analyzer.service.errors import (
    ImageNotFoundError,
    NotRegularFileError,
    OriginalChangedError,
    OriginalMissingError,
)

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.schemas import ImageSummary

TEXT_STACK = Path("/work/shared/testdata/ome-tiff/18x24y5z5t2c8b-text.ome.tiff")
SPOTS = Path("/work/shared/testdata/imagej/xyzc_16bit__spots.tif")


def _row(session: Session, image_id: uuid.UUID) -> Image:
    image = session.get(Image, image_id)
    assert image is not None
    return image


# ---------------------------------------------------------------------------- rows and views


def test_a_row_takes_every_column_from_a_real_file(session: Session) -> None:
    metadata, scenes = svc.inspect_file(SPOTS, ReadLimits())
    image_id = uuid.uuid4()
    row = svc.build_image(
        image_id=image_id,
        filename="spots.tif",
        stored_name="abc",
        size_bytes=123,
        sha256="f" * 64,
        metadata=metadata,
        scenes=scenes,
    )
    assert (row.id, row.filename, row.stored_name, row.size_bytes, row.sha256) == (
        image_id,
        "spots.tif",
        "abc",
        123,
        "f" * 64,
    )
    assert (row.format, row.width, row.height, row.depth, row.channels, row.timepoints) == (
        metadata.file_format,
        89,
        88,
        17,
        2,
        1,
    )
    assert (row.samples_per_pixel, row.bit_depth, row.dtype) == (1, 16, "uint16")
    assert row.pixel_size_x == pytest.approx(0.0941344539)
    assert row.pixel_size_y == pytest.approx(0.0941344539)
    assert row.pixel_size_z == pytest.approx(0.4)
    assert "scenes" not in row.image_metadata
    assert row.image_metadata["filename"] == "spots.tif"
    assert row.image_metadata["size_z"] == 17
    assert [s["size_z"] for s in row.scenes] == [17]
    assert row.thumbnail_ready is False and row.stored_in_place is False
    assert (row.source_path, row.source_size, row.source_mtime_ns) == (None, None, None)
    placed = svc.build_image(
        image_id=uuid.uuid4(),
        filename="t.tif",
        stored_name="inplace-x",
        size_bytes=1,
        sha256="0" * 64,
        metadata=metadata,
        scenes=scenes,
        stored_in_place=True,
        source_path="/data/t.tif",
        source_size=7,
        source_mtime_ns=99,
    )
    assert (placed.stored_in_place, placed.source_path, placed.source_size) == (
        True,
        "/data/t.tif",
        7,
    )
    assert placed.source_mtime_ns == 99
    session.add(row)
    session.commit()
    stored = _row(session, image_id)
    public = svc.to_public(stored)
    assert public.metadata["scenes"] == stored.scenes
    assert public.metadata["filename"] == "spots.tif"
    assert public.scene_count == 1 and public.depth == 17 and public.channels == 2


def test_metadata_is_stored_as_json_writes_it() -> None:
    czi = Path("/work/shared/testdata/czi/CD_s_1_t_3_c_2_z_5.czi")
    metadata, scenes = svc.inspect_file(czi, ReadLimits())
    row = svc.build_image(
        image_id=uuid.uuid4(),
        filename="cd.czi",
        stored_name="x",
        size_bytes=1,
        sha256="0" * 64,
        metadata=metadata,
        scenes=scenes,
    )
    # Pydantic's JSON form of a UTC time (a "Z"), as every record made before.
    assert row.image_metadata["acquired_at"] == "2016-02-12T09:41:02.491560Z"
    assert len(row.scenes) == len(scenes)
    # The limits given are the reader's.
    with pytest.raises(LimitExceededError):
        svc.inspect_file(SPOTS, ReadLimits(max_plane_bytes=1000))


@pytest.fixture(autouse=True)
def _unconfined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no import roots confined, and leaves them as it found them.

    Why: ``confine_reads`` confines the whole process and its roots add up; in a full
    run, apps made by earlier tests in the same worker confined their own roots, and
    this module's in-place records (in their own temporary folders) were refused as
    leading outside them.
    """
    from zstack_analyzer import confine

    monkeypatch.setattr(confine._STATE, "real", ())
    monkeypatch.setattr(confine._STATE, "prefixes", ())


def _summaries(session: Session, rows: list[Image]) -> list[ImageSummary]:
    """The list's summaries of ``rows`` (``image_summaries.summaries_page``), in their order."""
    from zstack_analyzer.service.image_summaries import summaries_page

    page, total = summaries_page(
        session, [Image.id.in_([row.id for row in rows])], skip=0, limit=len(rows)
    )
    assert total == len(rows)
    by_id = {summary.id: summary for summary in page}
    return [by_id[row.id] for row in rows]


def test_list_and_api_views_of_rows(session: Session) -> None:
    group = add_group(session, "lab", Permission.READ_ONLY)
    alice = add_user(session, "alice", {group: False})
    scenes = [{"size_x": 32, "size_y": 24}, {"size_x": 5, "size_y": 4}]
    copied = _row(session, add_image(session, "a.tif", owner_id=alice, group_id=group))
    placed = _row(
        session,
        add_image(
            session,
            "b.tif",
            source_path="/data/b.tif",
            stored_in_place=True,
            scenes=scenes,
            thumbnail_ready=True,
        ),
    )
    sourced = _row(session, add_image(session, "c.tif", source_path="/data/c.tif"))
    session.add(
        ImageQuality(
            image_id=copied.id, scene=0, max_saturated_fraction=0.5, focus_edge=True, data={}
        )
    )
    session.commit()
    summaries = _summaries(session, [copied, placed, sourced])
    assert [(s.owner, s.group, s.owner_id, s.group_id) for s in summaries[:1]] == [
        ("alice", "lab", alice, group)
    ]
    assert summaries[0].quality_flags == ["saturated", "focus at edge"]
    assert summaries[1].quality_flags == []
    assert [s.scene_count for s in summaries] == [1, 2, 1]
    assert [s.stored_in_place for s in summaries] == [False, True, False]
    assert [s.source_path for s in summaries] == [None, "/data/b.tif", None]
    assert [s.thumbnail_ready for s in summaries] == [False, True, False]
    assert summaries[0].created_at.tzinfo is not None
    columns = (
        "id", "filename", "width", "height", "depth", "channels", "bit_depth", "pixel_size_x",
        "pixel_size_y", "pixel_size_z", "format", "size_bytes", "sha256", "timepoints",
        "samples_per_pixel", "dtype",
    )  # fmt: skip
    spots = _row(
        session,
        add_image(
            session,
            "s.tif",
            width=89,
            height=88,
            depth=17,
            channels=2,
            bit_depth=12,
            pixel_size_x=0.1,
            pixel_size_y=0.2,
            pixel_size_z=0.4,
            size_bytes=4321,
            sha256="ab" * 32,
            timepoints=3,
            samples_per_pixel=3,
            dtype="uint16",
            format="TIFF",
            image_metadata={"vendor_metadata": {"slide_format": "svs"}},
        ),
    )
    for view in (*_summaries(session, [spots]), svc.to_public(spots)):
        assert {c: getattr(view, c) for c in columns} == {c: getattr(spots, c) for c in columns}
        assert view.format_variant == "SVS"

    labels = labels_for(session, [copied])
    public = svc.to_public(copied, labels)
    assert (public.owner, public.group, public.owner_id, public.group_id) == (
        "alice",
        "lab",
        alice,
        group,
    )
    assert svc.to_public(copied).owner is None and svc.to_public(copied).group is None
    assert public.created_at.utcoffset() is not None
    assert public.created_at.replace(tzinfo=None) == copied.created_at.replace(tzinfo=None)
    assert public.metadata == {"scenes": []}
    assert public.scene_count == 1
    other = svc.to_public(placed)
    assert (other.scene_count, other.stored_in_place, other.source_path) == (
        2,
        True,
        "/data/b.tif",
    )
    assert other.scenes == scenes and other.thumbnail_ready is True
    assert svc.to_public(sourced).source_path is None
    # The metadata's own scene list (older rows) is kept; else the column's is added.
    placed.image_metadata = {"scenes": ["own"], "x": 1}
    assert svc.full_metadata(placed) == {"scenes": ["own"], "x": 1}
    placed.image_metadata = {"x": 1}
    assert svc.full_metadata(placed) == {"x": 1, "scenes": scenes}
    assert placed.image_metadata == {"x": 1}  # not changed in place
    aware = svc._aware(copied.created_at.replace(tzinfo=UTC))
    assert aware.tzinfo is UTC


# ---------------------------------------------------------------------------- lookups


def test_ids_and_404s(session: Session, tmp_path: Path) -> None:
    image_id = add_image(session, "a.tif")
    assert svc.parse_image_id(str(image_id)) == image_id
    long_id = "x" * 100
    with pytest.raises(ImageNotFoundError) as caught:
        svc.parse_image_id(long_id)
    assert str(caught.value) == f"no image with id {'x' * 64!r}"
    assert svc.require_image(session, str(image_id)).filename == "a.tif"
    gone = str(uuid.UUID(int=3))
    with pytest.raises(ImageNotFoundError) as caught:
        svc.require_image(session, gone)
    assert str(caught.value) == f"no image with id {gone!r}"

    engine = session.get_bind()
    database = Database(engine)  # type: ignore[arg-type]
    error = OSError(2, "gone")
    assert asyncio.run(svc.missing_file_error(database, str(image_id), error)) is error
    deleted = asyncio.run(svc.missing_file_error(database, gone, error))
    assert isinstance(deleted, ImageNotFoundError)
    assert str(deleted) == f"no image with id {gone!r} (deleted meanwhile)"
    bad = asyncio.run(svc.missing_file_error(database, "nope", error))
    assert isinstance(bad, ImageNotFoundError) and str(bad) == "no image with id 'nope'"


def test_scene_sizes() -> None:
    image = Image(width=3, height=4, depth=5, channels=6, timepoints=7, scenes=[])
    fallback = {"size_t": 7, "size_c": 6, "size_z": 5, "size_y": 4, "size_x": 3}
    assert svc.scene_sizes(image, 0) == fallback
    assert svc.scene_sizes(image, 1) == {} and svc.scene_sizes(image, -1) == {}
    image.scenes = [{"size_x": 1}, {"size_x": 2}]
    assert svc.scene_sizes(image, 1) == {"size_x": 2}
    assert svc.scene_sizes(image, 0) == {"size_x": 1}
    assert svc.scene_sizes(image, 2) == {} and svc.scene_sizes(image, -1) == {}


# ---------------------------------------------------------------------------- the memo


def test_the_record_memo(session: Session, tmp_path: Path) -> None:
    database = Database(session.get_bind())  # type: ignore[arg-type]
    ids = [str(add_image(session, f"{n}.tif")) for n in range(3)]
    memo = svc.RecordMemo(ttl_s=3600.0, max_entries=2, deleted_dir=tmp_path / "deleted")
    first = asyncio.run(memo.require(database, ids[0]))
    assert first.filename == "0.tif"
    # A hit within the TTL is the same row, even when the database no longer has it.
    session.delete(_row(session, uuid.UUID(ids[0])))
    session.commit()
    assert asyncio.run(memo.require(database, ids[0])) is first
    # Two entries at most, the oldest fetch out first (a hit does not renew an entry).
    asyncio.run(memo.require(database, ids[1]))
    asyncio.run(memo.require(database, ids[0]))
    asyncio.run(memo.require(database, ids[2]))
    assert list(memo._rows) == [ids[1], ids[2]]
    memo.forget(ids[1])
    assert list(memo._rows) == [ids[2]]
    # A fetch again after the TTL renews the entry and puts it last.
    memo._rows[ids[2]] = (memo._rows[ids[2]][0] - 7200.0, *memo._rows[ids[2]][1:])
    asyncio.run(memo.require(database, ids[1]))
    assert list(memo._rows) == [ids[2], ids[1]]
    asyncio.run(memo.require(database, ids[2]))
    assert list(memo._rows) == [ids[1], ids[2]]
    memo.forget("never there")
    assert list(memo._rows) == [ids[1], ids[2]]
    # A tombstone written by another process: a 404 at once, and the entry goes.
    svc.write_tombstone(tmp_path / "deleted", uuid.UUID(ids[2]))
    with pytest.raises(ImageNotFoundError) as caught:
        asyncio.run(memo.require(database, ids[2]))
    assert str(caught.value) == f"no image with id {ids[2]!r}"
    assert list(memo._rows) == [ids[1]]
    # Without a TTL every call asks the database.
    fresh = svc.RecordMemo(ttl_s=0.0)
    row = asyncio.run(fresh.require(database, ids[1]))
    session.delete(_row(session, uuid.UUID(ids[1])))
    session.commit()
    with pytest.raises(ImageNotFoundError):
        asyncio.run(fresh.require(database, ids[1]))
    assert row.filename == "1.tif"
    # Defaults: five seconds, 4096 entries, no tombstones, an hour kept, pruned each minute.
    default = svc.RecordMemo()
    assert (default.ttl_s, default.max_entries, default.deleted_dir) == (5.0, 4096, None)
    assert (default.keep_s, default.prune_every_s) == (3600.0, 60.0)
    assert default.tombstone(uuid.UUID(int=1)) == 0
    # Without a tombstone folder a hit is served from the memo.
    again = asyncio.run(default.require(database, ids[2]))
    assert asyncio.run(default.require(database, ids[2])) is again
    assert asyncio.run(default.require(database, ids[2])).filename == "2.tif"


def _aged(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_tombstones_are_written_and_pruned(tmp_path: Path) -> None:
    deleted = tmp_path / "a" / "deleted"
    assert svc.prune_tombstones(deleted) == 0
    svc.write_tombstone(deleted, uuid.UUID(int=1))
    assert [p.name for p in deleted.iterdir()] == [str(uuid.UUID(int=1))]
    svc.write_tombstone(deleted, uuid.UUID(int=1))  # again: no error
    for n, age in ((2, 3000.0), (3, 4000.0), (4, 7200.0)):
        svc.write_tombstone(deleted, uuid.UUID(int=n))
        _aged(deleted / str(uuid.UUID(int=n)), age)
    assert svc.prune_tombstones(deleted) == 2
    assert sorted(p.name for p in deleted.iterdir()) == [str(uuid.UUID(int=n)) for n in (1, 2)]
    assert svc.prune_tombstones(deleted, keep_s=2000.0) == 1
    assert svc.prune_tombstones(deleted, keep_s=2000.0) == 0
    (tmp_path / "file").write_bytes(b"")
    assert svc.prune_tombstones(tmp_path / "file") == 0
    # A tombstone that vanishes while the folder is scanned (pruned by another process; a
    # dangling symlink here) is skipped, and the scan goes on to the ones after it.
    racing = tmp_path / "racing"
    racing.mkdir()
    (racing / "gone").symlink_to(tmp_path / "nothing")
    n = 0
    while True:
        svc.write_tombstone(racing, uuid.UUID(int=100 + n))
        _aged(racing / str(uuid.UUID(int=100 + n)), 7200.0)
        n += 1
        order = [entry.name for entry in os.scandir(racing)]
        if n >= 3 and order.index("gone") < len(order) - 1:
            break
    assert svc.prune_tombstones(racing) == n
    assert [p.name for p in racing.iterdir()] == ["gone"]

    memo = svc.RecordMemo(deleted_dir=deleted, keep_s=100.0, prune_every_s=3600.0)
    _aged(deleted / str(uuid.UUID(int=1)), 500.0)
    # The first tombstone of a run prunes; the next ones within prune_every_s do not.
    assert memo.tombstone(uuid.UUID(int=5)) == 1
    _aged(deleted / str(uuid.UUID(int=5)), 500.0)
    assert memo.tombstone(uuid.UUID(int=6)) == 0
    assert (deleted / str(uuid.UUID(int=5))).exists() and (deleted / str(uuid.UUID(int=6))).exists()
    eager = svc.RecordMemo(deleted_dir=deleted, keep_s=100.0, prune_every_s=0.0)
    assert eager.tombstone(uuid.UUID(int=7)) == 1
    _aged(deleted / str(uuid.UUID(int=7)), 500.0)
    assert eager.tombstone(uuid.UUID(int=8)) == 1
    assert sorted(p.name for p in deleted.iterdir()) == [str(uuid.UUID(int=n)) for n in (6, 8)]


# ---------------------------------------------------------------------------- sources


def test_readable_source_on_local_and_object_storage(session: Session, tmp_path: Path) -> None:
    from zstack_analyzer.storage.local import LocalStorage
    from zstack_analyzer.storage.remote import RemoteObject, S3Location, S3Options
    from zstack_analyzer.storage.s3 import S3Storage

    local = LocalStorage(tmp_path / "images", tmp_path / "tmp")
    tiff = Image(stored_name="s1", format="OME-TIFF", stored_in_place=False)
    czi = Image(stored_name="s2", format="CZI", stored_in_place=False)
    assert svc.readable_source(tiff, local) == tmp_path / "images" / "s1"
    assert svc.readable_source(czi, local) == tmp_path / "images" / "s2"

    s3 = S3Storage(
        S3Location("bucket", "pre"),
        S3Options(endpoint_url="http://127.0.0.1:9", allow_http=True),
        tmp_dir=tmp_path / "s3tmp",
        cache_dir=tmp_path / "cache",
        cache_max_bytes=1 << 20,
    )
    s3.ensure_dirs()
    remote = svc.readable_source(tiff, s3)
    assert isinstance(remote, RemoteObject)
    assert remote.key == "images/s1"
    (tmp_path / "cache" / "s1").write_bytes(b"x")
    (tmp_path / "cache" / "s2").write_bytes(b"y")
    assert svc.readable_source(tiff, s3) == tmp_path / "cache" / "s1"
    assert svc.readable_source(czi, s3) == tmp_path / "cache" / "s2"

    original = tmp_path / "orig.tif"
    shutil.copyfile(TEXT_STACK, original)
    st = original.stat()
    placed = Image(
        id=uuid.UUID(int=9),
        stored_name="inplace-1",
        format="OME-TIFF",
        stored_in_place=True,
        source_path=str(original),
        source_size=st.st_size,
        source_mtime_ns=st.st_mtime_ns,
    )
    assert svc.readable_source(placed, local) == original


def test_the_in_place_record_of_a_path(session: Session) -> None:
    copied = add_image(session, "a.tif", source_path="/data/a.tif")
    placed = add_image(
        session, "a.tif", source_path="/data/a.tif", stored_in_place=True, stored_name="inplace-a"
    )
    add_image(session, "b.tif", source_path="/data/b.tif", stored_in_place=True)
    found = svc.in_place_record(session, "/data/a.tif")
    assert found is not None and found.id == placed and found.id != copied
    assert svc.in_place_record(session, "/data/c.tif") is None
    add_image(session, "c.tif", source_path="/data/c.tif")
    assert svc.in_place_record(session, "/data/c.tif") is None


def test_signed_identities(tmp_path: Path) -> None:
    assert svc.signed64(0) == 0
    assert svc.signed64((1 << 63) - 1) == (1 << 63) - 1
    assert svc.signed64(1 << 63) == -(1 << 63)
    assert svc.signed64((1 << 64) - 1) == -1
    path = tmp_path / "f"
    path.write_bytes(b"1")
    st = path.stat()
    assert svc.identity_of(st) == (svc.signed64(st.st_dev), svc.signed64(st.st_ino))


def _placed(path: Path, *, identity: bool = True) -> Image:
    st = path.stat()
    dev, ino = svc.identity_of(st) if identity else (None, None)
    return Image(
        id=uuid.UUID(int=4),
        stored_in_place=True,
        source_path=str(path),
        source_size=st.st_size,
        source_mtime_ns=st.st_mtime_ns,
        source_dev=dev,
        source_ino=ino,
    )


def test_in_place_originals_that_changed_kind_or_identity(tmp_path: Path) -> None:
    original = tmp_path / "a.tif"
    original.write_bytes(b"abc")
    image = _placed(original)
    assert svc.in_place_original(image) == original
    fd, st = svc.open_in_place(image)
    try:
        assert os.read(fd, 10) == b"abc" and st.st_size == 3
    finally:
        os.close(fd)
    # Another file with the same size and mtime under the name.
    mtime = original.stat().st_mtime_ns
    swapped = tmp_path / "new.tif"
    swapped.write_bytes(b"xyz")  # made while the original exists: another inode
    os.utime(swapped, ns=(mtime, mtime))
    os.replace(swapped, original)
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(image)
    assert str(caught.value) == (
        f"{original}: the original changed since it was registered (another file now has its "
        "name); ingest it again to refresh the record"
    )
    # Rows from before identities: size and mtime alone, so the swap is not seen.
    old = _placed(original, identity=False)
    assert svc.in_place_original(old) == original
    fd, _ = svc.open_in_place(old)
    os.close(fd)
    # A symlink now, a FIFO now.
    target = tmp_path / "elsewhere.tif"
    target.write_bytes(b"xyz")
    original.unlink()
    original.symlink_to(target)
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(old)
    assert "(it is now a symlink)" in str(caught.value)
    original.unlink()
    os.mkfifo(original)
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(old)
    assert "(it is now a FIFO, socket or device)" in str(caught.value)
    original.unlink()
    with pytest.raises(OriginalMissingError) as caught:
        svc.in_place_original(old)
    assert str(caught.value) == (
        f"{original}: the original of image {old.id} is gone (moved or deleted)"
    )
    with pytest.raises(OriginalMissingError) as caught:
        svc.open_in_place(old)
    # A parent that is a file now: gone as well.
    (tmp_path / "dir").write_bytes(b"")
    inside = Image(
        id=uuid.UUID(int=5), stored_in_place=True, source_path=str(tmp_path / "dir" / "x.tif")
    )
    with pytest.raises(OriginalMissingError):
        svc.in_place_original(inside)
    # A changed size is named with both sizes.
    grown = tmp_path / "g.tif"
    grown.write_bytes(b"12")
    record = _placed(grown)
    grown.write_bytes(b"12345")
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(record)
    assert "(size 2 -> 5)" in str(caught.value)
    with pytest.raises(OriginalChangedError):
        svc.open_in_place(record)


def test_only_regular_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    assert svc.regular_or_folder(folder, "raw").st_ino == folder.stat().st_ino
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    long_raw = "r" * 300
    with pytest.raises(NotRegularFileError) as caught:
        svc.regular_or_folder(fifo, long_raw)
    assert str(caught.value) == f"{'r' * 200}: a FIFO, not a regular file or folder"
    with pytest.raises(NotRegularFileError) as caught:
        svc.regular_or_folder(Path("/dev/null"), "null")
    assert str(caught.value) == "null: a device, not a regular file or folder"
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(NotRegularFileError) as caught:
            svc.regular_or_folder(sock_path, "sock")
    assert str(caught.value) == "sock: a socket, not a regular file or folder"
    with pytest.raises(FileNotFoundError):
        svc.regular_or_folder(tmp_path / "missing", "m")


def test_in_place_folders_and_multi_file_sets(tmp_path: Path) -> None:
    # A folder image (an OME-Zarr, say): checked by the folder's own mtime, never refused as a folder.
    folder = tmp_path / "image.zarr"
    folder.mkdir()
    (folder / ".zattrs").write_text("{}")
    record = _placed(folder)
    assert svc.in_place_original(record) == folder
    os.utime(folder, ns=(1, 1))
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(record)
    assert f"(size {record.source_size} -> " in str(caught.value)

    # A multi-file OME-TIFF set: the record holds the set's total size and newest mtime.
    source = Path("/work/shared/testdata/ome-tiff/multifile")
    copy = tmp_path / "multifile"
    shutil.copytree(source, copy)
    main = copy / "multifile-Z1.ome.tiff"
    state = svc.set_state_of(main)
    assert state is not None
    assert state.size == sum(p.stat().st_size for p in copy.iterdir())
    assert state.mtime_ns == max(p.stat().st_mtime_ns for p in copy.iterdir())
    assert svc.set_state_of(copy / "multifile-Z3.ome.tiff") is None  # a member, not the main file
    assert svc.set_state_of(copy / "multifile.companion.ome") is None
    single = tmp_path / "single.ome.tif"
    shutil.copyfile(TEXT_STACK, single)
    assert svc.set_state_of(single) is None
    dev, ino = svc.identity_of(main.stat())
    image = Image(
        id=uuid.UUID(int=6),
        stored_in_place=True,
        source_path=str(main),
        source_size=state.size,
        source_mtime_ns=state.mtime_ns,
        source_dev=dev,
        source_ino=ino,
    )
    assert svc.in_place_original(image) == main
    member = copy / "multifile-Z4.ome.tiff"
    with member.open("ab") as handle:
        handle.write(b"\0" * 10)
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(image)
    assert str(caught.value) == (
        f"{main}: the original changed since it was registered (its files changed "
        f"(size {state.size} -> {state.size + 10})); ingest it again to refresh the record"
    )


def test_in_place_messages_name_the_path(tmp_path: Path) -> None:
    original = tmp_path / "a.tif"
    original.write_bytes(b"abc")
    record = _placed(original, identity=False)
    target = tmp_path / "b.tif"
    target.write_bytes(b"abc")
    original.unlink()
    original.symlink_to(target)
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(record)
    assert str(caught.value) == (
        f"{original}: the original changed since it was registered (it is now a symlink); "
        "ingest it again to refresh the record"
    )
    original.unlink()
    original.write_bytes(b"abcd")
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(record)
    assert str(caught.value) == (
        f"{original}: the original changed since it was registered (size 3 -> 4); "
        "ingest it again to refresh the record"
    )


def test_an_original_now_reached_through_a_symlink_out_of_the_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parent folder swapped for a symlink out of the import roots: refused, naming the path.

    (confine_reads confines the whole process; the roots are put back as they were after
    the test, so later tests are not confined to this test's folder.)
    """
    from zstack_analyzer import confine
    from zstack_analyzer.confine import confine_reads

    monkeypatch.setattr(confine._STATE, "real", confine._STATE.real)
    monkeypatch.setattr(confine._STATE, "prefixes", confine._STATE.prefixes)

    root = tmp_path / "root"
    inside = root / "folder"
    inside.mkdir(parents=True)
    source = inside / "a.tif"
    source.write_bytes(b"abc")
    record = _placed(source)
    confine_reads([root])
    assert svc.in_place_original(record) == source
    outside = tmp_path / "outside"
    outside.mkdir()
    os.replace(source, outside / "a.tif")
    inside.rmdir()
    inside.symlink_to(outside)
    with pytest.raises(OriginalChangedError) as caught:
        svc.in_place_original(record)
    message = str(caught.value)
    assert message.startswith(f"{source}: the original changed since it was registered (")
    assert "leads outside the import roots" in message
    assert message.endswith("); ingest it again to refresh the record")


def test_times_keep_their_zone() -> None:
    from datetime import timedelta, timezone

    plus_two = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    assert svc._aware(plus_two) is plus_two
    assert svc._aware(datetime(2026, 3, 4, 5, 6, 7)) == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
