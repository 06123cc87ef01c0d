"""The folder walk, entry by entry: what mutation testing showed the suite never pinned.

Every bad-entry reason is checked with its path, at the top of a walk and inside it,
including the permission cases (run in this process with the real and effective ids
of ``nobody``, so that ``os.access`` sees them too), entries that vanish or turn into
something else between listing and stat, folder-format images (``.zarr``) with their
own mtime, and the depth-first order the docstring promises.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.needs import unavailable
from zstack_analyzer.batch.walk import BadEntry, FileEntry, count_files, walk

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(60)

ZARR = frozenset({".ome.zarr", ".zarr"})


@contextlib.contextmanager
def _as_nobody() -> Iterator[None]:
    """Real and effective ids of ``nobody`` (saved id stays root, so they come back)."""
    if os.geteuid() != 0:
        unavailable("the permission cases need root, to become 'nobody' and back")
    nobody = pwd.getpwnam("nobody")
    groups = os.getgroups()
    os.setgroups([])
    os.setresgid(nobody.pw_gid, nobody.pw_gid, 0)
    os.setresuid(nobody.pw_uid, nobody.pw_uid, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)
        os.setgroups(groups)


@pytest.fixture
def public_root() -> Iterator[Path]:
    """A folder ``nobody`` may enter (pytest's tmp_path is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="zstack-walk-kills-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for path in root.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(stat.S_IRWXU)
        shutil.rmtree(root)


def _scandir_names(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return [entry.name for entry in it]


def test_permission_reasons_inside_and_at_the_top(public_root: Path) -> None:
    secret = public_root / "secret.tif"
    secret.write_bytes(b"12")
    secret.chmod(0o600)
    closed = public_root / "closed"
    closed.mkdir(mode=0o700)
    (closed / "inside.tif").write_bytes(b"1")
    # Listable but not searchable: the names are visible, their stat is refused.
    listable = public_root / "listable"
    listable.mkdir()
    (listable / "hidden.tif").write_bytes(b"1")
    listable.chmod(0o744)
    with _as_nobody():
        inside = list(walk([public_root]))
        tops = list(walk([secret, listable / "hidden.tif", closed]))
    assert sorted(inside, key=lambda i: i.path) == [
        BadEntry(str(closed), "permission denied (folder not readable)"),
        BadEntry(str(listable / "hidden.tif"), "permission denied"),
        BadEntry(str(secret), "permission denied (not readable)"),
    ]
    assert tops == [
        BadEntry(str(secret), "permission denied (not readable)"),
        BadEntry(str(listable / "hidden.tif"), "permission denied"),
        BadEntry(str(closed), "permission denied (folder not readable)"),
    ]
    # The walk goes on after a folder it may not list.
    (public_root / "zz").mkdir()
    (public_root / "zz" / "late.tif").write_bytes(b"123")
    with _as_nobody():
        after = [i for i in walk([public_root]) if isinstance(i, FileEntry)]
    assert [Path(i.path).name for i in after] == ["late.tif"]


def _block_device(path: Path) -> None:
    if os.geteuid() != 0:
        unavailable("making a block device node needs root")
    os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 0))


def test_bad_roots_keep_their_path_and_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    os.mkfifo(tmp_path / "pipe")
    block = tmp_path / "block"
    _block_device(block)
    good = tmp_path / "good.tif"
    good.write_bytes(b"12345")
    roots = [empty, tmp_path / "broken", tmp_path / "loop1", tmp_path / "pipe", block, good]
    assert list(walk(roots)) == [
        BadEntry(str(empty), "empty file (0 bytes)"),
        BadEntry(str(tmp_path / "broken"), "broken symlink"),
        BadEntry(str(tmp_path / "loop1"), "symlink loop"),
        BadEntry(str(tmp_path / "pipe"), "a FIFO (named pipe), not a file"),
        BadEntry(str(block), "a device, not a file"),
        FileEntry(str(good), 5, good.stat().st_mtime_ns),
    ]


def test_block_device_inside_a_folder(tmp_path: Path) -> None:
    _block_device(tmp_path / "block")
    assert list(walk([tmp_path])) == [BadEntry(str(tmp_path / "block"), "a device, not a file")]


def test_entry_that_vanishes_between_listing_and_stat(tmp_path: Path) -> None:
    for name in ("a.tif", "b.tif"):
        (tmp_path / name).write_bytes(b"1")
    first, second = _scandir_names(tmp_path)
    items = walk([tmp_path])
    assert next(items) == FileEntry(str(tmp_path / first), 1, (tmp_path / first).stat().st_mtime_ns)
    (tmp_path / second).unlink()  # already listed, not yet looked at
    assert list(items) == [BadEntry(str(tmp_path / second), "vanished")]


def test_symlink_through_a_file_cannot_be_stat(tmp_path: Path) -> None:
    (tmp_path / "plain.tif").write_bytes(b"1")
    os.symlink(tmp_path / "plain.tif" / "child", tmp_path / "through")
    bad = [i for i in walk([tmp_path]) if isinstance(i, BadEntry)]
    assert bad == [BadEntry(str(tmp_path / "through"), "cannot stat: Not a directory")]


def test_folder_removed_before_it_is_listed_and_the_walk_goes_on(tmp_path: Path) -> None:
    (tmp_path / "top.tif").write_bytes(b"1")
    for name in ("s1", "s2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "in.tif").write_bytes(b"12")
    items = walk([tmp_path])
    assert Path(next(items).path).name == "top.tif"
    order = [n for n in _scandir_names(tmp_path) if n.startswith("s")]
    gone, kept = order  # subfolders are opened in listing order
    shutil.rmtree(tmp_path / gone)
    assert list(items) == [
        BadEntry(str(tmp_path / gone), "cannot list folder: No such file or directory"),
        FileEntry(
            str(tmp_path / kept / "in.tif"), 2, (tmp_path / kept / "in.tif").stat().st_mtime_ns
        ),
    ]


def _reference_walk(folder: Path) -> list[str]:
    """Files first in listing order, then each subfolder depth-first in listing order."""
    names = _scandir_names(folder)
    files = [str(folder / n) for n in names if not (folder / n).is_dir()]
    out = list(files)
    for n in names:
        if (folder / n).is_dir():
            out += _reference_walk(folder / n)
    return out


def test_walk_is_depth_first_in_listing_order(tmp_path: Path) -> None:
    for i in range(6):
        sub = tmp_path / f"d{i}"
        for j in range(3):
            (sub / f"e{j}").mkdir(parents=True)
            (sub / f"e{j}" / f"f{i}{j}.tif").write_bytes(b"1")
        (sub / f"top{i}.tif").write_bytes(b"1")
    got = [i.path for i in walk([tmp_path])]
    assert got == _reference_walk(tmp_path)
    first_level = [p for p in got if Path(p).parent.parent == tmp_path and p.endswith(".tif")]
    # Folders are opened in listing order (the stack is refilled reversed, popped from the end).
    assert [Path(p).parent.name for p in first_level] == [
        n for n in _scandir_names(tmp_path) if (tmp_path / n).is_dir()
    ]


def test_zarr_folders_are_one_item_with_their_mtime(tmp_path: Path) -> None:
    image = tmp_path / "lab" / "Plate.OME.ZARR"  # the suffix is matched case-blind
    (image / "0").mkdir(parents=True)
    (image / "0" / "chunk").write_bytes(b"x" * 100)
    (image / ".zattrs").write_bytes(b"{}")
    os.utime(image, ns=(1_000_000_000, 1_234_567_890_123))
    other = tmp_path / "lab" / "plain.tif"
    other.write_bytes(b"abc")
    inside = [i for i in walk([tmp_path], dir_suffixes=ZARR) if i.path.startswith(str(image))]
    assert inside == [FileEntry(str(image), 0, 1_234_567_890_123, is_dir=True)]
    # Given as a root, the same folder is the same one item.
    assert list(walk([image], dir_suffixes=ZARR)) == [
        FileEntry(str(image), 0, 1_234_567_890_123, is_dir=True)
    ]
    # Roots after a folder image are walked too.
    assert list(walk([image, other], dir_suffixes=ZARR)) == [
        FileEntry(str(image), 0, 1_234_567_890_123, is_dir=True),
        FileEntry(str(other), 3, other.stat().st_mtime_ns),
    ]
    # Without folder formats it is an ordinary folder, walked into.
    walked = {Path(i.path).name for i in walk([tmp_path])}
    assert walked == {"chunk", ".zattrs", "plain.tif"}
    # A plain folder root is walked even when folder formats are known.
    assert {Path(i.path).name for i in walk([tmp_path / "lab"], dir_suffixes=ZARR)} == {
        "Plate.OME.ZARR",
        "plain.tif",
    }
    # count_files follows the same rule: the image is one item of no size of its own.
    assert count_files([tmp_path], dir_suffixes=ZARR) == (2, 3)
    assert count_files([tmp_path]) == (3, 100 + 2 + 3)


def test_symlinked_folder_named_like_an_image_is_offered(tmp_path: Path) -> None:
    real = tmp_path / "real.zarr"
    real.mkdir()
    (real / "a").write_bytes(b"1")
    os.symlink(real, tmp_path / "link.zarr")
    os.symlink(tmp_path / "real.zarr", tmp_path / "plainlink")
    got = {Path(i.path).name: i for i in walk([tmp_path], dir_suffixes=ZARR)}
    assert got["link.zarr"] == FileEntry(
        str(tmp_path / "link.zarr"), 0, real.stat().st_mtime_ns, is_dir=True
    )
    assert got["plainlink"] == BadEntry(
        str(tmp_path / "plainlink"), "symlink to a folder (not followed)"
    )
