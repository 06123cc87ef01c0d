"""Which walked files are images of their own (``batch/grouping.py``), on an ICS/IDS pair.

An ICS 1.0 header (``.ics``) keeps its pixels in an ``.ids`` of the same stem: one image,
two files. Inside the walk the ``.ids`` is a member of the ``.ics``, whose entry carries
the pair's total size and newest mtime; an ``.ids`` whose header lies outside the walk
is offered as it is (its reader decides); folders are never grouped.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.batch.test_multifile_ingest import write_ics_pair
from zstack_analyzer.batch.grouping import Member, group_entry, walk_roots
from zstack_analyzer.batch.walk import FileEntry, walk


def _entry(path: Path) -> FileEntry:
    st = path.stat()
    return FileEntry(str(path), st.st_size, st.st_mtime_ns)


def _grouped(roots: list[Path]) -> list[FileEntry | Member]:
    walked = walk_roots(roots)
    return [group_entry(item, walked) for item in walk(roots) if isinstance(item, FileEntry)]


def test_walk_roots_are_absolute_and_unresolved(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    assert walk_roots([Path("link"), "real/", str(tmp_path / "x")]) == (
        str(tmp_path / "link"),
        str(tmp_path / "real"),
        str(tmp_path / "x"),
    )


def test_the_header_carries_the_pair_and_the_pixels_are_its_member(tmp_path: Path) -> None:
    ics, ids = write_ics_pair(tmp_path / "in")
    single = tmp_path / "in" / "single.tif"
    single.write_bytes(b"II*\x00" + bytes(60))
    newer = ids.stat().st_mtime_ns + 7_000_000_000
    os.utime(ids, ns=(newer, newer))
    by_path = {g.path: g for g in _grouped([tmp_path / "in"])}
    assert by_path[str(ids)] == Member(str(ids), str(ics), ids.stat().st_size)
    main = by_path[str(ics)]
    assert isinstance(main, FileEntry)
    assert main.size == ics.stat().st_size + ids.stat().st_size
    assert main.mtime_ns == newer
    assert main.members == ("beads.ids",)
    assert not main.is_dir
    assert by_path[str(single)] == _entry(single)


def test_a_member_whose_header_is_outside_the_walk_is_offered_as_it_is(tmp_path: Path) -> None:
    _, ids = write_ics_pair(tmp_path / "in")
    assert _grouped([ids]) == [_entry(ids)]
    # a sibling folder whose name starts like the header's folder is not inside it
    assert group_entry(_entry(ids), walk_roots([tmp_path / "i"])) == _entry(ids)
    assert group_entry(_entry(ids), walk_roots([tmp_path / "in" / "beads"])) == _entry(ids)


def test_a_member_is_inside_when_its_header_is_a_root_or_under_one(tmp_path: Path) -> None:
    ics, ids = write_ics_pair(tmp_path / "in")
    member = Member(str(ids), str(ics), ids.stat().st_size)
    # both files named on the command line: the header is a root itself
    assert group_entry(_entry(ids), walk_roots([ids, ics])) == member
    assert group_entry(_entry(ids), walk_roots([tmp_path])) == member
    # the file system's root: everything is under it
    assert group_entry(_entry(ids), ("/",)) == member
    # a header that is not a regular file is no header to defer to
    ics.unlink()
    ics.mkdir()
    assert group_entry(_entry(ids), walk_roots([tmp_path])) == _entry(ids)


def test_folders_are_never_grouped(tmp_path: Path) -> None:
    write_ics_pair(tmp_path / "in", name="cells")
    # a folder named like the header's pixels is a folder entry, never a member
    as_folder = tmp_path / "in" / "cells.IDS"
    (tmp_path / "in" / "cells.ids").unlink()
    as_folder.mkdir()
    st = as_folder.stat()
    entry = FileEntry(str(as_folder), 0, st.st_mtime_ns, is_dir=True)
    assert group_entry(entry, walk_roots([tmp_path])) == entry


def test_sets_are_found_within_the_read_limits_given(tmp_path: Path) -> None:
    """A multi-file OME-TIFF's set comes from its OME-XML, read within the caller's limits."""
    import numpy as np

    from tests.synthetic_tiff import write_ome_multifile
    from zstack_analyzer.limits import ReadLimits

    write_ome_multifile(tmp_path, np.zeros((1, 1, 4, 10, 14), np.uint16))
    roots = walk_roots([tmp_path])
    entries = [item for item in walk([tmp_path]) if isinstance(item, FileEntry)]
    grouped = [group_entry(item, roots) for item in entries]
    assert sum(isinstance(g, Member) for g in grouped) == 4
    # OME-XML over the metadata limit: no set is known, each file is offered as it is
    tight = ReadLimits(max_metadata_bytes=64)
    assert [group_entry(item, roots, tight) for item in entries] == entries
