"""The formats table in the package is the jar's own reader list, and the registry uses it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from zstack_analyzer.readers.bioformats.formats import NOT_CLAIMED, claimed_suffixes
from zstack_analyzer.readers.bioformats.reader import BioformatsReader
from zstack_analyzer.registry import reader_classes, supported_formats

if TYPE_CHECKING:
    from zstack_analyzer.readers.bioformats.pool import WorkerPool

pytestmark = pytest.mark.xdist_group("bioformats")


def test_table_matches_the_jar(bf_pool: WorkerPool) -> None:
    table = json.loads(
        resources.files("zstack_analyzer.readers.bioformats").joinpath("formats.json").read_text()
    )
    here = Path(__file__)
    assert bf_pool.request(here, {"op": "formats"}).header["result"] == table["readers"]
    assert bf_pool.request(here, {"op": "version"}).header["result"] == table["bioformats_version"]


def test_fallback_is_last_and_claims_only_what_natives_do_not() -> None:
    assert reader_classes()[-1] is BioformatsReader
    head = b"\x00" * 64
    assert BioformatsReader.sniff(head, Path("spectrum.dm4"))
    assert BioformatsReader.sniff(head, Path("STACK.SPE"))  # case does not matter
    assert not BioformatsReader.sniff(head, Path("cells.tif"))  # the TIFF readers' suffix
    assert not BioformatsReader.sniff(head, Path("testim.ids"))  # a companion
    assert not BioformatsReader.sniff(head, Path("notes.txt"))
    assert not BioformatsReader.sniff(b"", Path("empty.dm4"))
    assert not {f".{s}" for s in NOT_CLAIMED} & set(claimed_suffixes())


def test_supported_formats_lists_each_bioformats_reader() -> None:
    rows = [f for f in supported_formats() if f.reader and f.reader.startswith("Bio-Formats ")]
    native = {s for f in supported_formats() if f not in rows for s in f.suffixes}
    listed = {s for f in rows for s in f.suffixes}
    assert listed == set(claimed_suffixes()) - native
    gatan = next(f for f in rows if f.reader == "Bio-Formats GatanReader")
    assert (gatan.name, gatan.suffixes) == (
        "Gatan Digital Micrograph (Bio-Formats)",
        (".dm3", ".dm4"),
    )
    assert gatan.required_packages == ("zstack-analyzer[bioformats]",)
