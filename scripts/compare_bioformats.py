"""Compare our channel metadata with Bio-Formats' on a folder of real files.

Usage::

    .venv/bin/python scripts/compare_bioformats.py [FOLDER] [--markdown] [--json OUT]

For every file under FOLDER (default: the shared corpus) and every scene, each
channel's name, fluorophore, excitation and emission wavelength (nm), illumination
type and exposure (ms, Bio-Formats' first plane of that channel) are compared with
the OME-XML Bio-Formats 7.3.1 writes for the same file (all files in one JVM, see
scripts/bioformats_ref.py). Prints one row per disagreement. Why a script and a test
(tests/realdata/test_bioformats.py) share this code: the committed table in
docs/bioformats-comparison.md and the regression test must mean the same thing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bioformats_ref import BfChannel, images, omexml

FIELDS = ("name", "fluorophore", "excitation_nm", "emission_nm", "illumination", "exposure_ms")
SKIP_SUFFIXES = {".md", ".py", ".json", ".txt"}
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "testdata"


@dataclass(frozen=True)
class Difference:
    """One value that differs (``channel`` -1 and ``field`` "scenes"/"channels" for counts)."""

    file: str
    scene: int
    channel: int
    field: str
    ours: Any
    bioformats: Any

    def key(self) -> str:
        """Stable identity of the disagreement (values excluded from nothing: they matter)."""
        return f"{self.file}|{self.scene}|{self.channel}|{self.field}|{self.ours!r}|{self.bioformats!r}"


def corpus_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (documentation and scripts left out), sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() not in SKIP_SUFFIXES and not p.name.startswith(".")
    )


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, float) and isinstance(theirs, float):
        return math.isclose(ours, theirs, rel_tol=1e-4, abs_tol=1e-3)
    if isinstance(ours, float | int) and isinstance(theirs, float | int):
        return math.isclose(float(ours), float(theirs), rel_tol=1e-4, abs_tol=1e-3)
    return bool(ours == theirs)


def _ours(path: Path) -> list[list[dict[str, Any]]] | str:
    from zstack_analyzer import open_image
    from zstack_analyzer.errors import ImageLoadError

    try:
        with open_image(path) as image:
            return [
                [ch.model_dump(include=set(FIELDS)) for ch in image.metadata(s.index).channels]
                for s in image.scenes()
            ]
    except ImageLoadError as exc:
        return f"{type(exc).__name__}"


def compare_file(
    rel: str, ours: list[list[dict[str, Any]]] | str, bf: dict[str, Any]
) -> list[Difference]:
    """Every disagreement of one file; unreadable on either side is one ``readable`` row."""
    if isinstance(ours, str) or "error" in bf:
        ours_ok = "ok" if not isinstance(ours, str) else ours
        bf_ok = "ok" if "error" not in bf else "error"
        if ours_ok == bf_ok == "ok":
            return []
        return [Difference(rel, -1, -1, "readable", ours_ok, bf_ok)]
    theirs: list[list[BfChannel]] = images(bf["xml"])
    out = []
    if len(ours) != len(theirs):
        out.append(Difference(rel, -1, -1, "scenes", len(ours), len(theirs)))
    for scene, (our_channels, bf_channels) in enumerate(zip(ours, theirs, strict=False)):
        if len(our_channels) != len(bf_channels):
            out.append(Difference(rel, scene, -1, "channels", len(our_channels), len(bf_channels)))
            continue
        for c, (mine, other) in enumerate(zip(our_channels, bf_channels, strict=True)):
            for field in FIELDS:
                a, b = mine[field], getattr(other, field)
                if not _same(a, b):
                    out.append(Difference(rel, scene, c, field, a, b))
    return out


def compare(
    folder: Path, files: list[Path] | None = None
) -> tuple[list[Difference], dict[str, int]]:
    """All disagreements under ``folder`` and, per file, how many values were compared."""
    files = files if files is not None else corpus_files(folder)
    reference = omexml(files)
    differences: list[Difference] = []
    compared: dict[str, int] = {}
    for path in files:
        rel = path.relative_to(folder).as_posix()
        ours = _ours(path)
        bf = reference[str(path)]
        compared[rel] = sum(len(s) for s in ours) * len(FIELDS) if not isinstance(ours, str) else 0
        differences.extend(compare_file(rel, ours, bf))
    return differences, compared


def markdown(differences: list[Difference]) -> str:
    """A markdown table of the disagreements."""
    lines = [
        "| File | Scene | Channel | Field | Ours | Bio-Formats 7.3.1 |",
        "|---|---|---|---|---|---|",
    ]
    for d in differences:
        scene = "" if d.scene < 0 else str(d.scene)
        channel = "" if d.channel < 0 else str(d.channel)
        lines.append(
            f"| {d.file} | {scene} | {channel} | {d.field} | {d.ours!r} | {d.bioformats!r} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the disagreements (markdown table, or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    differences, compared = compare(folder)
    print(markdown(differences))
    total = sum(compared.values())
    print(
        f"\n{len(differences)} disagreements; {total} channel values compared in {len(compared)} files"
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(d) for d in differences], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
