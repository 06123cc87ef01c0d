"""A ``.zip`` of an OME-Zarr directory, read in place: the upload path for OME-Zarr.

Why read in place rather than extract: a directory cannot be one multipart
upload, but its zip can, and zarr reads a zip member by name, so the stored
upload stays one file (one hash, one download, one object in any storage
backend) and nothing is ever written outside it. What extraction would have
to guard against is refused here at open, before any chunk is read:

- member names that are absolute or climb out (``..``) or carry NUL/backslash
  (a zip crafted for traversal is not an honest OME-Zarr);
- too many members, or a total uncompressed size over the limit;
- members whose uncompressed size is out of all proportion to their stored
  size (zip bombs), or larger than any chunk may be.

A zip stored in an S3 bucket is read in place the same way: zipfile takes a
file object, so :class:`~zstack_analyzer.storage.remote.RangedFile` serves the
central directory and each chunk with ranged GETs
(:class:`~zstack_analyzer.zarr.ranged_zip.RangedZipStore`).
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from zstack_analyzer.errors import CorruptFileError, LimitExceededError, ZstackError
from zstack_analyzer.storage.remote import RemoteObject

if TYPE_CHECKING:
    from collections.abc import Iterator

    from zstack_analyzer.limits import ReadLimits

__all__ = ["ZipLimits", "check_zip", "looks_like_zipped_ome_zarr", "zip_root"]

ZIP_MAGIC = b"PK\x03\x04"
_NGFF_KEYS = ("multiscales", "bioformats2raw.layout", "plate", "ome")


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """Caps on a zipped OME-Zarr.

    Examples
    --------
    >>> ZipLimits().max_ratio
    200
    """

    max_members: int = 2_000_000
    max_total_bytes: int = 1 << 40
    #: Uncompressed / compressed size above which a member is a bomb (past ``ratio_floor`` bytes).
    max_ratio: int = 200
    ratio_floor: int = 1 << 20
    max_metadata_bytes: int = 64 << 20


def _metadata_names(names: list[str]) -> list[str]:
    return [n for n in names if PurePosixPath(n).name in (".zattrs", "zarr.json")]


def zip_root(names: list[str]) -> str | None:
    """The folder inside the zip that is the OME-Zarr root ("" for the top), or ``None``.

    The root is the shallowest folder holding group metadata, at the top or
    one level down (a zip of ``cells.ome.zarr/`` itself).
    """
    roots = sorted(
        (str(PurePosixPath(n).parent) for n in _metadata_names(names)),
        key=lambda p: (p.count("/"), p),
    )
    for root in roots:
        if root == "." or "/" not in root:
            return "" if root == "." else root
    return None


@contextlib.contextmanager
def open_zip(source: Path | RemoteObject) -> Iterator[zipfile.ZipFile]:
    """The zip at a local path, or in a bucket (read by ranged GETs); closed on exit."""
    if not isinstance(source, RemoteObject):
        with zipfile.ZipFile(source) as archive:
            yield archive
        return
    with source.open() as fh, zipfile.ZipFile(fh) as archive:
        yield archive


def _name_of(source: Path | RemoteObject) -> Path:
    return source.path if isinstance(source, RemoteObject) else source


def read_member(archive: zipfile.ZipFile, name: str, cap: int, *, path: Path) -> bytes:
    """A member's bytes, never inflated past its declared size (see :mod:`~zstack_analyzer.zarr.bounded`)."""
    from zstack_analyzer.zarr.bounded import read_member as bounded_read

    return bounded_read(archive, name, cap, path=path)


def looks_like_zipped_ome_zarr(head: bytes, path: Path | RemoteObject) -> bool:
    """A zip whose root (or single top folder) is a group with NGFF attributes; never raises."""
    if not head.startswith(ZIP_MAGIC):
        return False
    try:
        with open_zip(path) as archive:
            names = archive.namelist()
            root = zip_root(names)
            if root is None:
                return False
            for name in ("zarr.json", ".zattrs"):
                member = f"{root}/{name}" if root else name
                if member in names and archive.getinfo(member).file_size < (16 << 20):
                    doc = json.loads(read_member(archive, member, 16 << 20, path=_name_of(path)))
                    attrs = doc.get("attributes", {}) if name == "zarr.json" else doc
                    if isinstance(attrs, dict) and any(k in attrs for k in _NGFF_KEYS):
                        return True
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, RuntimeError, ZstackError):
        return False
    return False


def check_zip(
    source: Path | RemoteObject, limits: ReadLimits, zip_limits: ZipLimits | None = None
) -> str:
    """Refuse a hostile or oversized zip (see module docstring); return the OME-Zarr root in it.

    Raises
    ------
    CorruptFileError
        Traversal names, or no OME-Zarr root.
    LimitExceededError
        Too many members, too many bytes, or a member that is a zip bomb.
    """
    zl = zip_limits or ZipLimits()
    path = _name_of(source)
    name = path.name
    try:
        with open_zip(source) as archive:
            infos = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        msg = f"{name}: not a readable zip file: {exc}"
        raise CorruptFileError(msg, path=path) from exc
    if len(infos) > zl.max_members:
        msg = f"{name}: {len(infos):,} members, over the limit of {zl.max_members:,}"
        raise LimitExceededError(msg, path=path)
    total = 0
    largest_chunk = limits.max_plane_bytes + (1 << 20)
    for info in infos:
        member = info.filename
        parts = PurePosixPath(member).parts
        if (
            member.startswith(("/", "\\"))
            or "\\" in member
            or "\x00" in member
            or ".." in parts
            or (parts and parts[0].endswith(":"))
        ):
            msg = f"{name}: member {member[:80]!r} points outside the archive; refused"
            raise CorruptFileError(msg, path=path)
        size, stored = info.file_size, max(1, info.compress_size)
        total += size
        is_metadata = PurePosixPath(member).name in (".zattrs", ".zgroup", ".zarray", "zarr.json")
        cap = zl.max_metadata_bytes if is_metadata else largest_chunk
        if size > cap:
            msg = f"{name}: member {member[:80]!r} expands to {size:,} bytes, over the limit of {cap:,}"
            raise LimitExceededError(msg, path=path)
        if size > zl.ratio_floor and size / stored > zl.max_ratio:
            msg = (
                f"{name}: member {member[:80]!r} expands {size / stored:,.0f}-fold "
                f"({stored:,} -> {size:,} bytes); a zip bomb is refused"
            )
            raise LimitExceededError(msg, path=path)
    if total > zl.max_total_bytes:
        msg = f"{name}: expands to {total:,} bytes, over the limit of {zl.max_total_bytes:,}"
        raise LimitExceededError(msg, path=path)
    root = zip_root([i.filename for i in infos])
    if root is None:
        msg = f"{name}: a zip without an OME-Zarr group at its top"
        raise CorruptFileError(msg, path=path)
    return root


def open_zip_group(source: Path | RemoteObject, limits: ReadLimits) -> tuple[Any, Any]:
    """``(group, store)``: the OME-Zarr root group inside the checked zip, read-only.

    A remote zip is read in place (:class:`~zstack_analyzer.zarr.ranged_zip.RangedZipStore`).
    """
    import zarr

    from zstack_analyzer.zarr.bounded import BoundedZipStore
    from zstack_analyzer.zarr.ranged_zip import RangedZipStore

    root = check_zip(source, limits)
    store: BoundedZipStore = (
        RangedZipStore(source)
        if isinstance(source, RemoteObject)
        else BoundedZipStore(source, mode="r")
    )
    store.member_cap = limits.max_plane_bytes + (1 << 20)
    try:
        group = zarr.open_group(store=store, path=root or None, mode="r")
    except BaseException:
        store.close()
        raise
    return group, store
