"""Which reader opens a file: decided by content, in a fixed order, specific first.

Why content and not extension: users rename files, and ``.tif`` covers plain
TIFF, OME-TIFF, ImageJ and MetaMorph alike. Extensions only break ties and name
formats in the formats table. Once a reader's ``sniff`` accepts a file, its
errors propagate: the registry never falls through to a more generic reader,
which would turn "corrupt CZI" into a misleading "unsupported".
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import stat
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from zstack_analyzer.errors import CorruptFileError, MissingDependencyError, UnsupportedFormatError
from zstack_analyzer.storage.remote import RemoteObject

if TYPE_CHECKING:
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.readers._base import ImageReader

__all__ = [
    "FormatInfo",
    "detect_reader",
    "known_suffixes",
    "open_reader",
    "reads_remote",
    "supported_formats",
]

#: Readers in detection order: most specific first, plain TIFF always last.
READER_CLASSES: tuple[str, ...] = (
    # CZI's sniff is one compare of its 10-byte magic, which no other format starts with:
    # first, so opening a CZI does not pay six TIFF-family sniffs (issue 22's open cost).
    "zstack_analyzer.readers.czi:CziReader",
    # Micro-Manager datasets are OME-TIFFs (or ImageJ TIFFs) with MM's own header: first.
    "zstack_analyzer.readers.micromanager:MicroManagerReader",
    "zstack_analyzer.readers.ndtiff:NdTiffReader",
    "zstack_analyzer.readers.ome_tiff:OmeTiffReader",
    "zstack_analyzer.readers.imagej_tiff:ImageJTiffReader",
    "zstack_analyzer.readers.lsm:LsmReader",
    "zstack_analyzer.readers.stk:StkReader",
    "zstack_analyzer.readers.nd2:Nd2Reader",
    "zstack_analyzer.readers.lif:LifReader",
    "zstack_analyzer.zarr.reader:OmeZarrReader",
    "zstack_analyzer.readers.dicom:DicomReader",
    "zstack_analyzer.readers.oif:OibReader",
    "zstack_analyzer.readers.oif:OifReader",
    # DeltaVision before MRC: a .dv is an MRC variant (its id at byte 96, no "MAP" at 208).
    "zstack_analyzer.readers.dv:DeltaVisionReader",
    "zstack_analyzer.readers.mrc:MrcReader",
    "zstack_analyzer.readers.ims:ImarisReader",
    "zstack_analyzer.readers.tiff:TiffReader",
    # The fallback: files no native reader claims, by a Bio-Formats suffix (readers/bioformats/).
    "zstack_analyzer.readers.bioformats.reader:BioformatsReader",
)

#: Bytes handed to ``sniff``: enough for every magic number and a TIFF's first IFD offset.
HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class FormatInfo:
    """One row of the formats table.

    Examples
    --------
    >>> FormatInfo("CZI", (".czi",), ("pylibCZIrw",), True).name
    'CZI'
    """

    name: str
    suffixes: tuple[str, ...]
    required_packages: tuple[str, ...]
    available: bool
    #: The reader that opens it: our class name, or "Bio-Formats <its reader class>".
    reader: str | None = None


@cache
def reader_classes() -> tuple[type[ImageReader], ...]:
    """The reader classes in detection order (imported once; their modules import nothing heavy)."""
    classes = []
    for spec in READER_CLASSES:
        module_name, class_name = spec.split(":")
        classes.append(getattr(importlib.import_module(module_name), class_name))
    return tuple(classes)


def _package_available(package: str) -> bool:
    """Whether ``package`` can be imported (one already imported is: no finder is asked)."""
    return sys.modules.get(package) is not None or importlib.util.find_spec(package) is not None


def supported_formats() -> list[FormatInfo]:
    """Every format we read, its extensions and whether its reader package is installed.

    Examples
    --------
    >>> any(f.name == "CZI" for f in supported_formats())
    True
    """
    rows = [
        FormatInfo(
            cls.format_name,
            cls.suffixes,
            cls.required_packages,
            all(_package_available(p) for p in cls.required_packages),
            cls.__name__,
        )
        for cls in reader_classes()
        if cls.format_name != "Bio-Formats"
    ]
    return rows + _bioformats_rows({s for row in rows for s in row.suffixes})


def _bioformats_rows(native: set[str]) -> list[FormatInfo]:
    """One row per Bio-Formats reader, with only the suffixes it adds to the native ones.

    Why per reader and not one "Bio-Formats" row: a lab looks for its format
    by name ("Gatan Digital Micrograph"), and a record's ``file_format`` is
    that name, so the stored upload gets its suffix from this table.
    """
    from zstack_analyzer.readers.bioformats import is_available
    from zstack_analyzer.readers.bioformats.formats import bioformats_formats

    available = is_available()
    rows = []
    for fmt in bioformats_formats():
        added = tuple(s for s in fmt.suffixes if s not in native)
        if added:
            rows.append(
                FormatInfo(
                    fmt.file_format,
                    added,
                    ("zstack-analyzer[bioformats]",),
                    available,
                    f"Bio-Formats {fmt.reader}",
                )
            )
    return rows


def known_suffixes() -> frozenset[str]:
    """Every extension (lower case, with dot) that some reader claims."""
    return frozenset(s for cls in reader_classes() for s in cls.suffixes)


def _has_known_suffix(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in known_suffixes())


def reads_remote(format_name: str) -> bool:
    """Whether the reader of ``format_name`` (a record's ``format``) reads objects by ranges.

    Examples
    --------
    >>> reads_remote("OME-TIFF"), reads_remote("CZI")
    (True, False)
    """
    return any(cls.reads_remote for cls in reader_classes() if cls.format_name == format_name)


def _detect_remote(source: RemoteObject) -> type[ImageReader]:
    """The reader class of an object in a bucket, from its head read by a ranged GET.

    Readers that need a local file are still recognised (by ``head`` and the
    name alone), so that a CZI is refused as "read it from a local copy",
    not misnamed unsupported.
    """
    with source.open() as fh:
        head = fh.read(HEAD_BYTES)
    name = source.path.name
    if not head:
        msg = f"{name}: the file is empty (0 bytes)"
        raise CorruptFileError(msg, path=source.path)
    for cls in reader_classes():
        if cls.reads_remote:
            if cls.sniff_remote(head, source):
                return cls
        elif cls.sniff(head, source.path):
            msg = (
                f"{name}: a {cls.format_name} file is read from a local copy; its reader "
                "cannot read it by ranges from object storage"
            )
            raise UnsupportedFormatError(msg, path=source.path)
    msg = f"{name}: unsupported format (the content matches no reader that reads by ranges)"
    raise UnsupportedFormatError(msg, path=source.path)


def detect_reader(path: Path | str | RemoteObject) -> type[ImageReader]:
    """Return the reader class for ``path`` from its content.

    Raises
    ------
    UnsupportedFormatError
        When no reader claims the file, it is a directory, or it is missing and
        its extension is one no reader knows.
    FileNotFoundError
        When the path does not exist (and its extension is a known one).
    CorruptFileError
        When the file is empty.
    """
    if isinstance(path, RemoteObject):
        return _detect_remote(path)
    if _is_url(path):
        # A URL can only be an OME-Zarr (files are uploaded, not fetched).
        from zstack_analyzer.zarr.reader import OmeZarrReader

        return OmeZarrReader
    path = path if isinstance(path, Path) else Path(path)
    mode = _mode(path)  # one stat for "exists" and "is a folder" (opening is timed: issue 22)
    if mode is None:
        if not _has_known_suffix(path):
            msg = f"{path.name}: unsupported format (extension {path.suffix or 'none'!r} is not a known image format)"
            raise UnsupportedFormatError(msg, path=path)
        msg = f"{path}: no such file"
        raise FileNotFoundError(msg)
    if stat.S_ISDIR(mode):
        for cls in reader_classes():
            if cls.sniff(b"", path):
                return cls
        msg = f"{path.name}: is a directory, not an image file (nor an OME-Zarr)"
        raise UnsupportedFormatError(msg, path=path)
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.read(fd, HEAD_BYTES)
    finally:
        os.close(fd)
    if not head:
        msg = f"{path.name}: the file is empty (0 bytes)"
        raise CorruptFileError(msg, path=path)
    for cls in reader_classes():
        if cls.sniff(head, path):
            return cls
    native = [cls.format_name for cls in reader_classes() if cls.format_name != "Bio-Formats"]
    msg = (
        f"{path.name}: unsupported format (the content matches no reader: {', '.join(native)}; "
        "nor is its extension one of the Bio-Formats formats)"
    )
    raise UnsupportedFormatError(msg, path=path)


def _mode(path: Path) -> int | None:
    """``st_mode`` of ``path`` (links followed), or ``None`` where ``Path.exists`` says False."""
    try:
        return os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return None
        raise
    except ValueError:  # an embedded NUL: no such file
        return None


def _is_url(path: Path | str | RemoteObject) -> bool:
    return isinstance(path, str) and path.lower().startswith(("http://", "https://"))


def _display_name(path: Path | str | RemoteObject) -> str:
    if isinstance(path, RemoteObject):
        return path.path.name
    return str(path) if _is_url(path) else Path(path).name


def open_reader(
    path: Path | str | RemoteObject, /, *, limits: ReadLimits | None = None
) -> ImageReader:
    """Detect the format of ``path`` and open it with its reader.

    ``path`` may be a :class:`~zstack_analyzer.storage.remote.RemoteObject`:
    formats whose readers take file objects (the TIFF family, zipped
    OME-Zarr) are then read by ranged GETs, without a local copy.

    Raises
    ------
    MissingDependencyError
        When the format is recognised but its package is not installed.
    """
    if isinstance(path, str) and not _is_url(path):
        path = Path(path)  # parsed once, for detection and the reader (opening is timed)
    cls = detect_reader(path)
    missing = [p for p in cls.required_packages if not _package_available(p)]
    if missing:
        msg = (
            f"{_display_name(path)}: is a {cls.format_name} file, but its reader needs the package "
            f"{missing[0]!r}: pip install {missing[0]}"
        )
        where = path.path if isinstance(path, RemoteObject) else path
        raise MissingDependencyError(msg, package=missing[0], path=where)
    reader = cls(path, limits=limits)
    try:
        _check_scene_sizes(reader)
    except BaseException:
        reader.close()
        raise
    return reader


def _check_scene_sizes(reader: ImageReader) -> None:
    """Refuse a reader whose scenes declare an empty or negative axis.

    Why here, after every reader: a flipped byte that turns a width into 0 (or
    a count into -1) makes every later step fail with an IndexError or a
    zero-size array; one check at open, whatever the format, turns it into the
    documented :class:`CorruptFileError` (422).
    """
    for info in reader.scenes():
        sizes = {
            "T": info.size_t,
            "C": info.size_c,
            "Z": info.size_z,
            "Y": info.size_y,
            "X": info.size_x,
            "S": info.samples_per_pixel,
        }
        bad = {axis: size for axis, size in sizes.items() if size <= 0}
        if bad:
            listed = ", ".join(f"{axis}={size}" for axis, size in bad.items())
            msg = (
                f"{reader.path.name}: scene {info.index} declares an empty or negative size "
                f"({listed}); the file is corrupt"
            )
            raise CorruptFileError(msg, path=reader.path)
