"""Encode rendered pictures as PNG, JPEG or WebP bytes, and write them atomically.

Why cheap settings: a thumbnail is encoded once and then served from the
cache, and at thumbnail sizes zlib level 1 costs a fraction of level 6 for
files only slightly larger.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["MEDIA_TYPES", "encode_image", "format_for_path", "write_atomic"]

ImageFormat = Literal["png", "jpeg", "webp"]

MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

_SUFFIXES: dict[str, ImageFormat] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".webp": "webp",
}


def format_for_path(path: Path | str) -> ImageFormat:
    """The image format implied by a file name's extension (PNG, JPEG or WebP).

    Examples
    --------
    >>> format_for_path("thumb.JPG")
    'jpeg'
    """
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        msg = f"{Path(path).name}: cannot save a thumbnail as {suffix or 'no extension'!r}; use .png, .jpg or .webp"
        raise ValueError(msg) from None


def encode_image(image: Image.Image, image_format: str = "png") -> bytes:
    r"""Encode ``image`` as ``png``, ``jpeg`` or ``webp`` bytes.

    Examples
    --------
    >>> from PIL import Image
    >>> encode_image(Image.new("RGB", (2, 2)))[:4]
    b'\x89PNG'
    """
    buffer = io.BytesIO()
    fmt = image_format.lower()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=1)
    elif fmt in ("jpeg", "jpg"):
        rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
        rgb.save(buffer, format="JPEG", quality=90)
    elif fmt == "webp":
        image.save(buffer, format="WEBP", quality=90, method=3)
    else:
        msg = f"unknown image format {image_format!r}; use png, jpeg or webp"
        raise ValueError(msg)
    return buffer.getvalue()


def write_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and ``os.replace``.

    Why: a reader never sees a half-written picture, and concurrent writers of
    the same path simply replace one another.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
