"""OIF/OIB pixel sizes: X and Y read each from their own key and unit.

A non-square pixel (Width 0.207 µm, Height 310 nm) shows a reader that takes Y from
the width, ignores a unit, or keeps a zero or negative size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.synthetic import encoded_stack
from tests.synthetic_oif import write_oif
from zstack_analyzer import open_image

if TYPE_CHECKING:
    from pathlib import Path


def _with_reference(tmp_path: Path, width: str, height: str) -> Path:
    """An OIF whose ``[Reference Image Parameter]`` lines are replaced."""
    path = write_oif(tmp_path, encoded_stack(1, 2, 3, 16, 24))
    text = path.read_bytes()[2:].decode("utf-16-le")
    old = 'WidthConvertValue=0.207\r\nHeightConvertValue=0.207\r\nWidthUnit="um"\r\nHeightUnit="um"'
    assert old in text
    path.write_bytes(b"\xff\xfe" + text.replace(old, width + "\r\n" + height).encode("utf-16-le"))
    return path


def _sizes(path: Path) -> tuple[float | None, float | None, dict[str, str]]:
    with open_image(path) as image:
        md = image.metadata()
    return md.physical_size.x_um, md.physical_size.y_um, dict(md.provenance)


def test_x_and_y_come_from_their_own_keys_and_units(tmp_path: Path) -> None:
    x, y, provenance = _sizes(
        _with_reference(
            tmp_path,
            'WidthConvertValue=0.207\r\nWidthUnit="um"',
            'HeightConvertValue=310\r\nHeightUnit="nm"',
        )
    )
    assert x == pytest.approx(0.207)
    assert y == pytest.approx(0.31)
    assert provenance["physical_size.x_um"] == "OIF Reference Image Parameter/WidthConvertValue"
    assert provenance["physical_size.y_um"] == "OIF Reference Image Parameter/HeightConvertValue"


def test_a_missing_unit_means_micrometres(tmp_path: Path) -> None:
    x, y, _ = _sizes(_with_reference(tmp_path, "WidthConvertValue=0.5", "HeightConvertValue=0.25"))
    assert (x, y) == (pytest.approx(0.5), pytest.approx(0.25))


@pytest.mark.parametrize("bad", ["0", "-0.2", "nan", "inf", "abc", '""'])
def test_a_size_that_is_not_a_positive_number_is_unknown(tmp_path: Path, bad: str) -> None:
    x, y, provenance = _sizes(
        _with_reference(
            tmp_path,
            'WidthConvertValue=0.207\r\nWidthUnit="um"',
            f'HeightConvertValue={bad}\r\nHeightUnit="um"',
        )
    )
    assert x == pytest.approx(0.207)
    assert y is None
    assert "physical_size.y_um" not in provenance


def test_an_unknown_unit_gives_no_size(tmp_path: Path) -> None:
    x, y, _ = _sizes(
        _with_reference(
            tmp_path,
            'WidthConvertValue=0.207\r\nWidthUnit="parsec-ish"',
            'HeightConvertValue=2\r\nHeightUnit="mm"',
        )
    )
    assert x is None
    assert y == pytest.approx(2000.0)
