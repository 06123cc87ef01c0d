"""Stored originals as the service sees them: safe names, and the storage backends.

Files are named ``<uuid><suffix>``: a user's filename is display text and never
touches the file system or a bucket key. The backends (local folder, S3) live
in :mod:`zstack_analyzer.storage`; ``Storage`` stays the name routes type against.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from zstack_analyzer.storage.base import ObjectStorage as Storage
from zstack_analyzer.storage.base import SweepReport
from zstack_analyzer.storage.local import LocalStorage

if TYPE_CHECKING:
    from zstack_analyzer.service.config import Settings

__all__ = [
    "LocalStorage",
    "Storage",
    "SweepReport",
    "display_filename",
    "make_storage",
    "stored_suffix",
]

#: Longest display filename kept (characters).
MAX_FILENAME_CHARS = 255
# C0/C1 controls, and the bidirectional embedding/override/isolate controls
# (U+202A-U+202E, U+2066-U+2069) with the invisible marks U+200E, U+200F, U+061C:
# they let "photo\u202egpj.exe" display as "photoexe.jpg".
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_SUFFIX = re.compile(r"^(\.[a-z0-9]{1,8}){1,2}$")


def display_filename(name: str | None) -> str:
    r"""A user's filename made safe to show and to store as text.

    Path parts (either separator), control characters and bidirectional
    controls (U+202A-U+202E, U+2066-U+2069) are stripped, the text is NFC-normalised and capped at 255 characters (keeping the
    extension). An empty result becomes ``"upload"``.

    Examples
    --------
    >>> display_filename("../../etc/pass\x00wd.tif")
    'passwd.tif'
    >>> display_filename("C:\\data\\cells.czi")
    'cells.czi'
    """
    text = unicodedata.normalize("NFC", name or "")
    text = _CONTROL.sub("", text)
    text = PureWindowsPath(PurePosixPath(text).name).name.strip()
    if text in {"", ".", ".."}:
        return "upload"
    if len(text) > MAX_FILENAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            text = stem[: MAX_FILENAME_CHARS - len(ext) - 1] + "." + ext
        else:
            text = text[:MAX_FILENAME_CHARS]
    return text


def stored_suffix(filename: str, known: frozenset[str] = frozenset()) -> str:
    """The extension kept on disk: the longest known one (".ome.tif"), else a short plain one.

    Readers may use the extension to break ties, so it is kept; anything odd is
    dropped rather than trusted.

    Examples
    --------
    >>> stored_suffix("cells.OME.TIF", frozenset({".ome.tif", ".tif"}))
    '.ome.tif'
    >>> stored_suffix("weird.name/..")
    ''
    """
    lower = filename.lower()
    matches = [s for s in known if lower.endswith(s)]
    if matches:
        return max(matches, key=len)
    suffix = Path(lower).suffix
    return suffix if _SUFFIX.match(suffix) else ""


def make_storage(settings: Settings) -> Storage:
    """The backend the settings name: the data dir's images folder, or an S3 bucket."""
    if not settings.storage_url:
        return LocalStorage(settings.images_dir, settings.tmp_dir)
    from zstack_analyzer.storage.s3 import S3Location, S3Options, S3Storage

    try:
        import obstore  # noqa: F401
    except ImportError as exc:
        msg = (
            f"ZSTACK_STORAGE_URL={settings.storage_url} needs the S3 client: "
            "pip install 'zstack-analyzer[s3]'"
        )
        raise RuntimeError(msg) from exc
    secret = settings.aws_secret_access_key
    options = S3Options(
        endpoint_url=settings.aws_endpoint_url,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        region=settings.aws_region,
        allow_http=settings.aws_allow_http,
        part_bytes=settings.storage.part_bytes,
        max_concurrency=settings.storage.max_concurrency,
    )
    return S3Storage(
        S3Location.parse(settings.storage_url),
        options,
        tmp_dir=settings.tmp_dir,
        cache_dir=settings.object_cache_dir,
        cache_max_bytes=settings.storage.object_cache_max_bytes,
    )
