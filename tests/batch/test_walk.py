"""The folder walk: streams, and reports every kind of bad entry without opening it."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest

from tests.needs import unavailable
from zstack_analyzer.batch.walk import BadEntry, FileEntry, count_files, walk

pytestmark = pytest.mark.timeout(60)  # a FIFO opened by mistake would block: fail, not hang


def _reasons(root: Path) -> dict[str, str]:
    return {
        Path(item.path).name: item.reason for item in walk([root]) if isinstance(item, BadEntry)
    }


def test_bad_entries_are_classified_and_never_opened(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "good.tif").write_bytes(b"x" * 10)
    (tmp_path / "empty.tif").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "nowhere.tif", tmp_path / "broken.tif")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    os.symlink(tmp_path / "a", tmp_path / "dirlink")  # would loop back into the tree
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    try:
        reasons = _reasons(tmp_path)
    finally:
        server.close()
    assert reasons == {
        "empty.tif": "empty file (0 bytes)",
        "pipe": "a FIFO (named pipe), not a file",
        "broken.tif": "broken symlink",
        "loop1": "symlink loop",
        "loop2": "symlink loop",
        "dirlink": "symlink to a folder (not followed)",
        "sock": "a socket, not a file",
    }
    files = [item for item in walk([tmp_path]) if isinstance(item, FileEntry)]
    assert [Path(f.path).name for f in files] == ["good.tif"]
    assert files[0].size == 10
    assert count_files([tmp_path]) == (8, 10)


def test_walk_is_a_stream(tmp_path: Path) -> None:
    for i in range(30):
        folder = tmp_path / f"d{i:02d}"
        folder.mkdir()
        (folder / "f.tif").write_bytes(b"1")
    items = walk([tmp_path])
    assert isinstance(items, types.GeneratorType)
    first = next(items)
    assert isinstance(first, FileEntry)
    assert sum(1 for _ in items) == 29


def test_single_files_and_missing_roots(tmp_path: Path) -> None:
    one = tmp_path / "one.tif"
    one.write_bytes(b"abc")
    out = list(walk([one, tmp_path / "missing"]))
    assert out[0] == FileEntry(str(one), 3, one.stat().st_mtime_ns)
    assert out[1] == BadEntry(str(tmp_path / "missing"), "no such file or folder")


def test_device_file_is_skipped() -> None:
    assert list(walk(["/dev/null"])) == [BadEntry("/dev/null", "a device, not a file")]


def test_unreadable_entries_as_an_unprivileged_user() -> None:
    """Root reads everything, so the walk runs as ``nobody`` over root-only entries."""
    if os.geteuid() != 0:
        unavailable("needs root to switch to the 'nobody' user")
    root = Path(tempfile.mkdtemp(prefix="zstack-walk-"))
    try:
        root.chmod(0o755)
        (root / "public.tif").write_bytes(b"1")
        (root / "public.tif").chmod(0o644)
        secret = root / "secret.tif"
        secret.write_bytes(b"1")
        secret.chmod(0o600)
        closed = root / "closed"
        closed.mkdir(mode=0o700)
        (closed / "inside.tif").write_bytes(b"1")
        # Imports first (our interpreter lives under /root), then drop to nobody for good.
        code = (
            "import json, os, pwd, sys\n"
            "from zstack_analyzer.batch.walk import walk\n"
            "nobody = pwd.getpwnam('nobody')\n"
            "os.setgroups([]); os.setgid(nobody.pw_gid); os.setuid(nobody.pw_uid)\n"
            "print(json.dumps([[i.path, getattr(i, 'reason', 'ok')] for i in walk([sys.argv[1]])]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(root)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            check=False,
        )
        assert done.returncode == 0, done.stderr
        got = {Path(p).name: r for p, r in json.loads(done.stdout)}
        assert got == {
            "public.tif": "ok",
            "secret.tif": "permission denied (not readable)",
            "closed": "permission denied (folder not readable)",
        }
    finally:
        for path in sorted(root.rglob("*"), reverse=True):
            path.chmod(stat.S_IRWXU)
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        root.rmdir()


def _walk_peak(root: Path) -> tuple[int, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        count = sum(1 for _ in walk([root]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return count, peak


def test_walk_memory_does_not_grow_with_the_number_of_files(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    for root, n in ((small, 200), (large, 4000)):
        for i in range(n):
            folder = root / f"d{i // 100:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i:05d}.tif").write_bytes(b"1")
    count_small, peak_small = _walk_peak(small)
    count_large, peak_large = _walk_peak(large)
    assert (count_small, count_large) == (200, 4000)
    # 20x the files, not 20x the memory: one folder's names at a time, never the tree.
    assert peak_large < 2 * peak_small + 64 * 1024, (peak_small, peak_large)
