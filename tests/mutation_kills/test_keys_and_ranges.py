"""Store-key indices and single byte ranges: the two small grammars a client's request is read by.

``parse_index`` decides which zarr keys exist (a wrong answer serves scene 0 for ``٠`` or a
500 for ``²``); ``parse_single_range`` decides which bytes of an original a download sends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from zstack_analyzer.service.ranged import parse_single_range, stream_stored
from zstack_analyzer.storage.local import LocalStorage
from zstack_analyzer.zarr.keys import MAX_INDEX_DIGITS, parse_index

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.responses import StreamingResponse


@pytest.mark.parametrize(
    ("part", "index"),
    [
        ("0", 0),
        ("7", 7),
        ("12", 12),
        ("007", 7),
        ("9" * MAX_INDEX_DIGITS, 10**MAX_INDEX_DIGITS - 1),
    ],
)
def test_ascii_digits_are_an_index(part: str, index: int) -> None:
    assert parse_index(part) == index


@pytest.mark.parametrize(
    "part",
    [
        "",
        "²",
        "٠",
        "1" * (MAX_INDEX_DIGITS + 1),
        "1" * 5000,
        "-1",
        "+1",
        " 1",
        "1 ",
        "0x1",
        "1_0",
        "a",
    ],
)
def test_anything_else_is_no_index(part: str) -> None:
    assert parse_index(part) is None


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=10-19", 100, (10, 20)),
        ("bytes=0-0", 100, (0, 1)),
        ("bytes=5-5", 100, (5, 6)),
        ("bytes=99-", 100, (99, 100)),
        ("bytes=90-", 100, (90, 100)),
        ("bytes=90-500", 100, (90, 100)),
        ("bytes=0-99", 100, (0, 100)),
        ("bytes=-5", 100, (95, 100)),
        ("bytes=-1", 100, (99, 100)),
        ("bytes=-100", 100, (0, 100)),
        ("bytes=-500", 100, (0, 100)),
        ("  BYTES = 3 - 4  ", 100, (3, 5)),
        ("Bytes=3-4", 100, (3, 5)),
        ("bytes=0-0", 1, (0, 1)),
        ("bytes=-1", 1, (0, 1)),
    ],
)
def test_one_satisfiable_range(header: str, size: int, span: tuple[int, int]) -> None:
    assert parse_single_range(header, size) == span


@pytest.mark.parametrize(
    ("header", "size"),
    [
        (None, 100),
        ("", 100),
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=5-4", 100),
        ("bytes=-0", 100),
        ("bytes=-", 100),
        ("bytes=0-1,5-6", 100),
        ("items=0-1", 100),
        ("bytes=0-0", 0),
        ("bytes=-5", 0),
        ("xbytes=0-1", 100),
        ("bytes=0-1x", 100),
    ],
)
def test_anything_else_is_the_whole_body(header: str | None, size: int) -> None:
    assert parse_single_range(header, size) is None


def _body(response: StreamingResponse) -> bytes:
    async def collect() -> bytes:
        parts = [
            part if isinstance(part, bytes) else part.encode()
            async for part in response.body_iterator
        ]
        return b"".join(parts)

    return asyncio.run(collect())


@pytest.fixture
def stored(tmp_path: Path) -> tuple[LocalStorage, str, bytes]:
    storage = LocalStorage(tmp_path / "images", tmp_path / "tmp")
    storage.ensure_dirs()
    data = bytes(range(256)) * 4
    (storage.images_dir / "a.tif").write_bytes(data)
    return storage, "a.tif", data


def test_a_range_is_streamed_as_206_with_its_content_range(
    stored: tuple[LocalStorage, str, bytes],
) -> None:
    storage, name, data = stored
    response = stream_stored(storage, name, len(data), "bytes=10-19", "image/tiff", {"ETag": '"x"'})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert response.headers["content-length"] == "10"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == '"x"'
    assert response.media_type == "image/tiff"
    assert response.headers["content-type"] == "image/tiff"
    assert _body(response) == data[10:20]


def test_no_range_is_the_whole_object_as_200(stored: tuple[LocalStorage, str, bytes]) -> None:
    storage, name, data = stored
    for header in (None, "bytes=0-1,4-5", f"bytes={len(data)}-"):
        response = stream_stored(storage, name, len(data), header, "image/tiff", {})
        assert response.status_code == 200
        assert "content-range" not in response.headers
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["accept-ranges"] == "bytes"
        assert _body(response) == data
