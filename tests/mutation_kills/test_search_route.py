"""The search route's parameter rules (``service/routes/search.py``), called directly.

What the broader tests leave open: a bare date's bound (start of that day, or of the next
one for ``*_before``, and the last representable day kept as it is), an 11-character basic
ISO datetime, zones converted to UTC (also on a server whose local zone is not UTC), the
exact 422 details (the value cut at 64 characters, the known format names), a format name
in any case, equal bounds accepted, and control characters dropped from text filters.
"""

from __future__ import annotations

import time as time_module
from datetime import UTC, date, datetime, timedelta

import pytest

from zstack_analyzer.registry import supported_formats
from zstack_analyzer.service.errors import BadParameterError
from zstack_analyzer.service.routes.search import _check_order, _text, canonical_format, parse_when


def test_a_bare_date_is_the_start_of_that_day_or_the_next() -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_when(" 2025-03-01 ", "acquired_after", end_of_day=False) == start
    assert parse_when("2025-03-01", "acquired_before", end_of_day=True) == start + timedelta(days=1)
    assert parse_when("20250301", "acquired_after", end_of_day=False) == start
    after = parse_when("2025-03-01", "acquired_after", end_of_day=False)
    assert after.tzinfo is UTC
    # The last day there is: no next day to end at.
    last = parse_when("9999-12-31", "acquired_before", end_of_day=True)
    assert last == datetime.combine(date.max, datetime.min.time(), tzinfo=UTC)


def test_datetimes_are_utc() -> None:
    assert parse_when("20250301T10", "acquired_after", end_of_day=False) == datetime(
        2025, 3, 1, 10, tzinfo=UTC
    )
    naive = parse_when("2025-03-01T10:30:00", "acquired_after", end_of_day=True)
    assert naive == datetime(2025, 3, 1, 10, 30, tzinfo=UTC)
    assert naive.tzinfo is UTC
    zoned = parse_when("2025-03-01T10:30:00+05:00", "acquired_after", end_of_day=False)
    assert zoned == datetime(2025, 3, 1, 5, 30, tzinfo=UTC)
    assert zoned.utcoffset() == timedelta(0)


def test_zoned_datetimes_are_utc_on_a_server_in_another_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time_module.tzset()
    try:
        zoned = parse_when("2025-03-01T10:30:00-02:00", "acquired_after", end_of_day=False)
        naive = parse_when("2025-03-01T10:30:00", "acquired_after", end_of_day=False)
    finally:
        monkeypatch.undo()
        time_module.tzset()
    assert zoned.utcoffset() == timedelta(0)
    assert zoned.replace(tzinfo=None) == datetime(2025, 3, 1, 12, 30)
    assert zoned.tzinfo is UTC
    # A datetime without a zone is UTC, not the server's local time.
    assert naive == datetime(2025, 3, 1, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", ["last march", "2025-13-01", "2025-03-01Z", "x" * 100])
def test_a_bad_date_names_the_parameter_and_the_value(value: str) -> None:
    with pytest.raises(BadParameterError) as caught:
        parse_when(value, "acquired_before", end_of_day=True)
    assert caught.value.message == (
        "acquired_before: expected an ISO date or datetime such as 2024-03-31 or "
        f"2024-03-31T14:00:00Z, got {value[:64]!r}"
    )


def test_format_names_in_any_case() -> None:
    assert canonical_format("czi") == "CZI"
    assert canonical_format(" ome-tiff ") == "OME-TIFF"
    assert canonical_format("Nd2") == "ND2"


def test_an_unknown_format_lists_the_known_ones() -> None:
    names = sorted({info.name for info in supported_formats()})
    value = "b" * 100
    with pytest.raises(BadParameterError) as caught:
        canonical_format(value)
    assert caught.value.message == (
        f"format: unknown format {'b' * 64!r} (known: {', '.join(names)})"
    )


def test_bounds_in_order() -> None:
    _check_order(3, 3, "min_size_z/max_size_z")
    _check_order(None, 3, "min_size_z/max_size_z")
    _check_order(3, None, "min_size_z/max_size_z")
    _check_order(None, None, "min_size_z/max_size_z")
    _check_order(0.5, 1.0, "pixel_size_min_um/pixel_size_max_um")
    with pytest.raises(BadParameterError) as caught:
        _check_order(4, 3, "min_size_z/max_size_z")
    assert caught.value.message == "min_size_z/max_size_z: the minimum is greater than the maximum"


def test_text_filters_lose_control_characters() -> None:
    assert _text(None) is None
    assert _text("\x00 da\x1bpi\x7f ") == "dapi"
    assert _text("\x00\x1f ") is None
    assert _text("") is None
    assert _text("Alexa Fluor 488") == "Alexa Fluor 488"
