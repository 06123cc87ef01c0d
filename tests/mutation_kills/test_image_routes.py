"""The helpers of the image routes (service/routes/images.py), called directly.

Found by mutation testing: the route tests send one or two Range headers, one
If-None-Match and one non-ASCII name; the edges of RFC 9110's range rules (a suffix
of 0 or 1 byte, a range starting at the last byte or just past it, the 16-range cap,
empty list elements), weak and listed ETags, each character class of the
Content-Disposition fallback, the stored suffix of a detected format and the
longest-first replacement of storage names in error messages were not pinned.
"""

from __future__ import annotations

import pytest

from tests.mutation_kills.service_db import image_row
from zstack_analyzer.errors import ZstackError
from zstack_analyzer.registry import known_suffixes
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.service.routes.images import (
    MAX_RANGES,
    _hint_suffix,
    content_disposition,
    default_thumbnail_spec,
    etag_matches,
    format_suffix,
    name_image_in_message,
    name_in_message,
    parse_range,
)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9, -5", 100, [(0, 9), (95, 99)]),
        ("bytes=0-9,-5", 100, [(0, 9), (95, 99)]),
        ("BYTES = 3-4", 100, [(3, 4)]),
        ("items=0-1", 100, None),
        ("bytes 0-1", 100, None),
        ("bytes=", 100, None),
        ("bytes=,", 100, None),
        ("bytes=, 0-1", 100, [(0, 1)]),
        ("bytes=x-1", 100, None),
        ("bytes=10-", 100, [(10, 99)]),
        ("bytes=0-200", 100, [(0, 99)]),
        ("bytes=5-5", 100, [(5, 5)]),
        ("bytes=9-3", 100, None),
        ("bytes=99-", 100, [(99, 99)]),
        ("bytes=100-", 100, []),
        ("bytes=200-", 100, []),
        ("bytes=200-300", 100, []),
        ("bytes=-0", 100, []),
        ("bytes=-1", 100, [(99, 99)]),
        ("bytes=-200", 100, [(0, 99)]),
        ("bytes=-5", 1, [(0, 0)]),
        ("bytes=-5", 0, []),
        ("bytes=-5, 0-1", 100, [(95, 99), (0, 1)]),
        ("bytes=200-, 3-4", 100, [(3, 4)]),
    ],
)
def test_parse_range_follows_rfc_9110(
    header: str | None, size: int, expected: list[tuple[int, int]] | None
) -> None:
    assert parse_range(header, size) == expected


def test_parse_range_honours_up_to_max_ranges() -> None:
    most = ",".join(f"{i}-{i}" for i in range(MAX_RANGES))
    assert MAX_RANGES == 16
    assert parse_range(f"bytes={most}", 100) == [(i, i) for i in range(MAX_RANGES)]
    assert parse_range(f"bytes={most},20-21", 100) is None


@pytest.mark.parametrize(
    ("header", "etag", "expected"),
    [
        (None, '"abc"', False),
        ("", '"abc"', False),
        ("*", '"abc"', True),
        (" * ", '"abc"', True),
        ('"abc"', '"abc"', True),
        ('"zzz"', '"abc"', False),
        ('W/"abc"', '"abc"', True),
        ('w/"abc"', '"abc"', False),
        ('"abc"W/', '"abc"', False),
        ('"zzz","abc"', '"abc"', True),
        ('"zzz", W/"abc"', '"abc"', True),
        ('"abcX"', '"abc"', False),
        ('"X1"', '"X1"', True),
    ],
)
def test_etag_matches_weakly_in_lists(header: str | None, etag: str, expected: bool) -> None:
    assert etag_matches(header, etag) is expected


def test_content_disposition_fallback_and_exact_name() -> None:
    name = 'a"b\\c;d é\x7f\x1f~X/.tif'
    assert content_disposition(name) == (
        'attachment; filename="a_b_c_d ___~X/.tif"'
        + "; filename*=UTF-8''a%22b%5Cc%3Bd%20%C3%A9%7F%1F~X%2F.tif"
    )
    assert content_disposition("plain.tif") == (
        "attachment; filename=\"plain.tif\"; filename*=UTF-8''plain.tif"
    )


def test_format_suffix_is_the_detected_formats() -> None:
    assert format_suffix("CZI", ".php") == ".czi"
    assert format_suffix("OME-TIFF", ".ome.tiff") == ".ome.tiff"
    assert format_suffix("OME-TIFF", "") == ".ome.tif"
    assert format_suffix("TIFF", ".tif") == ".tif"
    assert format_suffix("no such format", ".tif") == ""
    assert format_suffix("no such format", "") == ""


def test_format_suffix_without_the_registry_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    import zstack_analyzer.registry

    def broken() -> None:
        raise ImportError("a reader module failed to import")

    monkeypatch.setattr(zstack_analyzer.registry, "supported_formats", broken)
    assert format_suffix("CZI", ".czi") == ""


def test_hint_suffix_only_when_a_reader_claims_it() -> None:
    known = known_suffixes()
    assert _hint_suffix("dir/cells.OME.TIF", known) == ".ome.tif"
    assert _hint_suffix("cells.czi", known) == ".czi"
    assert _hint_suffix("shell.php", known) == ""
    assert _hint_suffix(None, known) == ""
    assert _hint_suffix("x.tif", frozenset()) == ""


def test_name_in_message_replaces_longest_first() -> None:
    exc = ZstackError("cannot read /data/tmp/z.tif (z.tif): bad")
    name_in_message(exc, {"z.tif": "cells.tif", "/data/tmp/z.tif": "cells.tif"})
    assert exc.message == "cannot read cells.tif (cells.tif): bad"
    assert exc.args == ("cannot read cells.tif (cells.tif): bad",)
    assert str(exc) == "cannot read cells.tif (cells.tif): bad"


def test_an_error_before_the_path_is_known_keeps_the_word_none() -> None:
    """Render and histogram name the file with ``path=None`` when finding the original failed."""
    image = image_row("cells.tif", stored_name="0a1b.tif")
    exc = ZstackError("0a1b.tif: the original changed (size None, was 42)")
    name_image_in_message(exc, image, None)
    assert exc.message == "cells.tif: the original changed (size None, was 42)"
    read = ZstackError("cannot read /data/originals/0a1b.tif: None of its planes")
    name_image_in_message(read, image, "/data/originals/0a1b.tif")
    assert read.message == "cannot read cells.tif: None of its planes"


def test_default_thumbnail_spec() -> None:
    spec = default_thumbnail_spec()
    assert spec == RenderSpec(kind="thumbnail", width=256, height=256)
    assert (spec.kind, spec.width, spec.height) == ("thumbnail", 256, 256)
