"""Hostile input reaches the JVM too: every testdata-more file, corrupted many ways.

The corruptors of :mod:`tests.corrupt` (truncations, header and body flips,
XML bombs where there is XML) run over every file the registry hands to the
Bio-Formats fallback. Each case must end in a
:class:`~zstack_analyzer.errors.ZstackError` (typed) or in a read whose
planes and thumbnail come out; nothing untyped. A case that hangs Bio-Formats
ends in :class:`ReaderTimeoutError` after the pool's deadline (10 s here), and
the worker's peak resident memory stays under its heap plus the JVM's
overhead. A truncated file that still reads must read exactly as the
original (nothing invented in place of the lost bytes). Lying sizes are in ``test_pool.py`` (a file that claims 10^12
pixels is refused before any read).
"""

from __future__ import annotations

import collections
import hashlib
import shutil
from typing import TYPE_CHECKING

import pytest

from tests.corrupt import variants
from tests.testdata_more import manifest_rows
from zstack_analyzer import ZstackError, open_image
from zstack_analyzer.readers.bioformats.pool import PoolOptions, configure, get_pool
from zstack_analyzer.readers.bioformats.reader import BioformatsReader
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_reader

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from zstack_analyzer.readers.bioformats.pool import WorkerPool

pytestmark = [pytest.mark.realdata, pytest.mark.xdist_group("bioformats")]

HEAP_MB = 512
#: Resident memory a worker may hold beyond its heap (JVM code, metaspace, Python).
OVERHEAD_MIB = 400


#: Truncations still read as whole, and why (each one listed; a new one fails the test).
KNOWN_SILENT = {
    # ICS v1's header has no end marker: cut after the sizes it is a valid header whose
    # missing lines (byte order, sign) take their defaults.
    "testim.ics::cut-1/2": "header cut to a valid shorter header",
    # SIF keeps its frame count and data offset in a text header we do not parse;
    # Bio-Formats shrinks the frames or zero-fills the last one.
    "image.sif::cut-1/2": "SIF header not parsed by us",
    "image.sif::cut-9/10": "SIF header not parsed by us",
    "image.sif::cut-last-byte": "SIF header not parsed by us",
}


def _peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


@pytest.fixture
def short_pool(bf_runtime: None) -> Iterator[WorkerPool]:
    """The process's pool with a 10 s deadline and a 512 MiB heap, for this module only."""
    previous = configure(PoolOptions(workers=1, heap_mb=HEAP_MB, timeout_s=10.0))
    yield get_pool()
    configure(previous)


def _read(path: Path) -> str:
    """``native``, or a digest of what a client gets: sizes, first and last plane, a picture."""
    digest = hashlib.sha256()
    with open_image(path) as reader:
        if not isinstance(reader, BioformatsReader):
            return "native"
        for info in reader.scenes()[:2]:
            reader.metadata(info.index)
            digest.update(repr(info.shape).encode())
        info = reader.scenes()[0]
        digest.update(reader.read_plane(0, 0, 0, 0).tobytes())
        last = (info.size_t - 1, info.size_c - 1, info.size_z - 1)
        digest.update(reader.read_plane(0, *last).tobytes())
        picture = render_reader(reader, RenderSpec(kind="slice", z=0, width=64, height=64))
        digest.update(picture.tobytes())
    return digest.hexdigest()


def test_every_corruption_ends_typed_in_bounded_memory(
    short_pool: WorkerPool, testdata_more: Path, tmp_path: Path
) -> None:
    tally: collections.Counter[str] = collections.Counter()
    untyped: list[str] = []
    silent: list[str] = []  # truncated, yet read whole with other content
    cases = 0
    for row in manifest_rows():
        source = testdata_more / row["file (local)"]
        baseline = _read(source)
        if baseline == "native":
            continue
        original = source.read_bytes()
        folder = tmp_path / source.parent.name
        folder.mkdir(exist_ok=True)
        for companion in source.parent.glob(f"{source.stem}.*"):
            if companion != source:  # an .ids beside its .ics, intact
                shutil.copyfile(companion, folder / companion.name)
        target = folder / source.name
        for variant in variants(source.name, original[:16]):
            corrupted = variant.corrupt(original)
            if corrupted is None:
                continue
            target.write_bytes(corrupted)
            cases += 1
            try:
                read = _read(target)
            except ZstackError as exc:
                tally[type(exc).__name__] += 1
            except Exception as exc:  # what the suite exists to find
                untyped.append(f"{target.name}::{variant.name}: {type(exc).__name__}: {exc}")
            else:
                tally["read"] += 1
                if variant.kind == "truncation" and read != baseline:
                    silent.append(f"{target.name}::{variant.name}")
    print(f"Bio-Formats corruption suite: {cases} cases: {dict(tally)}")
    assert cases >= 100
    assert not untyped, untyped
    assert sorted(silent) == sorted(KNOWN_SILENT), "truncated files read as whole: update the list"
    for pid in short_pool.pids():
        assert _peak_mib(pid) < HEAP_MB + OVERHEAD_MIB
