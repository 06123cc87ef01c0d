"""The formats Bio-Formats reads, as data, so that listing them never starts a JVM.

Why a table in the package: ``supported_formats()``, the upload check and the
folder walk ask "which extensions?" on every call, in the server's process,
where no JVM may run. ``formats.json`` is Bio-Formats' own reader list
(``ImageReader.getReaders()``: class, format name, suffixes, in its detection
order) written by ``scripts/bioformats_formats.py`` from the jar we test
against; a test checks it still matches the jar.

Suffixes the fallback does **not** claim, and why (:data:`NOT_CLAIMED`):
generic text and markup (a folder walk would hand every ``.txt`` to a JVM),
companion files that are never opened on their own (``.ids`` beside ``.ics``,
DeltaVision's ``.dv.log``), and the two readers that read other files by name
or unpack archives (``.pattern``: any file a pattern names; ``.zip``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "NOT_CLAIMED",
    "BioformatsFormat",
    "bioformats_formats",
    "claimed_suffixes",
    "format_for",
]

#: Suffixes (no dot, lower case) never claimed by the fallback; see the module docstring.
NOT_CLAIMED: frozenset[str] = frozenset(
    {
        # text, markup, logs and settings: too generic to hand to a JVM by name
        "txt", "csv", "xml", "htm", "html", "log", "ini", "cfg", "inf", "xlog", "tmp",
        # companions, opened through their main file
        "ids", "dv.log", "r3d.log", "r3d_d3d",
        # readers that read other files by name, or unpack archives
        "pattern", "zip",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BioformatsFormat:
    """One Bio-Formats reader: its class, the format's name and the suffixes it claims.

    Examples
    --------
    >>> BioformatsFormat("GatanReader", "Gatan Digital Micrograph", (".dm3",)).file_format
    'Gatan Digital Micrograph (Bio-Formats)'
    """

    reader: str
    name: str
    suffixes: tuple[str, ...]

    @property
    def file_format(self) -> str:
        """The ``file_format`` of records read through it (distinct from native formats)."""
        return f"{self.name} (Bio-Formats)"


@cache
def bioformats_formats() -> tuple[BioformatsFormat, ...]:
    """Every Bio-Formats reader with the suffixes the fallback claims, in Bio-Formats' order."""
    text = resources.files(__package__).joinpath("formats.json").read_text(encoding="utf-8")
    rows = json.loads(text)["readers"]
    out = []
    for row in rows:
        suffixes = tuple(
            f".{s.lower()}" for s in row["suffixes"] if s and s.lower() not in NOT_CLAIMED
        )
        out.append(BioformatsFormat(row["reader"], row["format"], suffixes))
    return tuple(out)


@cache
def claimed_suffixes() -> tuple[str, ...]:
    """Every suffix some Bio-Formats reader claims, longest first (``.ome.xml`` before ``.xml``)."""
    found = {s for fmt in bioformats_formats() for s in fmt.suffixes}
    return tuple(sorted(found, key=lambda s: (-len(s), s)))


def format_for(name: str) -> BioformatsFormat | None:
    """The first Bio-Formats reader (in its order) whose suffix ends ``name``, if any."""
    lower = name.lower()
    for fmt in bioformats_formats():
        if any(lower.endswith(s) for s in fmt.suffixes):
            return fmt
    return None
