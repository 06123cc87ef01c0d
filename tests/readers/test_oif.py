"""Olympus OIF and OIB readers on files built from FluoView's layout (none in the corpus)."""

from __future__ import annotations

import struct
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.contract import assert_reader_contract
from tests.synthetic import encoded_stack
from tests.synthetic_oif import write_oib, write_oif
from zstack_analyzer import (
    CorruptFileError,
    ImageLoadError,
    LimitExceededError,
    open_image,
)
from zstack_analyzer.readers.oif import OibReader, OifReader

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def test_oif_contract(tmp_path: Path) -> None:
    stack = encoded_stack(2, 3, 4, 20, 24)
    path = write_oif(tmp_path, stack)
    assert_reader_contract(OifReader, path, stack)


def test_oib_contract(tmp_path: Path) -> None:
    stack = encoded_stack(2, 2, 3, 16, 18)
    path = write_oib(tmp_path / "cells.oib", stack)
    assert_reader_contract(OibReader, path, stack)


@pytest.mark.parametrize("kind", ["oif", "oib"])
def test_settings_give_channels_scaling_and_objective(tmp_path: Path, kind: str) -> None:
    stack = encoded_stack(3, 2, 4, 16, 16)
    dyes = ["Alexa Fluor 488", "Alexa Fluor 568"]
    path = (
        write_oif(tmp_path, stack, dyes=dyes)
        if kind == "oif"
        else write_oib(tmp_path / "a.oib", stack, dyes=dyes)
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.file_format == kind.upper()
    assert [c.name for c in md.channels] == ["Ch1", "Ch2"]  # CH Name, never DyeName
    assert [c.fluorophore for c in md.channels] == dyes
    assert md.channels[0].emission_nm == 520
    assert md.channels[1].excitation_nm == 588
    assert md.physical_size.x_um == pytest.approx(0.207)
    assert md.physical_size.z_um == pytest.approx(1.0)  # 3000 nm over 3 steps
    assert md.time_interval_s == pytest.approx(2.0)
    assert md.objective is not None
    assert (md.objective.magnification, md.objective.numerical_aperture) == (60, 1.42)
    assert md.objective.immersion == "Oil"
    assert md.acquired_at_local == datetime(2012, 5, 3, 14, 22, 10)


@pytest.mark.parametrize("kind", ["oif", "oib"])
def test_channel_name_dye_transmitted_and_non_square_pixels(tmp_path: Path, kind: str) -> None:
    """FV1000 as Bio-Formats reads it: CH Name is the name, DyeName the fluorophore.

    A DyeName of ``None`` or empty is no fluorophore; a TD (transmitted detector)
    channel is transmitted light; width and height of a pixel are read from their own keys.
    """
    stack = encoded_stack(1, 3, 2, 12, 20)
    settings = {
        "dyes": ["Alexa Fluor 546", "None", ""],
        "channel_names": ["CH1", "CH2", "TD1"],
        "pixel_um": (0.124, 0.31),
    }
    path = (
        write_oif(tmp_path, stack, **settings)
        if kind == "oif"
        else write_oib(tmp_path / "a.oib", stack, **settings)
    )
    with open_image(path) as image:
        md = image.metadata()
    assert [c.name for c in md.channels] == ["CH1", "CH2", "TD1"]
    assert [c.fluorophore for c in md.channels] == ["Alexa Fluor 546", None, None]
    assert [c.illumination for c in md.channels] == [None, None, "Transmitted"]
    assert md.physical_size.x_um == pytest.approx(0.124)
    assert md.physical_size.y_um == pytest.approx(0.31)
    assert md.provenance["physical_size.y_um"].endswith("HeightConvertValue")
    assert md.provenance["channels[].name"].endswith("CH Name")
    assert md.provenance["channels[].fluorophore"].endswith("DyeName")


def test_oif_opens_only_from_its_main_file_with_folder(tmp_path: Path) -> None:
    path = write_oif(tmp_path, encoded_stack(1, 1, 2, 8, 8))
    (tmp_path / "cells.oif.files").rename(tmp_path / "elsewhere")
    with pytest.raises(CorruptFileError, match=r"cells\.oif"):
        open_image(path)


def test_missing_plane_file_reads_zeros_with_warning(tmp_path: Path) -> None:
    stack = encoded_stack(1, 2, 2, 8, 8)
    path = write_oif(tmp_path, stack)
    (tmp_path / "cells.oif.files" / "s_C002Z002T001.tif").unlink()
    with open_image(path) as image:
        assert any("missing" in w for w in image.metadata().warnings)
        assert not image.read_plane(0, 0, 1, 1).any()
        np.testing.assert_array_equal(image.read_plane(0, 0, 1, 0), stack[0, 1, 0])


# --------------------------------------------------------------------------- bad input
def _everything(path: Path) -> None:
    with open_image(path) as image:
        info = image.scenes()[0]
        image.metadata()
        for t in range(info.size_t):
            for c in range(info.size_c):
                for z in range(info.size_z):
                    image.read_plane(0, t, c, z)


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7, 0.98])
def test_truncated_oib(tmp_path: Path, fraction: float) -> None:
    data = write_oib(tmp_path / "whole.oib", encoded_stack(1, 2, 3, 16, 16)).read_bytes()
    path = tmp_path / "cut.oib"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptFileError, match=r"cut\.oib"):
        _everything(path)


def test_oib_fat_cycle_is_refused_not_followed(tmp_path: Path) -> None:
    path = write_oib(tmp_path / "loop.oib", encoded_stack(1, 1, 1, 8, 8))
    data = bytearray(path.read_bytes())
    (dir_start,) = struct.unpack("<I", data[48:52])
    # the directory's first sector now points back to itself
    data[512 + 4 * dir_start : 512 + 4 * dir_start + 4] = struct.pack("<I", dir_start)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"loop\.oib.*chain loops"):
        open_image(path)


def test_truncated_plane_tiff(tmp_path: Path) -> None:
    path = write_oif(tmp_path, encoded_stack(1, 1, 2, 32, 32))
    plane = tmp_path / "cells.oif.files" / "s_C001Z002T001.tif"
    plane.write_bytes(plane.read_bytes()[:300])
    with open_image(path) as image, pytest.raises(CorruptFileError, match=r"s_C001Z002T001"):
        image.read_plane(0, 0, 0, 1)


def _rewrite_settings(path: Path, old: str, new: str) -> None:
    text = path.read_bytes()[2:].decode("utf-16-le")
    assert old in text
    path.write_bytes(b"\xff\xfe" + text.replace(old, new).encode("utf-16-le"))


def test_settings_that_lie_about_sizes(tmp_path: Path) -> None:
    path = write_oif(tmp_path, encoded_stack(1, 1, 2, 16, 16))
    _rewrite_settings(path, 'AxisCode="X"\r\nMaxSize=16', 'AxisCode="X"\r\nMaxSize=10000000')
    with pytest.raises(LimitExceededError, match=r"cells\.oif"):
        open_image(path)


def test_settings_smaller_than_the_plane_files(tmp_path: Path) -> None:
    path = write_oif(tmp_path, encoded_stack(1, 1, 2, 16, 16))
    _rewrite_settings(path, 'AxisCode="Y"\r\nMaxSize=16', 'AxisCode="Y"\r\nMaxSize=8')
    with open_image(path) as image, pytest.raises(CorruptFileError, match="declare"):
        image.read_plane(0, 0, 0, 0)
    _rewrite_settings(path, 'AxisCode="Z"\r\nMaxSize=2', 'AxisCode="Z"\r\nMaxSize=1')
    with pytest.raises(CorruptFileError, match="outside the declared"):
        open_image(path)


@pytest.mark.parametrize("seed", range(5))
def test_oib_header_byte_flips(tmp_path: Path, seed: int) -> None:
    data = bytearray(write_oib(tmp_path / "ok.oib", encoded_stack(1, 1, 2, 8, 8)).read_bytes())
    rng = np.random.default_rng(seed)
    for position in rng.integers(8, 512, size=6):
        data[int(position)] ^= 0xFF
    path = tmp_path / "flipped.oib"
    path.write_bytes(bytes(data))
    try:
        _everything(path)
    except ImageLoadError as exc:
        assert "flipped.oib" in str(exc)
