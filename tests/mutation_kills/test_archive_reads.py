"""What registering in place reads (``service/routes/archive.py``), called directly.

What the broader tests leave open: the size, mtime, hash and identity recorded for one
file, for a folder image (size 0, the tree's hash) and for a multi-file set (the set's
total size, newest mtime and hash, the main file's identity); the 403 detail of a chunk
that leads outside the roots; other read errors passed on unchanged; the set state of a
set's main file only; and the renders of a hash dropped only when no record keeps it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.mutation_kills.service_db import _template
from tests.service.conftest import write_ome_tiff
from tests.service.test_confinement import SECRET, write_ome_zarr
from tests.synthetic_tiff import write_ome_multifile
from zstack_analyzer.batch.tasks import hash_file, hash_tree
from zstack_analyzer.errors import LimitExceededError, ZstackError
from zstack_analyzer.filesets import FileSet, file_set, hash_set, set_state
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.service.errors import ImportForbiddenError, NotRegularFileError
from zstack_analyzer.service.routes.archive import (
    _evict_if_unused,
    _set_state_confined,
    read_original,
)

if TYPE_CHECKING:
    from pathlib import Path


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def test_one_file(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "cells.ome.tif")
    os.utime(path, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    size, mtime_ns, sha256, metadata, scenes, identity = read_original(path, ReadLimits())
    assert size == path.stat().st_size > 0
    assert mtime_ns == 1_600_000_000_123_456_789
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert metadata.file_format == "OME-TIFF"
    assert [scene.index for scene in scenes] == [0]
    assert identity == _identity(path)


def test_a_folder_image(tmp_path: Path) -> None:
    folder = tmp_path / "cells.zarr"
    write_ome_zarr(folder)
    os.utime(folder, ns=(1_500_000_000_000_000_007, 1_500_000_000_000_000_007))
    size, mtime_ns, sha256, metadata, _scenes, identity = read_original(folder, ReadLimits())
    assert size == 0
    assert mtime_ns == 1_500_000_000_000_000_007
    assert sha256 == hash_tree(folder)
    assert (metadata.size_x, metadata.size_y) == (8, 8)
    assert identity == _identity(folder)


def _ome_set(folder: Path) -> FileSet:
    folder.mkdir(parents=True, exist_ok=True)
    stack = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(1, 1, 3, 8, 8)
    members, _companion = write_ome_multifile(folder, stack)
    files = file_set(members[0])
    assert files.is_multi
    return files


def test_a_multi_file_set(tmp_path: Path) -> None:
    files = _ome_set(tmp_path)
    main = files.main
    for age, member in enumerate(files.paths()):
        os.utime(member, ns=(10**18 + age, 10**18 + age))
    state = set_state(files)
    size, mtime_ns, sha256, metadata, _scenes, identity = read_original(main, ReadLimits())
    assert (size, mtime_ns) == (state.size, state.mtime_ns)
    assert size == sum(p.stat().st_size for p in files.paths())
    assert mtime_ns == 10**18 + len(files.paths()) - 1
    assert sha256 == hash_set(files, hash_file)
    assert sha256 != hash_file(main)
    assert metadata.size_z == 3
    assert identity == _identity(main)
    # Its state, as the route checks it before reading anything.
    assert _set_state_confined(main, [tmp_path]) == state
    other = next(p for p in files.paths() if p != main)
    assert _set_state_confined(other, [tmp_path]) is None


def test_a_single_file_has_no_set_state(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "one.ome.tif")
    assert _set_state_confined(path, [tmp_path]) is None


def test_a_member_outside_the_roots_refuses_the_set(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    stack = np.zeros((1, 1, 2, 8, 8), dtype=np.uint8)
    members, _companion = write_ome_multifile(outside, stack)
    main = file_set(members[0]).main
    for member in file_set(members[0]).paths():
        if member != main:
            (root / member.name).symlink_to(member)
    (root / main.name).write_bytes(main.read_bytes())
    os.utime(root / main.name, ns=(main.stat().st_atime_ns, main.stat().st_mtime_ns))
    assert file_set(root / main.name).is_multi
    with pytest.raises(ImportForbiddenError, match="outside"):
        _set_state_confined(root / main.name, [root])


def test_a_chunk_leading_outside_the_roots_is_403_naming_both(tmp_path: Path) -> None:
    from zstack_analyzer.confine import confine_reads

    root = tmp_path / "archive"
    folder = root / "cells.zarr"
    chunk = write_ome_zarr(folder)
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    chunk.unlink()
    chunk.symlink_to(secret)
    confine_reads([root])
    with pytest.raises(ImportForbiddenError) as caught:
        read_original(folder, ReadLimits())
    assert type(caught.value) is ImportForbiddenError
    message = caught.value.message
    assert message.startswith(f"{folder}: refused: ")
    assert message.endswith("leads outside the import roots (a symlink out), refused")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_other_read_errors_pass_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "notes.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 12)
    with pytest.raises(ZstackError) as caught:
        read_original(path, ReadLimits())
    assert not isinstance(caught.value, ImportForbiddenError)
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError) as refused:
        read_original(fifo, ReadLimits())
    assert refused.value.message == f"{fifo}: a FIFO, not a regular file or folder"
    with pytest.raises(FileNotFoundError):
        read_original(tmp_path / "gone.tif", ReadLimits())


def test_renders_are_dropped_only_when_no_record_keeps_the_hash(tmp_path: Path) -> None:
    import shutil

    from sqlalchemy import select

    from tests.service.test_search import add_record
    from zstack_analyzer.cache import RenderCache
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.db.session import Database, make_engine

    db_path = tmp_path / "zstack.db"
    shutil.copyfile(_template(), db_path)
    engine = make_engine(f"sqlite:///{db_path}")
    try:
        database = Database(engine)
        image_id = add_record(database, "kept.czi")
        kept = database.call(
            lambda session: session.scalar(
                select(Image.sha256).where(Image.id == uuid.UUID(image_id))
            )
        )
        gone = "ab" * 32
        cache = RenderCache(tmp_path / "cache")
        cache.put(kept, "mip", b"kept picture")
        cache.put(gone, "mip", b"orphan picture")
        _evict_if_unused(database.call, cache, kept)
        _evict_if_unused(database.call, cache, gone)
        assert cache.get(kept, "mip") == b"kept picture"
        assert cache.get(gone, "mip") is None
    finally:
        engine.dispose()


def test_the_read_limits_are_the_callers(tmp_path: Path) -> None:
    tight = ReadLimits(max_dimension=4)
    single = write_ome_tiff(tmp_path / "one.ome.tif")
    with pytest.raises(LimitExceededError):
        read_original(single, tight)
    files = _ome_set(tmp_path / "set")
    with pytest.raises(LimitExceededError):
        read_original(files.main, tight)
