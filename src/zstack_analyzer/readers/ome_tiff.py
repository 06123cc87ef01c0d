"""OME-TIFF: pixels in TIFF IFDs, dimensions and calibration in OME-XML.

Why our own plane table instead of tifffile's OME series: tifffile walks every
IFD of every file before it returns a series, which makes opening a large
BigTIFF cost as much as its IFD count. The OME ``TiffData`` elements already
say which IFD of which file holds plane (t, c, z), so opening here reads the
first IFD and the XML only; pages are parsed when a plane is read. The same
table opens a multi-file set from any member via its companion ``.ome`` file,
and from the companion itself (``*.companion.ome``, as Bio-Formats does): it is
opened as the set it describes, through its first member present beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError, MetadataError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.metadata import ChannelInfo, ImageMetadata, SceneInfo
from zstack_analyzer.readers._ome import image_metadata, parse_ome_xml
from zstack_analyzer.readers._tiff_common import (
    ScenePlan,
    TiffFamilyReader,
    TiffPeek,
    series_plan,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from zstack_analyzer.filesets import FileSet
    from zstack_analyzer.readers._ome import OmeDocument, OmeImage
    from zstack_analyzer.storage.remote import RemoteObject

#: The name Bio-Formats and bfconvert give a multi-file set's metadata file.
COMPANION_SUFFIX = ".companion.ome"

__all__ = ["OmeTiffReader"]

logger = logging.getLogger(__name__)

#: Name ending of a multi-file set's metadata file (Bio-Formats' convention).
COMPANION_SUFFIX = ".companion.ome"


class OmeTiffReader(TiffFamilyReader):
    """OME-TIFF files and multi-file sets (BinaryOnly members with a companion).

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("cells.ome.tif") as image:  # doctest: +SKIP
    ...     image.metadata(0).physical_size
    """

    format_name: ClassVar[str] = "OME-TIFF"
    suffixes: ClassVar[tuple[str, ...]] = (
        ".ome.tif",
        ".ome.tiff",
        ".ome.btf",
        ".ome.tf2",
        ".ome.tf8",
        COMPANION_SUFFIX,
    )

    def __init__(
        self, path: Path | str | RemoteObject, /, *, limits: ReadLimits | None = None
    ) -> None:
        if isinstance(path, str | Path) and _is_companion_name(Path(path)):
            path = _first_member(Path(path), limits or ReadLimits())
        super().__init__(path, limits=limits)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """An OME-TIFF (first IFD's description is OME-XML), or a set's ``.companion.ome``."""
        if _is_companion_name(path):
            return bytes(head[:1]) == b"<" and b"<OME" in bytes(head)
        return super().sniff(head, path)

    @classmethod
    def claims(cls, head: bytes, peek: TiffPeek) -> bool:
        """A TIFF whose first ImageDescription is OME-XML."""
        return peek.is_ome

    @classmethod
    def file_set(cls, path: Path, limits: ReadLimits) -> FileSet | None:
        """A multi-file set: the files its OME-XML names (``TiffData/UUID@FileName``) and companion.

        Reads the first IFD's description only (and a BinaryOnly member's
        companion ``.ome``), both bounded by the metadata limit. The main file is
        the first TIFF of the set by name: any member opens the whole set, and
        the same one is chosen whichever member is asked about.
        """
        import tifffile

        from zstack_analyzer.filesets import FileSet

        with tifffile.TiffFile(path) as tif:
            description = tif.pages.first.description or ""
        if len(description) > limits.max_metadata_bytes:
            return None
        if "BinaryOnly" not in description and "FileName" not in description:
            return None  # names no other file: a single-file OME-TIFF, no XML parsed
        doc = parse_ome_xml(description, path=path, limits=limits)
        companions: list[Path] = []
        if doc.binary_only_file and not doc.images:
            companion = path.parent / Path(doc.binary_only_file).name
            if not companion.is_file() or companion.stat().st_size > limits.max_metadata_bytes:
                return None
            companions.append(companion)
            doc = parse_ome_xml(companion.read_bytes(), path=companion, limits=limits)
        names = {
            Path(td.filename).name for image in doc.images for td in image.tiff_data if td.filename
        }
        tiffs = sorted({path, *(path.parent / n for n in names if (path.parent / n).is_file())})
        if len(tiffs) == 1 and not companions:
            return None
        return FileSet.of(tiffs[0], [*tiffs, *companions])

    @classmethod
    def main_for_member(cls, path: Path) -> Path | None:
        """A ``.companion.ome`` (which no reader opens) belongs to the TIFFs its XML names."""
        from zstack_analyzer.limits import ReadLimits

        if not path.name.lower().endswith(COMPANION_SUFFIX):
            return None
        limits = ReadLimits()
        if not path.is_file() or path.stat().st_size > limits.max_metadata_bytes:
            return None
        doc = parse_ome_xml(path.read_bytes(), path=path, limits=limits)
        names = sorted(
            Path(td.filename).name
            for image in doc.images
            for td in image.tiff_data
            if td.filename and (path.parent / Path(td.filename).name).is_file()
        )
        return path.parent / names[0] if names else None

    # ------------------------------------------------------------ plans
    def _build_plans(self) -> list[ScenePlan]:
        self._members: dict[str, Any] = {}
        self._common_warnings: list[str] = []
        self._companion: Path | None = None
        self._fallback_series = False
        description = self.tif.pages.first.description or ""
        if not description.rstrip("\x00 \t\r\n").endswith("OME>"):
            msg = (
                f"{self.path.name}: the OME-XML ImageDescription is cut short or unreadable; "
                "the file is truncated or corrupt"
            )
            raise CorruptFileError(msg, path=self.path)
        self._own_doc = parse_ome_xml(description, path=self.path, limits=self.limits)
        self._doc = self._own_doc
        if self._own_doc.binary_only_file and not self._own_doc.images:
            companion_name = Path(self._own_doc.binary_only_file).name
            companion = self._beside(companion_name)
            if companion is None or not companion.is_file():
                return self._binary_only_alone(companion_name)
            self._companion = companion
            if companion.stat().st_size > self.limits.max_metadata_bytes:
                msg = f"{self.path.name}: companion {companion.name} is over the metadata limit"
                raise MetadataError(msg, path=self.path)
            self._doc = parse_ome_xml(companion.read_bytes(), path=companion, limits=self.limits)
        if not self._doc.images:
            msg = f"{self.path.name}: the OME-XML describes no Image"
            raise MetadataError(msg, path=self.path)
        names = {
            td.filename
            for image in self._doc.images
            for td in image.tiff_data
            if self._file_key(td.uuid, td.filename) is not None and td.filename
        }
        missing = sorted(n for n in names if not self._member_present(Path(n).name))
        if missing:
            self._common_warnings.append(
                f"multi-file set: {len(missing)} member file(s) missing beside "
                f"{self.path.name} ({', '.join(missing[:10])}): their planes read as zeros"
            )
        return [self._image_plan(i, image) for i, image in enumerate(self._doc.images)]

    def _beside(self, name: str) -> Path | None:
        """The file ``name`` in this file's folder; ``None`` for a remote object (no folder).

        Why ``None``: an object in a bucket has no neighbours we may open; a
        relative name would otherwise resolve against the working directory.
        Its set members and companion are then missing, as for a lone file.
        """
        if not isinstance(self.source, Path):
            return None
        return self.path.parent / name

    def _member_present(self, name: str) -> bool:
        beside = self._beside(name)
        return beside is not None and beside.is_file()

    def _binary_only_alone(self, companion: str) -> list[ScenePlan]:
        """A set member without its companion: the planes this file holds, and a warning."""
        self._fallback_series = True
        plan, _ = series_plan(self.tif.series[0], index=0, rename={"I": "Z", "Q": "Z"})
        self._common_warnings.append(
            f"{self.path.name} is one file of a multi-file OME-TIFF set; its metadata file "
            f"{companion} is not beside it, so only the {plan.info.size_t * plan.info.size_c * plan.info.size_z} "
            "plane(s) this file holds are read, without calibration or channel names"
        )
        return [plan]

    def _file_key(self, uuid: str | None, filename: str | None) -> str | None:
        """``None`` for this file, else the member file name a TiffData points to."""
        if uuid is None and not filename:
            return None
        if uuid is not None and uuid == self._own_doc.uuid:
            return None
        if not filename or Path(filename).name == self.path.name:
            return None
        return Path(filename).name  # never a path: no traversal out of the folder

    def _image_plan(self, index: int, image: OmeImage) -> ScenePlan:
        self.check_shape(
            (image.size_t, image.size_c, image.size_z, image.size_y, image.size_x), image.dtype
        )
        total = image.plane_count
        table: list[tuple[str | None, int] | None] = [None] * total
        refs = image.tiff_data
        if not refs:
            table = [(None, k) for k in range(total)]
        for td in refs:
            key = self._file_key(td.uuid, td.filename)
            first = td.first
            if (
                first["T"] >= image.size_t
                or first["C"] >= image.size_c
                or first["Z"] >= image.size_z
            ):
                logger.warning("%s: TiffData index %s out of range", self.path.name, first)
                continue
            start = image.plane_index(first["T"], first["C"], first["Z"])
            count = td.plane_count
            if count is None:
                tif = self._member(key)
                count = (len(tif.pages) - td.ifd) if tif is not None else total - start
            for k in range(max(min(count, total - start), 0)):
                table[start + k] = (key, td.ifd + k)
        absent = sum(1 for entry in table if entry is None)
        warnings = list(self._common_warnings)
        if absent:
            warnings.append(f"{absent} of {total} planes have no TiffData: read as zeros")
        keyframe = self._keyframe(table)
        dtype = image.dtype
        levels: list[tuple[int, int]] = [(image.size_y, image.size_x)]
        if keyframe is not None:
            if (keyframe.imagelength, keyframe.imagewidth) != (image.size_y, image.size_x):
                msg = (
                    f"{self.path.name}: OME Pixels says {image.size_y}x{image.size_x} pixels but "
                    f"IFD {keyframe.index} holds {keyframe.imagelength}x{keyframe.imagewidth}"
                )
                raise MetadataError(msg, path=self.path)
            page_dtype = np.dtype(keyframe.dtype).newbyteorder("=").name
            if page_dtype != dtype:
                warnings.append(
                    f"OME Pixels Type {dtype} but the TIFF stores {page_dtype}: using {page_dtype}"
                )
                dtype = page_dtype
            for level in range(len(keyframe.subifds or ())):
                sub = self._load_page(keyframe.parent, keyframe.index, level + 1)
                levels.append((int(sub.imagelength), int(sub.imagewidth)))
        info = SceneInfo(
            index=index,
            name=image.name,
            size_t=image.size_t,
            size_c=image.size_c,
            size_z=image.size_z,
            size_y=image.size_y,
            size_x=image.size_x,
            samples_per_pixel=image.samples_per_pixel,
            dtype=dtype,
        )

        def locate(t: int, c: int, z: int) -> tuple[int, int]:
            return image.plane_index(t, c, z), 0

        def page(level: int, slot: int) -> Any:
            entry = table[slot]
            if entry is None:
                return None
            tif = self._member(entry[0])
            if tif is None:
                return None
            return self._load_page(tif, entry[1], level)

        return ScenePlan(
            info=info,
            dtype=np.dtype(dtype),
            level_shapes=levels,
            locate=locate,
            page=page,
            extra={"image": image, "warnings": warnings},
        )

    def _keyframe(self, table: list[tuple[str | None, int] | None]) -> Any:
        for entry in table:
            if entry is None:
                continue
            tif = self._member(entry[0])
            if tif is not None:
                return self._load_page(tif, entry[1], 0)
        return None

    def _member(self, key: str | None) -> Any:
        """The TiffFile holding ``key`` (``None`` = this file); ``None`` if the member is absent."""
        if key is None:
            return self.tif
        if key not in self._members:
            member = self._beside(key)
            present = member is not None and member.is_file()
            self._members[key] = self._open_tifffile(member) if member and present else None
        return self._members[key]

    def _load_page(self, tif: Any, ifd: int, level: int) -> Any:
        """IFD ``ifd`` of ``tif`` (or its SubIFD ``level``), parsed on demand."""
        from tifffile import TiffPage

        with self._io_lock:
            try:
                page = tif.pages[ifd]
            except IndexError as exc:
                msg = (
                    f"{self.path.name}: the OME-XML points to IFD {ifd} of {tif.filename}, which "
                    f"has only {len(tif.pages)}; the file is truncated or corrupt"
                )
                raise CorruptFileError(msg, path=self.path) from exc
            if level == 0:
                return page
            subifds = page.subifds or ()
            if level - 1 >= len(subifds):
                return None
            tif.filehandle.seek(subifds[level - 1])
            return TiffPage(tif, index=(ifd, level))

    # ------------------------------------------------------------ metadata
    def _build_metadata(self, scene: int) -> ImageMetadata:
        plan = self._plans[scene]
        scenes = [p.info for p in self._plans]
        if self._fallback_series:
            info = plan.info
            return self.scene_metadata(
                info,
                channels=[ChannelInfo(index=c) for c in range(info.size_c)],
                warnings=list(self._common_warnings),
                vendor_metadata={"ome_xml": self._own_doc.xml[:32768]},
            )
        md = image_metadata(
            self._doc,
            plan.extra["image"],
            plan.info,
            filename=self.path.name,
            file_format=self.format_name,
            scenes=scenes,
            pyramid_levels=plan.level_shapes if len(plan.level_shapes) > 1 else None,
            warnings=plan.extra["warnings"],
            software=None if self._companion is not None else self._tiff_software(),
        )
        if self._companion is not None:
            md.provenance["sizes"] = f"OME companion file {self._companion.name}"
            md.vendor_metadata["companion"] = self._companion.name
        return md

    def _tiff_software(self) -> str | None:
        """The first IFD's Software tag: who wrote this TIFF (and so its OME-XML)."""
        tag = self.tif.pages.first.tags.get("Software")
        value = str(tag.value).strip() if tag is not None else ""
        return value or None

    def raw_metadata(self) -> Mapping[str, Any]:
        """The OME-XML in full (the companion's for a multi-file set) and the first IFD's tags."""
        raw = dict(super().raw_metadata())
        raw["ome_xml"] = self._doc.xml
        if self._companion is not None:
            raw["companion"] = str(self._companion)
            raw["member_ome_xml"] = self._own_doc.xml
        return raw

    @property
    def ome_document(self) -> OmeDocument:
        """The parsed OME-XML that describes the images."""
        return self._doc


def _is_companion_name(path: Path) -> bool:
    return path.name.lower().endswith(COMPANION_SUFFIX)


def _first_member(companion: Path, limits: ReadLimits) -> Path:
    """The first member TIFF the companion names that lies beside it (names only, no paths).

    Why beside and by name: a ``FileName`` is data from the file; taking only its
    last part keeps every open in the companion's folder (and so beneath an import
    root the companion is in; :mod:`zstack_analyzer.confine` checks where each
    open lands). The member then finds the companion through its ``BinaryOnly``
    reference and opens the whole set.
    """
    try:
        size = companion.stat().st_size
    except OSError as exc:
        msg = f"{companion.name}: cannot read the companion file: {exc}"
        raise CorruptFileError(msg, path=companion) from exc
    if size > limits.max_metadata_bytes:
        msg = f"{companion.name}: the companion is over the metadata limit"
        raise MetadataError(msg, path=companion)
    doc = parse_ome_xml(companion.read_bytes(), path=companion, limits=limits)
    names = [
        Path(td.filename).name
        for image in doc.images
        for td in image.tiff_data
        if td.filename and Path(td.filename).name not in ("", ".", "..")
    ]
    for name in dict.fromkeys(names):
        member = companion.parent / name
        if member.is_file():
            return member
    msg = (
        f"{companion.name}: none of the {len(set(names))} TIFF file(s) the companion names "
        f"is beside it ({', '.join(sorted(set(names))[:5]) or 'it names none'})"
    )
    raise MetadataError(msg, path=companion)
