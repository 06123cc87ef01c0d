"""Download of a multi-file image's original: a zip of its files, names kept.

Why a zip: the original of a multi-file image (a Micro-Manager run, an OIF and
its ``.oif.files`` folder, an OME-TIFF set) is several files, and the main file
alone is not the image (its reader needs the companions beside it). The zip
holds every file under its name relative to the main file's folder, so it
unpacks into a folder any reader opens. Stored, not compressed (microscope
pixels barely compress, and storing costs no CPU), streamed as it is written:
nothing is built in memory or on disk, so no Range requests (200 only).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from zstack_analyzer.filesets import MAX_SET_FILES, FileSet, file_set
from zstack_analyzer.storage.local import LocalStorage

if TYPE_CHECKING:
    from collections.abc import Iterator

    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.storage.base import ObjectStorage

__all__ = ["image_file_set", "zip_chunks"]

CHUNK_BYTES = 1024 * 1024


def image_file_set(image: Image, storage: ObjectStorage, original: Path | None) -> FileSet | None:
    """The files of a multi-file record (in place: beside its original; a copy: its folder)."""
    if original is not None:
        if original.is_dir():
            return None
        files = file_set(original)
        return files if files.is_multi and files.main == Path(os.path.abspath(original)) else None
    if not isinstance(storage, LocalStorage):
        return None
    folder = storage.set_folder(image.stored_name)
    if folder is None or not folder.is_dir():
        return None
    members = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            members.append(path)
            if len(members) > MAX_SET_FILES:
                break
    return FileSet.of(storage.path(image.stored_name), members)


class _Pipe:
    """A write-only file for :class:`zipfile.ZipFile` whose bytes are taken as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def zip_chunks(files: FileSet) -> Iterator[bytes]:
    """The zip of ``files``, chunk by chunk (ZIP64 when needed, entries stored)."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in files.names:
            path = files.folder / name
            with path.open("rb") as src, zf.open(name, "w", force_zip64=True) as dst:
                while chunk := src.read(CHUNK_BYTES):
                    dst.write(chunk)
                    if data := pipe.take():
                        yield data
            if data := pipe.take():
                yield data
    if data := pipe.take():
        yield data
