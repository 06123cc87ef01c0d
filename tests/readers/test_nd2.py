"""Nd2Reader on the real ND2 corpus file: contract, frame mapping, metadata, bad input.

No ND2 writer exists, so the checks run on the corpus (skipped when it is absent)
and compare against the nd2 package's own arrays and metadata.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dask
import nd2
import numpy as np
import pytest

from tests.contract import assert_reader_contract
from zstack_analyzer import CorruptFileError, UnsupportedFormatError, open_image
from zstack_analyzer.readers.nd2 import Nd2Reader

if TYPE_CHECKING:
    from pathlib import Path

CLUSTER = "nd2/cluster.nd2"


def _nd2_canonical(path: Path) -> np.ndarray:
    with nd2.ND2File(path) as f:
        assert dict(f.sizes) == {"T": 3, "Z": 10, "C": 2, "Y": 31, "X": 38}
        return np.asarray(f.asarray()).transpose(0, 2, 1, 3, 4)  # T,Z,C -> T,C,Z


def test_contract_against_nd2(testdata: Path) -> None:
    path = testdata / CLUSTER
    assert_reader_contract(Nd2Reader, path, _nd2_canonical(path))


def test_sniff_magic(testdata: Path, tmp_path: Path) -> None:
    head = (testdata / CLUSTER).read_bytes()[:4096]
    assert head[:4] == (0x0ABECEDA).to_bytes(4, "little")
    assert Nd2Reader.sniff(head, tmp_path / "renamed.dat")
    jp2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(64)
    assert Nd2Reader.sniff(jp2, tmp_path / "legacy.nd2")
    assert not Nd2Reader.sniff(jp2, tmp_path / "picture.jp2")
    assert not Nd2Reader.sniff(b"II*\x00" + bytes(60), tmp_path / "a.nd2")
    assert not Nd2Reader.sniff(b"", tmp_path / "a.nd2")


def test_planes_map_to_frames_and_components(testdata: Path) -> None:
    path = testdata / CLUSTER
    with nd2.ND2File(path) as f:
        native = np.asarray(f.asarray())  # T, Z, C, Y, X
        loop_indices = f.loop_indices
    with Nd2Reader(path) as reader:
        for t, z, c in [(0, 0, 0), (2, 9, 1), (1, 4, 0), (1, 4, 1)]:
            np.testing.assert_array_equal(reader.read_plane(0, t, c, z), native[t, z, c])
        # frame order: T outer, Z inner, as nd2's loop indices say
        assert loop_indices[13] == {"T": 1, "Z": 3}
        assert reader._layout.frame_index(0, 1, 3) == 13


def test_metadata_values(testdata: Path) -> None:
    with Nd2Reader(testdata / CLUSTER) as reader:
        md = reader.metadata(0)
        raw = reader.raw_metadata()
    assert md.file_format == "ND2"
    assert md.shape == (3, 2, 10, 31, 38)
    assert md.dtype == "uint16"
    assert (md.bit_depth, md.significant_bits) == (16, 12)
    assert md.physical_size.x_um == pytest.approx(0.167808983)
    assert md.physical_size.y_um == pytest.approx(0.167808983)
    assert md.physical_size.z_um == 0.5
    assert md.provenance["physical_size.z_um"].startswith("ND2 metadata.channels[0].volume")
    names = [ch.name for ch in md.channels]
    assert names == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]
    assert [ch.color for ch in md.channels] == ["#78E90F", "#FE0100"]
    assert [ch.emission_nm for ch in md.channels] == [525.0, 700.0]
    assert [ch.excitation_nm for ch in md.channels] == [488.0, 561.0]
    assert all(ch.exposure_ms is None for ch in md.channels)  # a confocal: none stated
    assert md.objective is not None
    assert md.objective.name == "Plan Apo λ 60x"
    assert md.objective.magnification == 60.0
    assert md.objective.numerical_aperture == 0.95
    assert md.objective.immersion == "Air"  # refractive index 1.0
    assert md.microscope is not None
    assert md.microscope.manufacturer == "Nikon"
    assert md.microscope.model == "Ti Microscope"
    assert md.microscope.software == "NIS-Elements AR"
    assert md.microscope.software_version == "4.20.01 (Build 982)"
    assert md.time_interval_s == pytest.approx(10.6475, abs=1e-3)
    assert md.extra_dims == {}
    assert md.scene_name is None
    assert raw["attributes"]["channelCount"] == 2


def test_acquisition_time_utc_and_local(testdata: Path) -> None:
    with Nd2Reader(testdata / CLUSTER) as reader:
        md = reader.metadata(0)
    # Julian day 2456827.0801370 (frame 0) minus its 445 ms relative time, in UTC
    assert md.acquired_at is not None
    assert md.acquired_at.tzinfo is UTC
    assert md.acquired_at.replace(microsecond=0) == datetime(2014, 6, 18, 13, 55, 23, tzinfo=UTC)
    # the zone is known, so the local text date ("18/06/2014  15:55:27", CEST) is not
    # repeated as acquired_at_local; it stays in the vendor metadata and agrees (+2 h)
    assert md.acquired_at_local is None
    assert md.vendor_metadata["text_info"]["date"] == "18/06/2014  15:55:27"
    assert not any("text date" in w for w in md.warnings)


def test_pickle_and_threaded_dask(testdata: Path) -> None:
    with open_image(testdata / CLUSTER) as reader:
        lazy = reader.to_dask(0)
        sequential = np.asarray(lazy.compute(scheduler="sync"))
        with dask.config.set(num_workers=4):
            threaded = np.asarray(lazy.compute(scheduler="threads"))
            mip = np.asarray(lazy.max(axis=2).compute(scheduler="threads"))
        np.testing.assert_array_equal(threaded, sequential)
        np.testing.assert_array_equal(mip, sequential.max(axis=2))
        clone = pickle.loads(pickle.dumps(reader))
        try:
            np.testing.assert_array_equal(np.asarray(clone.to_dask(0)), sequential)
        finally:
            clone.close()


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_copies_raise_corrupt(testdata: Path, tmp_path: Path, fraction: float) -> None:
    data = (testdata / CLUSTER).read_bytes()
    path = tmp_path / "truncated.nd2"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptFileError, match=r"truncated\.nd2"):
        open_image(path)


def test_magic_plus_random_bytes_raise_corrupt(testdata: Path, tmp_path: Path) -> None:
    data = (testdata / CLUSTER).read_bytes()
    path = tmp_path / "random.nd2"
    path.write_bytes(data[:4] + np.random.default_rng(3).bytes(len(data) - 4))
    with pytest.raises(CorruptFileError, match=r"random\.nd2"):
        open_image(path)


def test_legacy_signature_with_garbage_raises_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "legacy.nd2"
    path.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + np.random.default_rng(5).bytes(5000))
    with pytest.raises(CorruptFileError, match=r"legacy\.nd2"):
        open_image(path)


def test_jp2_picture_is_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "picture.jp2"
    path.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(100))
    # Not taken for an ND2 (whose images are JPEG 2000 inside): no reader claims it, or
    # Bio-Formats' JPEG 2000 reader (the fallback) refuses the garbage after the box.
    with pytest.raises((UnsupportedFormatError, CorruptFileError)) as info:
        open_image(path)
    assert "nd2" not in str(info.value).lower()


def test_text_helpers() -> None:
    from zstack_analyzer.readers.nd2 import _immersion, _parse_local_dates, _plane_exposures

    # day-first, unambiguous
    assert _parse_local_dates("18/06/2014  15:55:27") == [datetime(2014, 6, 18, 15, 55, 27)]
    # US with AM/PM
    assert _parse_local_dates("9/28/2021  9:41:27 AM") == [datetime(2021, 9, 28, 9, 41, 27)]
    # 05/06 reads two ways: the caller must not pick one
    assert len(_parse_local_dates("05/06/2021 10:00:00")) == 2
    description = (
        "Plane #1:\r\n Name: DAPI\r\n Camera Settings:   Exposure: 100 ms\r\n"
        "Plane #2:\r\n Name: GFP\r\n Camera Settings:   Exposure: 1.5 s\r\n"
    )
    assert _plane_exposures(description) == [100.0, 1500.0]
    assert _plane_exposures("Plane #1:\r\n Name: x\r\n") == [None]
    assert [_immersion(v) for v in (1.0, 1.33, 1.515, 1.2, None)] == [
        "Air",
        "Water",
        "Oil",
        None,
        None,
    ]


def test_loop_axes_and_frame_index() -> None:
    from zstack_analyzer.readers.nd2 import _Layout, _loop_axes

    loops, extra = _loop_axes(
        [("TimeLoop", 3), ("XYPosLoop", 2), ("CustomLoop", 5), ("ZStackLoop", 4), ("TimeLoop", 1)]
    )
    assert loops == [("T", 3), ("P", 2), ("U", 5), ("Z", 4)]
    assert extra == {"U": 5}
    again, extra2 = _loop_axes([("NETimeLoop", 2), ("TimeLoop", 3), ("CustomLoop", 2)])
    assert again == [("T", 2), ("T1", 3), ("U", 2)]
    assert extra2 == {"T1": 3, "U": 2}
    layout = _Layout(
        loops=(("T", 3), ("P", 2), ("U", 5), ("Z", 4)),
        size_t=3,
        size_z=4,
        size_p=2,
        size_c=1,
        samples=1,
        channels_in_frame=1,
        components=1,
        height=1,
        width=1,
        extra={"U": 5},
    )
    # frames are numbered with the first loop outermost, as nd2.loop_indices says
    assert layout.frame_index(p=1, t=2, z=3) == ((2 * 2 + 1) * 5 + 0) * 4 + 3


# ------------------------------------------------------------------ independent oracles
def _lite_double(data: bytes, key: str) -> list[float]:
    """Values of a double (type 6) entry named ``key`` in ND2's CLX "lite variant" chunks.

    Why here: the expected metadata must not rest on the nd2 package we wrap.
    An entry is (type byte, name length in UTF-16 units incl. NUL, name, value).
    """
    import re
    import struct

    name = key.encode("utf-16-le") + b"\x00\x00"
    found = []
    for match in re.finditer(re.escape(name), data):
        start = match.start()
        if data[start - 2] == 6 and data[start - 1] == len(key) + 1:
            found.append(struct.unpack_from("<d", data, match.end())[0])
    return found


def test_metadata_values_against_the_raw_file(testdata: Path) -> None:
    """Each value the reader reports is located in the file's own bytes.

    Sources: the text description (UTF-16 in ImageTextInfoLV), the lite-variant
    doubles of ImageMetadataSeqLV|0 and ImageCalibrationLV (dObjectiveNA,
    dRefractIndex1, dWavelength of the excitation/emission spectra, dTimeAbsolute).
    """
    data = (testdata / CLUSTER).read_bytes()

    def text(value: str) -> bool:
        return value.encode("utf-16-le") in data

    with Nd2Reader(testdata / CLUSTER) as reader:
        md = reader.metadata(0)
    assert md.objective is not None
    assert text(f"Numerical Aperture: {md.objective.numerical_aperture:g}")
    assert _lite_double(data, "dObjectiveNA") == [md.objective.numerical_aperture]
    assert text(md.objective.name or "")
    # dObjectiveMag is -1 (not set): the 60 is the one the objective's name states
    assert _lite_double(data, "dObjectiveMag") == [-1.0]
    assert f"{md.objective.magnification:g}x" in (md.objective.name or "")
    assert _lite_double(data, "dRefractIndex1") == [1.0]  # air
    assert text("Refractive Index: 1\r")
    assert md.microscope is not None
    assert text(f"Microscope: {md.microscope.model}")
    assert [ch.name for ch in md.channels] == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]
    assert all(text(ch.name or "") for ch in md.channels)
    # Excitation: both lasers are stated on for both planes (description and the
    # per-plane excitation spectra); each channel's value is one of the stated lines.
    assert text("CH2\t{Laser Wavelength}: 488.0\t{Laser Power}: 0.5")
    assert text("CH4\t{Laser Wavelength}: 561.0\t{Laser Power}: 9.0")
    wavelengths = _lite_double(data, "dWavelength")
    assert wavelengths[:4] == [488.0, 561.0, 525.0, 0.0]  # plane 1: excitation x2, emission
    assert wavelengths[4:7] == [488.0, 561.0, 700.0]  # plane 2
    assert [ch.excitation_nm for ch in md.channels] == [488.0, 561.0]
    assert [ch.emission_nm for ch in md.channels] == [525.0, 700.0]
    assert not any("excitation" in w for w in md.warnings)
    # Time: dTimeAbsolute is a Julian day (UTC); 2456827.0801 = 2014-06-18 13:55 UTC.
    (julian,) = _lite_double(data, "dTimeAbsolute")
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=julian - 2440587.5)
    assert md.acquired_at is not None
    assert abs((md.acquired_at - stamp).total_seconds()) < 1.0
