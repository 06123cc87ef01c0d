"""Property-based fuzzing of format detection and metadata parsing (hypothesis).

Properties: no sniffer ever raises; detection of any bytes ends in a reader or
a typed error; any mutation (byte edits, truncation) of a small valid file of
each format opens to metadata and a first plane or ends in a
:class:`~zstack_analyzer.errors.ZstackError`; the OME-XML and CZI XML parsers
turn any mutation of a real document into metadata or a typed error.

``make test`` runs a short, derandomised pass (``FUZZ_EXAMPLES`` examples per
property, default 60). ``make fuzz`` runs random passes over every property
until ``FUZZ_SECONDS`` (default 300) are spent, and prints the failing example
hypothesis shrinks to.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import testdata_dir as corpus_dir
from tests.synthetic_tiff import write_imagej, write_ome_tiff
from zstack_analyzer import ReadLimits, ZstackError, open_image
from zstack_analyzer.registry import HEAD_BYTES, detect_reader, reader_classes

if TYPE_CHECKING:
    from collections.abc import Callable

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "0") or 0)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
#: Small limits: a mutated size must be refused, not allocated.
LIMITS = ReadLimits(max_plane_bytes=64 * 1024**2, max_eager_bytes=64 * 1024**2)

MAGICS = [
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00\x08\x00\x00\x00",
    b"ZISRAWFILE",
    b"\xda\xce\xbe\x0a",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    b"\x70\x00\x00\x00",
    b"<?xml version='1.0'?><OME",
    b"\x89HDF\r\n\x1a\n",
    b"",
]


def _seed_files(root: Path) -> dict[str, bytes]:
    """Small valid files of each format: synthetic ones, plus tiny corpus LIF/ND2 when present."""
    from tests.synthetic import encoded_stack
    from tests.synthetic_czi import write_czi_stack

    stack = encoded_stack(1, 2, 3, 16, 20)
    seeds: dict[str, Path] = {}
    seeds["ome.ome.tif"] = write_ome_tiff(
        root / "seed.ome.tif",
        [stack],
        metadata=[{"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.7, "PhysicalSizeZ": 2.0}],
    )
    seeds["imagej.tif"] = write_imagej(root / "seed-ij.tif", stack, unit="um", pixel_size=0.5)
    import tifffile

    tifffile.imwrite(
        root / "seed-tiled.tif",
        stack[0, 0],
        tile=(16, 16),
        compression="zlib",
        photometric="minisblack",
    )
    seeds["tiled.tif"] = root / "seed-tiled.tif"
    write_czi_stack(root / "seed.czi", c=2, z=3, y=16, x=20, voxel_um=(0.5, 0.7, 2.0))
    seeds["czi.czi"] = root / "seed.czi"
    # The native long-tail readers: DeltaVision, MRC, Imaris, a one-file Micro-Manager dataset.
    import mrcfile

    from tests.synthetic_dv import write_dv
    from tests.synthetic_ims import write_ims
    from tests.synthetic_mm import write_mm_dataset

    seeds["seed.dv"] = write_dv(root / "seed.dv", stack)
    with mrcfile.new(root / "seed.mrc") as mrc:
        mrc.set_data(stack[0, 0])
        mrc.voxel_size = 2.0
    seeds["seed.mrc"] = root / "seed.mrc"
    seeds["seed.ims"] = write_ims(root / "seed.ims", shape=(3, 16, 20), times=1, channels=2)
    (root / "mm").mkdir()
    (mm,) = write_mm_dataset(
        root / "mm", positions=1, frames=1, channels=2, slices=3, shape=(16, 20)
    )
    seeds["seed_MMStack_Pos0.ome.tif"] = mm
    corpus = corpus_dir()
    if corpus is not None:
        for rel in (
            "lif/PR2729_frameOrderCombinedScanTypes.lif",
            "nd2/cluster.nd2",
            "tiff/movie.stk",
        ):
            if (corpus / rel).is_file():
                seeds[Path(rel).name] = corpus / rel
    return {name: path.read_bytes() for name, path in seeds.items()}


#: The seed files' bytes, filled by the ``seeds`` fixture; kept out of the properties'
#: arguments so a failing example prints short.
SEEDS: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    SEEDS.update(_seed_files(tmp_path_factory.mktemp("seeds")))
    return SEEDS


def _run(prop: Callable[..., None], *args: Any) -> None:
    """One derandomised pass (make test), or random passes until FUZZ_SECONDS (make fuzz)."""
    common: dict[str, Any] = {
        "database": None,
        "deadline": None,
        "suppress_health_check": list(HealthCheck),
    }
    if not FUZZ_SECONDS:
        settings(max_examples=EXAMPLES, derandomize=True, **common)(prop)(*args)
        return
    runner = settings(max_examples=200, **common)(prop)
    stop = time.monotonic() + FUZZ_SECONDS / 5  # five properties share the budget
    passes = 0
    while time.monotonic() < stop:
        runner(*args)  # each pass draws new random examples
        passes += 1
    print(f"{prop.__name__}: {passes} passes of 200 examples")


def _opens_or_typed(path: Path) -> None:
    try:
        with open_image(path, limits=LIMITS) as reader:
            for info in reader.scenes()[:2]:
                reader.metadata(info.index)
            plane = reader.read_plane(0, 0, 0, 0)
            assert plane.ndim in (2, 3)
    except ZstackError:
        pass


# --------------------------------------------------------------------------- properties
heads = st.builds(
    lambda magic, rest: (magic + rest)[:HEAD_BYTES],
    st.sampled_from(MAGICS),
    st.binary(max_size=512),
)


@given(head=heads)
def _sniffers_never_raise(head: bytes) -> None:
    for cls in reader_classes():
        assert isinstance(cls.sniff(head, Path("fuzz.bin")), bool)


@given(head=heads, suffix=st.sampled_from([".tif", ".czi", ".nd2", ".lif", ".ome.tif", ".bin"]))
def _detection_is_typed(root: Path, head: bytes, suffix: str) -> None:
    path = root / f"probe{suffix}"
    path.write_bytes(head)
    with contextlib.suppress(ZstackError):
        detect_reader(path)


edits = st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=12)


@given(
    name=st.sampled_from(
        [
            "ome.ome.tif",
            "imagej.tif",
            "tiled.tif",
            "czi.czi",
            "cluster.nd2",
            "PR2729_frameOrderCombinedScanTypes.lif",
            "movie.stk",
            "seed.dv",
            "seed.mrc",
            "seed.ims",
            "seed_MMStack_Pos0.ome.tif",
        ]
    ),
    changes=edits,
    keep=st.one_of(st.none(), st.floats(0.0, 1.0)),
    head_only=st.booleans(),
)
def _mutated_files_open_or_fail_typed(
    root: Path, name: str, changes: list[tuple[int, int]], keep: float | None, head_only: bool
) -> None:
    if name not in SEEDS:
        return
    data = bytearray(SEEDS[name])
    span = min(len(data), 1024) if head_only else len(data)
    for offset, value in changes:
        data[offset % span] = value
    if keep is not None:
        data = data[: int(len(data) * keep)]
    path = root / name
    path.write_bytes(bytes(data))
    _opens_or_typed(path)


def _mutate_text(text: str, changes: list[tuple[int, str]], cut: float | None) -> str:
    chars = list(text)
    for offset, piece in changes:
        if chars:
            chars[offset % len(chars)] = piece
    out = "".join(chars)
    return out if cut is None else out[: int(len(out) * cut)]


text_edits = st.lists(
    st.tuples(
        st.integers(0, 2**31),
        st.sampled_from(['"', "<", ">", "/", "&", "-1", "1e309", "nan", "0", " ", "Z", "µ"]),
    ),
    max_size=10,
)


@given(changes=text_edits, cut=st.one_of(st.none(), st.floats(0.0, 1.0)))
def _ome_xml_parses_or_fails_typed(
    xml: str, changes: list[tuple[int, str]], cut: float | None
) -> None:
    from zstack_analyzer.metadata import SceneInfo
    from zstack_analyzer.readers._ome import image_metadata, parse_ome_xml

    text = _mutate_text(xml, changes, cut)
    try:
        doc = parse_ome_xml(text, path=Path("fuzz.ome.tif"), limits=LIMITS)
        for image in doc.images[:2]:
            info = SceneInfo(
                index=0, size_t=1, size_c=1, size_z=1, size_y=1, size_x=1, dtype="uint8"
            )
            image_metadata(
                doc, image, info, filename="fuzz.ome.tif", file_format="OME-TIFF", scenes=[info]
            )
    except ZstackError:
        pass


@given(changes=text_edits, cut=st.one_of(st.none(), st.floats(0.0, 1.0)))
def _czi_xml_parses_or_fails_typed(
    xml: str, changes: list[tuple[int, str]], cut: float | None
) -> None:
    from zstack_analyzer.readers._czi_xml import parse_czi_xml

    with contextlib.suppress(ZstackError):
        parse_czi_xml(_mutate_text(xml, changes, cut), path=Path("fuzz.czi"))


# --------------------------------------------------------------------------- tests
def test_sniffers_never_raise() -> None:
    _run(_sniffers_never_raise)


def test_detection_of_any_bytes_is_typed(tmp_path: Path) -> None:
    _run(_detection_is_typed, tmp_path)


@pytest.mark.timeout(600)
def test_mutated_files_open_or_fail_typed(tmp_path: Path, seeds: dict[str, bytes]) -> None:
    assert seeds
    _run(_mutated_files_open_or_fail_typed, tmp_path)


def test_ome_xml_parser_is_typed(seeds: dict[str, bytes]) -> None:
    from io import BytesIO

    import tifffile

    with tifffile.TiffFile(BytesIO(seeds["ome.ome.tif"])) as tif:
        xml = tif.ome_metadata
    assert xml and "<OME" in xml
    _run(_ome_xml_parses_or_fails_typed, xml)


def test_czi_xml_parser_is_typed(tmp_path: Path, seeds: dict[str, bytes]) -> None:
    from tests.synthetic_czi import rich_czi_xml

    xml = rich_czi_xml()
    assert "<Scaling>" in xml
    _run(_czi_xml_parses_or_fails_typed, xml)
