"""OME-TIFF files and multi-file sets, on files written here (mutation kills, round 3):
sniffing, the set's files, the plane table from TiffData, members by UUID and name,
levels, refusals and their messages, metadata of sets and of lone members."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_multifile, write_ome_pyramid, write_ome_tiff
from zstack_analyzer import CorruptFileError, MetadataError, open_image
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers.ome_tiff import OmeTiffReader

if TYPE_CHECKING:
    from pathlib import Path

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _ome(pixels: str, *, extra: str = "", uuid: str | None = None) -> str:
    own = f' UUID="{uuid}"' if uuid else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}"{own}>'
        f'<Image ID="Image:0" Name="img">{pixels}</Image>{extra}</OME>'
    )


def _pixels(z: int, tiffdata: str, *, type_: str = "uint8", y: int = 6, x: int = 5) -> str:
    return (
        f'<Pixels DimensionOrder="XYZCT" ID="Pixels:0" Type="{type_}" SizeC="1" SizeT="1" '
        f'SizeX="{x}" SizeY="{y}" SizeZ="{z}"><Channel ID="Channel:0" SamplesPerPixel="1"/>'
        f"{tiffdata}</Pixels>"
    )


def _pages(path: Path, planes: np.ndarray, description: str, **options: object) -> Path:
    """A TIFF with one page per plane and ``description`` on the first."""
    with tifffile.TiffWriter(path) as tif:
        for k, plane in enumerate(planes):
            tif.write(
                plane,
                description=description if k == 0 else None,
                metadata=None,
                photometric="minisblack",
                **options,  # type: ignore[arg-type]
            )
    return path


# --------------------------------------------------------------------------- sniffing
def test_sniffing_ome_tiffs_and_companions(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack)
    head = companion.read_bytes()[:512]
    assert OmeTiffReader.sniff(head, companion)
    assert not OmeTiffReader.sniff(b" " + head, companion)
    assert not OmeTiffReader.sniff(b"<html></html>", companion)
    assert OmeTiffReader.sniff(members[0].read_bytes()[:16], members[0])
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, stack[0, 0, 0], metadata=None, description="<html>OME</html>")
    assert not OmeTiffReader.sniff(plain.read_bytes()[:16], plain)


# --------------------------------------------------------------------------- file sets
def test_the_files_of_a_set(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 6, 5, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack)
    limits = ReadLimits()
    for member in members:
        fileset = OmeTiffReader.file_set(member, limits)
        assert fileset is not None
        assert fileset.main == members[0]
        assert sorted(fileset.paths()) == sorted([*members, companion])
    # the companion over the metadata limit, or gone: no set
    small = ReadLimits(max_metadata_bytes=companion.stat().st_size - 1)
    assert OmeTiffReader.file_set(members[1], small) is None
    exact = ReadLimits(max_metadata_bytes=companion.stat().st_size)
    with tifffile.TiffFile(members[1]) as tif:
        description = tif.pages.first.description
    if len(description) <= exact.max_metadata_bytes:
        assert OmeTiffReader.file_set(members[1], exact) is not None
    companion.unlink()
    assert OmeTiffReader.file_set(members[1], limits) is None


def test_a_single_file_is_no_set(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "one.ome.tif", [encoded_stack(1, 1, 2, 6, 5)])
    assert OmeTiffReader.file_set(path, ReadLimits()) is None
    # a description over the metadata limit is not parsed
    assert OmeTiffReader.file_set(path, ReadLimits(max_metadata_bytes=10)) is None


def test_a_file_naming_its_neighbours_is_a_set_without_companion(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")[0, 0]
    tiffdata = (
        '<TiffData FirstZ="0" IFD="0" PlaneCount="1"><UUID FileName="b.ome.tif">urn:uuid:b</UUID></TiffData>'
        '<TiffData FirstZ="1" IFD="0" PlaneCount="1"><UUID FileName="a.ome.tif">urn:uuid:a</UUID></TiffData>'
    )
    xml = _ome(_pixels(2, tiffdata))
    a = _pages(tmp_path / "a.ome.tif", planes[1:], xml)
    b = _pages(tmp_path / "b.ome.tif", planes[:1], xml)
    fileset = OmeTiffReader.file_set(b, ReadLimits())
    assert fileset is not None
    assert fileset.main == a
    assert sorted(fileset.paths()) == [a, b]
    with open_image(b) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), planes[0])
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), planes[1])
        assert image.metadata().warnings == []


def test_the_main_file_of_a_companion(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 6, 5, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack, prefix="s")
    assert OmeTiffReader.main_for_member(companion) == members[0]
    assert OmeTiffReader.main_for_member(members[0]) is None
    upper = tmp_path / "S.COMPANION.OME"
    upper.write_bytes(companion.read_bytes())
    assert OmeTiffReader.main_for_member(upper) == members[0]
    members[0].unlink()
    assert OmeTiffReader.main_for_member(companion) == members[1]
    for member in members[1:]:
        member.unlink()
    assert OmeTiffReader.main_for_member(companion) is None
    assert OmeTiffReader.main_for_member(tmp_path / "gone.companion.ome") is None


# --------------------------------------------------------------------------- opening
def test_a_cut_description_is_refused(tmp_path: Path) -> None:
    xml = _ome(_pixels(1, "<TiffData/>"))
    path = _pages(
        tmp_path / "cut.ome.tif", encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0], xml[:-20]
    )
    with pytest.raises(
        CorruptFileError,
        match=r"cut\.ome\.tif: the OME-XML ImageDescription is cut short or unreadable; "
        r"the file is truncated or corrupt$",
    ) as info:
        open_image(path)
    assert info.value.path == path
    # trailing NULs and blanks after the closing tag are fine
    ok = _pages(
        tmp_path / "ok.ome.tif", encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0], xml + " \r\n\t"
    )
    with open_image(ok) as image:
        assert image.scenes()[0].size_z == 1


def test_a_document_without_images_is_refused(tmp_path: Path) -> None:
    xml = f'<?xml version="1.0"?><OME xmlns="{NS}"></OME>'
    path = _pages(
        tmp_path / "empty.ome.tif", encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0], xml
    )
    with pytest.raises(
        MetadataError, match=r"empty\.ome\.tif: the OME-XML describes no Image"
    ) as info:
        open_image(path)
    assert info.value.path == path


def test_pixels_sizes_must_match_the_ifd(tmp_path: Path) -> None:
    xml = _ome(_pixels(1, "<TiffData/>", y=7, x=5))
    path = _pages(tmp_path / "size.ome.tif", encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0], xml)
    with pytest.raises(MetadataError, match="OME Pixels says 7x5 pixels but IFD 0 holds 6x5"):
        open_image(path)


def test_the_stored_type_wins_over_the_declared_one(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 2, 6, 5)[0, 0]  # uint16
    xml = _ome(_pixels(2, "<TiffData/>", type_="uint8"))
    path = _pages(tmp_path / "type.ome.tif", planes, xml)
    with open_image(path) as image:
        assert image.scenes()[0].dtype == "uint16"
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), planes[1])
        assert (
            "OME Pixels Type uint8 but the TIFF stores uint16: using uint16"
            in image.metadata().warnings
        )


def test_the_plane_table_from_tiffdata(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 4, 6, 5, dtype="uint8")[0, 0]
    # IFD 0 is z=2, IFDs 1-2 are z=0..1 by PlaneCount, z=3 has none; one TiffData out of range
    tiffdata = (
        '<TiffData FirstZ="2" IFD="0" PlaneCount="1"/>'
        '<TiffData FirstZ="0" IFD="1" PlaneCount="2"/>'
        '<TiffData FirstZ="9" IFD="0" PlaneCount="1"/>'
    )
    stored = np.stack([planes[2], planes[0], planes[1]])
    path = _pages(tmp_path / "table.ome.tif", stored, _ome(_pixels(4, tiffdata)))
    with open_image(path) as image:
        for z in range(3):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), planes[z])
        assert not image.read_plane(0, 0, 0, 3).any()
        assert "1 of 4 planes have no TiffData: read as zeros" in image.metadata().warnings


def test_tiffdata_without_a_plane_count(tmp_path: Path) -> None:
    """OME: no IFD and no PlaneCount = every IFD of the file; an IFD alone = that one plane."""
    planes = encoded_stack(1, 1, 4, 6, 5, dtype="uint8")[0, 0]
    path = _pages(tmp_path / "all.ome.tif", planes[1:], _ome(_pixels(4, '<TiffData FirstZ="1"/>')))
    with open_image(path) as image:
        assert not image.read_plane(0, 0, 0, 0).any()
        for z in (1, 2, 3):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), planes[z])
        assert "1 of 4 planes have no TiffData: read as zeros" in image.metadata().warnings
    # more IFDs than planes left: the table stops at the last plane
    path = _pages(tmp_path / "over.ome.tif", planes[:3], _ome(_pixels(4, '<TiffData FirstZ="2"/>')))
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 2), planes[0])
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 3), planes[1])
        assert "2 of 4 planes have no TiffData: read as zeros" in image.metadata().warnings
    path = _pages(
        tmp_path / "one.ome.tif", planes, _ome(_pixels(4, '<TiffData FirstZ="1" IFD="2"/>'))
    )
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), planes[2])
        for z in (0, 2, 3):
            assert not image.read_plane(0, 0, 0, z).any()
        assert "3 of 4 planes have no TiffData: read as zeros" in image.metadata().warnings


def test_an_ifd_the_file_lacks_is_refused(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")[0, 0]
    tiffdata = (
        '<TiffData FirstZ="0" IFD="0" PlaneCount="1"/><TiffData FirstZ="1" IFD="5" PlaneCount="1"/>'
    )
    path = _pages(tmp_path / "lack.ome.tif", planes[:1], _ome(_pixels(2, tiffdata)))
    with pytest.raises(
        CorruptFileError, match=r"points to IFD 5 of lack\.ome\.tif, which has only 1"
    ) as info:
        open_image(path)  # the last plane is checked at open
    assert info.value.path == path


def test_pyramid_levels_and_metadata(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 1, 64, 48)
    path = write_ome_pyramid(tmp_path / "p.ome.tif", stack, levels=3)
    with open_image(path) as image:
        assert image.level_count() == 3
        assert image.level_shape(0, 2)[3:] == (16, 12)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (0, 16), (0, 12), level=2), stack[0, 0, 0, ::4, ::4]
        )
        assert image.metadata().pyramid_levels == [(64, 48), (32, 24), (16, 12)]
    single = write_ome_tiff(tmp_path / "s.ome.tif", [stack])
    with open_image(single) as image:
        assert not image.metadata().pyramid_levels


def test_software_tag_and_raw_metadata(tmp_path: Path) -> None:
    """Without OME/@Creator the TIFF Software tag names the writer (stripped; blank = none)."""
    plane = encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0]
    xml = _ome(_pixels(1, "<TiffData/>"))
    path = _pages(tmp_path / "sw.ome.tif", plane, xml, software="  Writer 1.0  ")
    with open_image(path) as image:
        md = image.metadata()
        raw = image.raw_metadata()
        doc = image.ome_document
    assert md.microscope is not None and md.microscope.software == "Writer 1.0"
    assert md.provenance["microscope.software"] == "TIFF Software tag"
    assert raw["ome_xml"] == doc.xml == xml
    assert "companion" not in raw and "member_ome_xml" not in raw
    blank = _pages(tmp_path / "blank.ome.tif", plane, xml, software="   ")
    with open_image(blank) as image:
        md = image.metadata()
    assert md.microscope is None or md.microscope.software is None


# --------------------------------------------------------------------------- sets
def test_a_member_opens_the_set_and_says_so(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 6, 5, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack)
    with open_image(members[2]) as image:
        md = image.metadata()
        raw = image.raw_metadata()
        assert md.provenance["sizes"] == f"OME companion file {companion.name}"
        assert md.vendor_metadata["companion"] == companion.name
        assert raw["companion"] == str(companion)
        assert "BinaryOnly" in raw["member_ome_xml"]
        assert raw["ome_xml"] == companion.read_text(encoding="utf-8")
        assert image.ome_document.xml == raw["ome_xml"]
        for z in range(3):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), stack[0, 0, z])


def test_a_companion_over_the_limit_is_refused(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack)
    size = companion.stat().st_size
    limits = ReadLimits(max_metadata_bytes=size - 1)
    with pytest.raises(
        MetadataError, match=f"companion {companion.name} is over the metadata limit"
    ) as info:
        OmeTiffReader(members[0], limits=limits)
    assert info.value.path == members[0]
    with pytest.raises(MetadataError, match="the companion is over the metadata limit"):
        OmeTiffReader(companion, limits=limits)
    with OmeTiffReader(members[0], limits=ReadLimits(max_metadata_bytes=size)) as image:
        assert image.scenes()[0].size_z == 2


def test_missing_members_are_named_in_one_warning(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 4, 6, 5, dtype="uint8")
    members, _ = write_ome_multifile(tmp_path, stack)
    members[3].unlink()
    members[1].unlink()
    with open_image(members[0]) as image:
        warnings = image.metadata().warnings
        assert (
            f"multi-file set: 2 member file(s) missing beside {members[0].name} "
            f"({members[1].name}, {members[3].name}): their planes read as zeros"
        ) in warnings
        assert not image.read_plane(0, 0, 0, 1).any()


def test_a_renamed_member_still_reads_its_own_planes_by_uuid(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 6, 5, dtype="uint8")
    members, _ = write_ome_multifile(tmp_path, stack)
    renamed = members[1].rename(tmp_path / "renamed.ome.tiff")
    with open_image(renamed) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), stack[0, 0, 1])
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 0, 0])
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 2), stack[0, 0, 2])
        warnings = image.metadata().warnings
        # its old name is its own (same UUID): no member is missing
        assert warnings == []


def test_a_lone_member_reads_its_planes_without_calibration(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack, companion=False)
    with open_image(members[0]) as image:
        md = image.metadata()
        assert (md.size_t, md.size_c, md.size_z) == (1, 1, 1)
        assert [c.index for c in md.channels] == [0]
        assert md.physical_size.x_um is None
        assert md.warnings == [
            f"{members[0].name} is one file of a multi-file OME-TIFF set; its metadata file "
            f"{companion.name} is not beside it, so only the 1 plane(s) this file holds are read, "
            "without calibration or channel names"
        ]
        assert "BinaryOnly" in md.vendor_metadata["ome_xml"]
        assert md.filename == members[0].name
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 0, 0])


def test_a_companion_naming_nothing_present(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack)
    for member in members:
        member.unlink()
    with pytest.raises(
        MetadataError,
        match=rf"none of the 2 TIFF file\(s\) the companion names is beside it \({members[0].name}, {members[1].name}\)",
    ):
        open_image(companion)
    companion.unlink()
    with pytest.raises(CorruptFileError, match="cannot read the companion file"):
        OmeTiffReader(companion)


# --------------------------------------------------------------------------- round 3, second pass
def test_the_description_limit_is_inclusive(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")[0, 0]
    tiffdata = (
        '<TiffData FirstZ="0" IFD="0" PlaneCount="1"><UUID FileName="a.ome.tif">urn:uuid:a</UUID></TiffData>'
        '<TiffData FirstZ="1" IFD="0" PlaneCount="1"><UUID FileName="b.ome.tif">urn:uuid:b</UUID></TiffData>'
    )
    xml = _ome(_pixels(2, tiffdata))
    a = _pages(tmp_path / "a.ome.tif", planes[:1], xml)
    _pages(tmp_path / "b.ome.tif", planes[1:], xml)
    with tifffile.TiffFile(a) as tif:
        size = len(tif.pages.first.description)
    assert OmeTiffReader.file_set(a, ReadLimits(max_metadata_bytes=size)) is not None
    assert OmeTiffReader.file_set(a, ReadLimits(max_metadata_bytes=size - 1)) is None


def test_a_file_naming_only_itself_is_no_set(tmp_path: Path) -> None:
    tiffdata = '<TiffData IFD="0" PlaneCount="1"><UUID FileName="self.ome.tif">urn:uuid:s</UUID></TiffData>'
    path = _pages(
        tmp_path / "self.ome.tif",
        encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0],
        _ome(_pixels(1, tiffdata)),
    )
    assert OmeTiffReader.file_set(path, ReadLimits()) is None


def test_a_document_without_images_naming_files_is_no_set(tmp_path: Path) -> None:
    xml = (
        f'<?xml version="1.0"?><OME xmlns="{NS}"><StructuredAnnotations>'
        '<CommentAnnotation ID="Annotation:0"><Value>FileName</Value></CommentAnnotation>'
        "</StructuredAnnotations></OME>"
    )
    path = _pages(
        tmp_path / "noimg.ome.tif", encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0], xml
    )
    assert OmeTiffReader.file_set(path, ReadLimits()) is None


def test_malformed_xml_errors_name_their_file(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack)
    companion.write_text("<OME><Image></OME>", encoding="utf-8")
    with pytest.raises(MetadataError) as info:
        OmeTiffReader.file_set(members[0], ReadLimits())
    assert info.value.path == companion
    with pytest.raises(MetadataError) as info:
        OmeTiffReader.main_for_member(companion)
    assert info.value.path == companion
    broken = _pages(
        tmp_path / "broken.ome.tif",
        stack[0, 0, :1],
        '<OME xmlns="x"><BinaryOnly FileName="y"></OME>',
    )
    with pytest.raises(MetadataError) as info:
        OmeTiffReader.file_set(broken, ReadLimits())
    assert info.value.path == broken


def test_a_lone_member_of_several_pages_is_a_z_stack(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 3, 6, 5, dtype="uint8")[0, 0]
    description = (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}" UUID="urn:uuid:m">'
        '<BinaryOnly MetadataFile="gone.companion.ome" UUID="urn:uuid:c"/></OME>'
    )
    path = _pages(tmp_path / "m.ome.tif", planes, description)
    with open_image(path) as image:
        assert (image.scenes()[0].size_z, image.scenes()[0].extra_dims) == (3, {})
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 2), planes[2])
        assert "only the 3 plane(s) this file holds are read" in image.metadata().warnings[0]


def test_tiffdata_uuid_without_file_name_and_file_name_without_uuid(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")[0, 0]
    # z=0: a UUID naming no file (another UUID than this file's): this file's IFD 0
    # z=1: a FileName with an empty UUID: the member b's IFD 0
    tiffdata = (
        '<TiffData FirstZ="0" IFD="0" PlaneCount="1"><UUID>urn:uuid:other</UUID></TiffData>'
        '<TiffData FirstZ="1" IFD="0" PlaneCount="1"><UUID FileName="b.ome.tif"/></TiffData>'
    )
    xml = _ome(_pixels(2, tiffdata), uuid="urn:uuid:a")
    a = _pages(tmp_path / "a.ome.tif", planes[:1], xml)
    _pages(tmp_path / "b.ome.tif", planes[1:], xml)
    with open_image(a) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), planes[0])
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), planes[1])


def test_a_plane_limit_counts_the_declared_type(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 60, 50, dtype="uint8")[0, 0]
    path = _pages(tmp_path / "lim.ome.tif", plane, _ome(_pixels(1, "<TiffData/>", y=60, x=50)))
    with OmeTiffReader(path, limits=ReadLimits(max_plane_bytes=3000)) as image:
        assert image.scenes()[0].dtype == "uint8"


def test_pixels_without_tiffdata_are_the_ifds_in_order(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 3, 6, 5, dtype="uint8")[0, 0]
    path = _pages(tmp_path / "plain.ome.tif", planes, _ome(_pixels(3, "")))
    with open_image(path) as image:
        for z in range(3):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), planes[z])
        assert image.metadata().warnings == []


def test_tiffdata_out_of_range_are_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stack = encoded_stack(2, 2, 2, 6, 5, dtype="uint8")
    # XYZCT: plane (t, c, z) is IFD z + 2 * (c + 2 * t)
    good = "".join(
        f'<TiffData FirstT="{t}" FirstC="{c}" FirstZ="{z}" IFD="{z + 2 * (c + 2 * t)}" PlaneCount="1"/>'
        for t in range(2)
        for c in range(2)
        for z in range(2)
    )
    bogus = (
        '<TiffData FirstZ="2" IFD="0" PlaneCount="1"/>'
        '<TiffData FirstC="2" IFD="0" PlaneCount="1"/>'
        '<TiffData FirstT="2" IFD="0" PlaneCount="1"/>'
    )
    pixels = (
        f'<Pixels DimensionOrder="XYZCT" ID="Pixels:0" Type="uint8" SizeC="2" SizeT="2" SizeX="5" '
        f'SizeY="6" SizeZ="2"><Channel ID="Channel:0" SamplesPerPixel="1"/>'
        f'<Channel ID="Channel:1" SamplesPerPixel="1"/>{bogus}{good}{bogus}</Pixels>'
    )
    stored = stack.reshape(8, 6, 5)
    path = _pages(tmp_path / "range.ome.tif", stored, _ome(pixels))
    with caplog.at_level("WARNING"), open_image(path) as image:
        info = image.scenes()[0]
        assert (info.name, info.size_t, info.size_c, info.size_z, info.size_y, info.size_x) == (
            "img",
            2,
            2,
            2,
            6,
            5,
        )
        assert info.samples_per_pixel == 1
        for t in range(2):
            for c in range(2):
                for z in range(2):
                    np.testing.assert_array_equal(image.read_plane(0, t, c, z), stack[t, c, z])
        assert image.metadata().warnings == []
    messages = [r.getMessage() for r in caplog.records]
    assert "range.ome.tif: TiffData index {'T': 0, 'C': 0, 'Z': 2} out of range" in messages


def test_plane_counts_of_zero_and_counts_from_the_member_holding_them(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 4, 6, 5, dtype="uint8")[0, 0]
    tiffdata = (
        '<TiffData FirstZ="0" IFD="0" PlaneCount="1"/>'
        '<TiffData FirstZ="3" IFD="0" PlaneCount="0"/>'
        '<TiffData FirstZ="1"><UUID FileName="b.ome.tif">urn:uuid:b</UUID></TiffData>'
    )
    xml = _ome(_pixels(4, tiffdata))
    a = _pages(tmp_path / "a.ome.tif", planes[:1], xml)
    _pages(tmp_path / "b.ome.tif", planes[1:3], xml)  # two pages: z=1 and z=2
    with open_image(a) as image:
        for z in range(3):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), planes[z])
        assert not image.read_plane(0, 0, 0, 3).any()
        assert "1 of 4 planes have no TiffData: read as zeros" in image.metadata().warnings
    (tmp_path / "b.ome.tif").unlink()  # its planes: zeros, with a warning
    with open_image(a) as image:
        assert not image.read_plane(0, 0, 0, 2).any()
        assert any("1 member file(s) missing" in w for w in image.metadata().warnings)


def test_this_files_planes_without_a_count_stop_at_its_last_ifd(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 4, 6, 5, dtype="uint8")[0, 0]
    path = _pages(tmp_path / "two.ome.tif", planes[:2], _ome(_pixels(4, '<TiffData FirstZ="0"/>')))
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), planes[1])
        assert not image.read_plane(0, 0, 0, 2).any()
        assert "2 of 4 planes have no TiffData: read as zeros" in image.metadata().warnings


def test_two_levels_are_a_pyramid(tmp_path: Path) -> None:
    path = write_ome_pyramid(tmp_path / "p2.ome.tif", encoded_stack(1, 1, 1, 64, 48), levels=2)
    with open_image(path) as image:
        assert image.metadata().pyramid_levels == [(64, 48), (32, 24)]


def test_no_writer_without_creator_or_software_and_none_for_sets(tmp_path: Path) -> None:
    plain = _pages(
        tmp_path / "nosw.ome.tif",
        encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0],
        _ome(_pixels(1, "<TiffData/>")),
        software=False,
    )
    with open_image(plain) as image:
        md = image.metadata()
    assert md.microscope is None or md.microscope.software is None
    members, _ = write_ome_multifile(tmp_path, encoded_stack(1, 1, 2, 6, 5, dtype="uint8"))
    with tifffile.TiffFile(members[0]) as tif:
        assert "Software" in tif.pages.first.tags  # tifffile's own name
    with open_image(members[0]) as image:
        md = image.metadata()
    assert md.microscope is None or md.microscope.software is None


def test_size_mismatch_error_names_the_file(tmp_path: Path) -> None:
    path = _pages(
        tmp_path / "size.ome.tif",
        encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0],
        _ome(_pixels(1, "<TiffData/>", y=7, x=5)),
    )
    with pytest.raises(MetadataError) as info:
        open_image(path)
    assert info.value.path == path


def test_xml_errors_at_open_name_the_file_that_holds_them(tmp_path: Path) -> None:
    path = _pages(
        tmp_path / "bad.ome.tif",
        encoded_stack(1, 1, 1, 6, 5, dtype="uint8")[0, 0],
        '<OME xmlns="x"><Image ID="a"><Pixels/></Image></OME>',
    )
    with pytest.raises(MetadataError) as info:
        open_image(path)
    assert info.value.path == path
    members, companion = write_ome_multifile(tmp_path, encoded_stack(1, 1, 2, 6, 5, dtype="uint8"))
    companion.write_text(
        f'<OME xmlns="{NS}"><Image ID="Image:0"><Pixels/></Image></OME>', encoding="utf-8"
    )
    with pytest.raises(MetadataError) as info:
        OmeTiffReader(members[0])
    assert info.value.path == companion


def test_more_than_ten_missing_members_list_the_first_ten(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 12, 4, 3, dtype="uint8")
    members, _ = write_ome_multifile(tmp_path, stack)
    for member in members[1:]:
        member.unlink()
    with open_image(members[0]) as image:
        warnings = image.metadata().warnings
    names = sorted(m.name for m in members[1:])
    assert (
        f"multi-file set: 11 member file(s) missing beside {members[0].name} "
        f"({', '.join(names[:10])}): their planes read as zeros"
    ) in warnings


def test_first_t_at_the_size_is_skipped_whatever_the_order(tmp_path: Path) -> None:
    stack = encoded_stack(2, 2, 1, 6, 5, dtype="uint8")
    # XYZTC: plane (t, c) is IFD t + 2 * c; FirstT=2 would land on c + 1 if it were taken
    good = "".join(
        f'<TiffData FirstT="{t}" FirstC="{c}" IFD="{t + 2 * c}" PlaneCount="1"/>'
        for t in range(2)
        for c in range(2)
    )
    pixels = (
        '<Pixels DimensionOrder="XYZTC" ID="Pixels:0" Type="uint8" SizeC="2" SizeT="2" SizeX="5" '
        'SizeY="6" SizeZ="1"><Channel ID="Channel:0" SamplesPerPixel="1"/>'
        f'<Channel ID="Channel:1" SamplesPerPixel="1"/>{good}<TiffData FirstT="2" IFD="0" PlaneCount="1"/></Pixels>'
    )
    stored = np.stack([stack[0, 0, 0], stack[1, 0, 0], stack[0, 1, 0], stack[1, 1, 0]])
    path = _pages(tmp_path / "tc.ome.tif", stored, _ome(pixels))
    with open_image(path) as image:
        for t in range(2):
            for c in range(2):
                np.testing.assert_array_equal(image.read_plane(0, t, c, 0), stack[t, c, 0])


def test_ome_rgb_samples_from_the_channel(tmp_path: Path) -> None:
    rgb = (np.arange(6 * 5 * 3).reshape(6, 5, 3) % 251).astype("uint8")
    pixels = (
        '<Pixels DimensionOrder="XYCZT" ID="Pixels:0" Type="uint8" SizeC="3" SizeT="1" SizeX="5" '
        'SizeY="6" SizeZ="1" Interleaved="true"><Channel ID="Channel:0" SamplesPerPixel="3"/>'
        '<TiffData IFD="0" PlaneCount="1"/></Pixels>'
    )
    path = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", description=_ome(pixels), metadata=None)
    with open_image(path) as image:
        assert image.scenes()[0].samples_per_pixel == 3
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), rgb)


def test_the_size_check_uses_the_first_plane_present(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")[0, 0]
    xml = _ome(_pixels(2, '<TiffData FirstZ="1" IFD="0" PlaneCount="1"/>', y=7, x=5))
    path = _pages(tmp_path / "late.ome.tif", planes[:1], xml)
    with pytest.raises(MetadataError, match="OME Pixels says 7x5 pixels but IFD 0 holds 6x5"):
        open_image(path)


def test_the_keyframe_comes_from_the_member_holding_the_first_plane(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 2, 6, 5, dtype="uint8")[0, 0]
    tiffdata = "".join(
        f'<TiffData FirstZ="{z}" IFD="{z}" PlaneCount="1"><UUID FileName="b.ome.tif">urn:uuid:b</UUID></TiffData>'
        for z in range(2)
    )
    xml = _ome(_pixels(2, tiffdata), uuid="urn:uuid:a")
    a = _pages(tmp_path / "a.ome.tif", np.zeros((1, 4, 4), "uint8"), xml)  # holds no plane
    _pages(tmp_path / "b.ome.tif", planes, xml)
    with open_image(a) as image:
        for z in range(2):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), planes[z])
