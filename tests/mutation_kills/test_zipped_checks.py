"""Zipped OME-Zarr (``zarr/zipped.py``): where its root is, whether it is one, what is refused.

Each refusal is a rule of the upload path: names that point out of the archive, too many
members or bytes, a member larger than a plane (or than metadata may be), a member that
inflates too many times over; and detection must never take a zip whose group has no NGFF
attributes, nor read a huge metadata member to find out.
"""

from __future__ import annotations

import json
import zipfile
from typing import TYPE_CHECKING

import pytest

from zstack_analyzer.errors import CorruptFileError, LimitExceededError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.zarr.zipped import (
    ZipLimits,
    check_zip,
    looks_like_zipped_ome_zarr,
    open_zip_group,
    zip_root,
)

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1 << 20
ATTRS = json.dumps({"multiscales": [{"version": "0.4"}]}).encode()


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


@pytest.mark.parametrize(
    ("names", "root"),
    [
        ([".zattrs", ".zgroup", "0/.zarray"], ""),
        (["cells.ome.zarr/.zattrs", "cells.ome.zarr/0/.zattrs"], "cells.ome.zarr"),
        (["zarr.json", "0/zarr.json"], ""),
        (["b/.zattrs", "a/.zattrs"], "a"),
        (["a/0/.zattrs", "z/.zattrs"], "z"),
        (["a/b/.zattrs", "a/b/c/zarr.json"], None),
        (["0/0/0", "readme.txt"], None),
        ([], None),
        (["x/.zattrsx", "x/zarr.jsonx"], None),
    ],
)
def test_zip_root(names: list[str], root: str | None) -> None:
    assert zip_root(names) == root


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ({".zattrs": ATTRS, ".zgroup": b"{}"}, True),
        ({"cells.zarr/.zattrs": ATTRS}, True),
        ({".zattrs": json.dumps({"bioformats2raw.layout": 3}).encode()}, True),
        ({".zattrs": json.dumps({"plate": {}}).encode()}, True),
        ({"zarr.json": json.dumps({"attributes": {"ome": {}}}).encode()}, True),
        ({"zarr.json": json.dumps({"ome": {}}).encode()}, False),  # not under attributes
        ({"zarr.json": json.dumps({"zarr_format": 3}).encode()}, False),
        ({".zattrs": json.dumps({"attributes": {"ome": {}}}).encode()}, False),
        ({".zattrs": json.dumps({"other": 1}).encode()}, False),
        ({".zattrs": b"[1, 2]"}, False),
        ({".zattrs": b"{not json"}, False),
        ({"a/b/.zattrs": ATTRS}, False),
        ({"data.bin": b"x"}, False),
        # zarr.json says nothing, .zattrs at the same root does: both are looked at.
        ({"zarr.json": b"{}", ".zattrs": ATTRS}, True),
    ],
)
def test_looks_like_zipped_ome_zarr(
    tmp_path: Path, members: dict[str, bytes], expected: bool
) -> None:
    path = _zip(tmp_path / "x.zip", members)
    assert looks_like_zipped_ome_zarr(path.read_bytes()[:16], path) is expected


def test_not_a_zip_is_not_one(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"II*\x00" + bytes(100))
    assert looks_like_zipped_ome_zarr(path.read_bytes()[:16], path) is False
    path.write_bytes(b"PK\x03\x04" + bytes(100))  # the magic, then nothing a zip has
    assert looks_like_zipped_ome_zarr(path.read_bytes()[:16], path) is False


def test_a_huge_metadata_member_is_not_read_for_detection(tmp_path: Path) -> None:
    pad = 16 * MiB - len(b'{"multiscales": [], "pad": ""}')
    huge = b'{"multiscales": [], "pad": "' + b"x" * pad + b'"}'
    assert len(huge) == 16 * MiB
    path = _zip(tmp_path / "x.zip", {".zattrs": huge})
    assert looks_like_zipped_ome_zarr(b"PK\x03\x04", path) is False
    # One byte under the cap is read.
    smaller = b'{"multiscales": [], "pad": "' + b"x" * (pad - 1) + b'"}'
    path = _zip(tmp_path / "z.zip", {".zattrs": smaller})
    assert looks_like_zipped_ome_zarr(b"PK\x03\x04", path) is True


# ----------------------------------------------------------------------------- check_zip


def _ok(tmp_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    members = {".zattrs": ATTRS, ".zgroup": b"{}", "0/0": b"chunk"}
    members.update(extra or {})
    return _zip(tmp_path / "ok.zip", members)


def test_a_sound_zip_gives_its_root(tmp_path: Path) -> None:
    assert check_zip(_ok(tmp_path), ReadLimits()) == ""
    nested = _zip(tmp_path / "n.zip", {"cells.zarr/.zattrs": ATTRS, "cells.zarr/0/0": b"x"})
    assert check_zip(nested, ReadLimits()) == "cells.zarr"


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "\\evil", "a\\b", "../up", "a/../../up", "C:/win", "c:", "a/.."]
)
def test_names_pointing_out_are_refused(tmp_path: Path, name: str) -> None:
    path = _ok(tmp_path, {name: b"x"})
    with pytest.raises(CorruptFileError) as info:
        check_zip(path, ReadLimits())
    assert "points outside the archive; refused" in str(info.value)
    assert str(info.value).startswith("ok.zip: member ")


def test_harmless_names_with_dots_and_colons_pass(tmp_path: Path) -> None:
    path = _ok(tmp_path, {"a..b/c": b"x", "x/c:": b"x", "..a": b"x"})
    assert check_zip(path, ReadLimits()) == ""


def test_member_count(tmp_path: Path) -> None:
    path = _ok(tmp_path)  # 3 members
    assert check_zip(path, ReadLimits(), ZipLimits(max_members=3)) == ""
    with pytest.raises(LimitExceededError, match=r"ok\.zip: 3 members, over the limit of 2"):
        check_zip(path, ReadLimits(), ZipLimits(max_members=2))


def test_total_bytes(tmp_path: Path) -> None:
    path = _ok(tmp_path, {"0/1": b"y" * 1000})
    total = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    assert check_zip(path, ReadLimits(), ZipLimits(max_total_bytes=total)) == ""
    with pytest.raises(LimitExceededError, match=f"expands to {total:,} bytes, over the limit"):
        check_zip(path, ReadLimits(), ZipLimits(max_total_bytes=total - 1))


def test_member_caps_for_chunks_and_for_metadata(tmp_path: Path) -> None:
    limits = ReadLimits(max_plane_bytes=1000)
    cap = 1000 + MiB
    fits = _ok(tmp_path, {"0/1": bytes(cap)})
    assert check_zip(fits, limits, ZipLimits(max_ratio=10**9)) == ""
    over = _zip(tmp_path / "over.zip", {".zattrs": ATTRS, "0/1": bytes(cap + 1)})
    with pytest.raises(LimitExceededError) as info:
        check_zip(over, limits, ZipLimits(max_ratio=10**9))
    assert f"member '0/1' expands to {cap + 1:,} bytes, over the limit of {cap:,}" in str(
        info.value
    )
    # Metadata members have their own cap, whatever the plane limit.
    meta = _zip(tmp_path / "meta.zip", {".zattrs": ATTRS, "0/.zarray": bytes(2000)})
    assert check_zip(meta, limits, ZipLimits(max_metadata_bytes=2000)) == ""
    for name in (".zattrs", ".zgroup", "0/.zarray", "zarr.json"):
        path = _zip(tmp_path / "m.zip", {".zattrs": ATTRS, name: bytes(2001)})
        with pytest.raises(LimitExceededError, match="over the limit of 2,000"):
            check_zip(path, ReadLimits(), ZipLimits(max_metadata_bytes=2000))
    # A large metadata member within its own cap passes although it is over the chunk cap.
    big_meta = _zip(tmp_path / "bm.zip", {".zattrs": ATTRS, "0/.zarray": bytes(cap + 10)})
    assert check_zip(big_meta, limits, ZipLimits(max_ratio=10**9)) == ""


def test_ratio_bombs(tmp_path: Path) -> None:
    floor = 64 * 1024
    zl = ZipLimits(ratio_floor=floor, max_ratio=200)
    bomb = _ok(tmp_path, {"0/1": bytes(floor + 1)})
    with pytest.raises(LimitExceededError) as info:
        check_zip(bomb, ReadLimits(), zl)
    assert "member '0/1' expands" in str(info.value)
    assert "-fold" in str(info.value)
    assert "a zip bomb is refused" in str(info.value)
    # At the floor, or at a ratio under the cap, it passes; stored members have ratio 1.
    at_floor = _ok(tmp_path, {"0/1": bytes(floor)})
    assert check_zip(at_floor, ReadLimits(), zl) == ""
    stored = _zip(
        tmp_path / "s.zip", {".zattrs": ATTRS, "0/1": bytes(4 * floor)}, zipfile.ZIP_STORED
    )
    assert check_zip(stored, ReadLimits(), zl) == ""
    info_ = zipfile.ZipFile(bomb).getinfo("0/1")
    ratio = info_.file_size / info_.compress_size
    assert (
        check_zip(bomb, ReadLimits(), ZipLimits(ratio_floor=floor, max_ratio=int(ratio) + 1)) == ""
    )


def test_not_a_zip_and_no_root_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CorruptFileError, match=r"bad\.zip: not a readable zip file"):
        check_zip(path, ReadLimits())
    rootless = _zip(tmp_path / "rootless.zip", {"a/b/.zattrs": ATTRS})
    with pytest.raises(CorruptFileError, match=r"rootless\.zip: a zip without an OME-Zarr group"):
        check_zip(rootless, ReadLimits())


def test_open_zip_group_opens_the_root_with_the_plane_cap(tmp_path: Path) -> None:
    import zarr

    folder = tmp_path / "cells.zarr"
    group = zarr.open_group(str(folder), mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{"version": "0.4"}]
    group.create_array("0", shape=(4, 4), dtype="uint8")[...] = 7
    members = {
        f"cells.zarr/{p.relative_to(folder)}": p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file()
    }
    path = _zip(tmp_path / "cells.zip", members)
    opened, store = open_zip_group(path, ReadLimits(max_plane_bytes=5000))
    try:
        assert store.member_cap == 5000 + MiB
        assert "multiscales" in opened.attrs
        assert int(opened["0"][0, 0]) == 7
    finally:
        store.close()
    with pytest.raises(CorruptFileError):
        open_zip_group(_zip(tmp_path / "none.zip", {"x": b"1"}), ReadLimits())


def test_every_refusal_names_the_zip_and_cuts_long_member_names(tmp_path: Path) -> None:
    long = "0/" + "m" * 120
    cases = [
        (_ok(tmp_path, {"../" + long: b"x"}), ReadLimits(), None, "points outside the archive"),
        (
            _zip(tmp_path / "big.zip", {".zattrs": ATTRS, long: bytes(MiB + 1)}),
            ReadLimits(max_plane_bytes=0),
            ZipLimits(ratio_floor=10**9),
            "expands to 1,048,577 bytes",
        ),
        (
            _zip(tmp_path / "bomb.zip", {".zattrs": ATTRS, long: bytes(100_000)}),
            ReadLimits(),
            ZipLimits(ratio_floor=1000, max_ratio=2),
            "a zip bomb is refused",
        ),
    ]
    for path, limits, zl, what in cases:
        with pytest.raises((CorruptFileError, LimitExceededError)) as info:
            check_zip(path, limits, zl)
        text = str(info.value)
        assert what in text, text
        assert str(info.value.path) == str(path)
        assert f"member {('../' + long if 'outside' in what else long)[:80]!r} " in text
    info_ = zipfile.ZipFile(tmp_path / "bomb.zip").getinfo(long)
    ratio = info_.file_size / info_.compress_size
    with pytest.raises(LimitExceededError) as bomb:
        check_zip(tmp_path / "bomb.zip", ReadLimits(), ZipLimits(ratio_floor=1000, max_ratio=2))
    assert f"expands {ratio:,.0f}-fold ({info_.compress_size:,} -> 100,000 bytes)" in str(
        bomb.value
    )


def test_other_refusals_carry_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    rootless = _zip(tmp_path / "rootless.zip", {"a/b/.zattrs": ATTRS})
    ok = _ok(tmp_path)
    for path, zl in (
        (bad, None),
        (rootless, None),
        (ok, ZipLimits(max_members=1)),
        (ok, ZipLimits(max_total_bytes=1)),
    ):
        with pytest.raises((CorruptFileError, LimitExceededError)) as info:
            check_zip(path, ReadLimits(), zl)
        assert str(info.value.path) == str(path)


def test_a_ratio_exactly_at_the_cap_passes(tmp_path: Path) -> None:
    stored = _zip(tmp_path / "s.zip", {".zattrs": ATTRS, "0/1": bytes(5000)}, zipfile.ZIP_STORED)
    assert check_zip(stored, ReadLimits(), ZipLimits(ratio_floor=10, max_ratio=1)) == ""


def test_the_zipped_read_member_names_the_file(tmp_path: Path) -> None:
    from zstack_analyzer.zarr.zipped import read_member

    path = _zip(tmp_path / "r.zip", {"m": bytes(100)})
    with zipfile.ZipFile(path) as archive:
        assert read_member(archive, "m", 100, path=path) == bytes(100)
        with pytest.raises(LimitExceededError) as info:
            read_member(archive, "m", 99, path=path)
    assert str(info.value.path) == str(path)
