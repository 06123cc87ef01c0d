"""RenderCache: hits, misses after a change, LRU eviction, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import tifffile

from zstack_analyzer.cache import RenderCache, file_identity
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_file

if TYPE_CHECKING:
    from pathlib import Path


def test_put_get_and_miss(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    assert cache.get("abc", "k1") is None
    cache.put("abc", "k1", b"picture")
    assert cache.get("abc", "k1") == b"picture"
    assert cache.get("abc", "k2") is None
    assert cache.get("other", "k1") is None
    assert cache.path_for("abc", "k1").is_file()


def test_hostile_names_stay_inside(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "c")
    cache.put("../../etc", "../passwd", b"x")
    assert cache.get("../../etc", "../passwd") == b"x"
    assert (
        cache.path_for("../../etc", "../passwd")
        .resolve()
        .is_relative_to((tmp_path / "c").resolve())
    )


def test_evict_identity(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    cache.put("one", "a", b"1")
    cache.put("one", "b", b"2")
    cache.put("two", "a", b"3")
    cache.evict_identity("one")
    assert cache.get("one", "a") is None and cache.get("one", "b") is None
    assert cache.get("two", "a") == b"3"
    cache.evict_identity("never-stored")


def test_lru_eviction_keeps_recently_used(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path, max_bytes=3000)
    for i in range(3):
        cache.put("img", f"k{i}", bytes(900))
        old = time.time() - 100 + i
        os.utime(cache.path_for("img", f"k{i}"), (old, old))
    assert cache.get("img", "k0") is not None  # a hit refreshes k0
    cache.put("img", "k3", bytes(900))  # 3600 bytes > 3000: evict down to 2700
    assert cache.total_bytes() <= 3000
    assert cache.get("img", "k1") is None  # least recently used went first
    assert cache.get("img", "k0") is not None
    assert cache.get("img", "k3") is not None


def test_concurrent_writers_of_one_key(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    payloads = [bytes([i]) * 200_000 for i in range(8)]

    def write(data: bytes) -> None:
        for _ in range(10):
            cache.put("same", "key", data)
            got = cache.get("same", "key")
            assert got is not None and got in payloads  # never a torn file

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, payloads))
    assert cache.get("same", "key") in payloads
    leftovers = [p for p in cache.path_for("same", "key").parent.iterdir() if p.name != "key"]
    assert leftovers == []


def test_concurrent_processes_share_the_cache(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from zstack_analyzer.cache import RenderCache\n"
        "c = RenderCache(sys.argv[1])\n"
        "for i in range(50):\n"
        "    c.put('shared', 'key', bytes([int(sys.argv[2])]) * 100_000)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(n)]) for n in range(3)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    data = RenderCache(tmp_path).get("shared", "key")
    assert data is not None and len(data) == 100_000 and len(set(data)) == 1


def test_identity_changes_when_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 3_000_000)
    first = file_identity(path)
    assert file_identity(path) == first
    stat = path.stat()
    with path.open("r+b") as handle:  # same size, same mtime, different last MiB
        handle.seek(2_999_000)
        handle.write(b"y")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_identity(path) != first


def test_changed_file_never_serves_stale_render(tmp_path: Path) -> None:
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    cache = RenderCache(tmp_path / "cache")
    spec = RenderSpec(kind="slice", z=0, width=16, height=16, normalize=False)
    dark = render_file(path, spec, cache=cache)
    assert render_file(path, spec, cache=cache).from_cache
    tifffile.imwrite(path, np.full((16, 16), 255, np.uint8))  # rewritten in place
    bright = render_file(path, spec, cache=cache)
    assert not bright.from_cache
    assert bright.etag != dark.etag and bright.data != dark.data


def test_stale_temp_files_are_swept(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    cache.put("img", "k", b"data")
    folder = cache.path_for("img", "k").parent
    stale, fresh = folder / ".k.dead.tmp", folder / ".k.live.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert cache.total_bytes() == 4  # temp files never count as entries
    assert not stale.exists() and fresh.exists()  # a live writer's file is left alone
