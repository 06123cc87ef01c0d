"""Channel metadata of every corpus file against Bio-Formats 7.3.1, the reference reader.

Bio-Formats reads the whole corpus in one JVM (scripts/bioformats_ref.py; Java and the
jar come from scripts/bioformats-jar.sh). Every value where we agree with it is
asserted to stay agreed; every disagreement must be one listed, with who is right
and why, in ``bioformats_disagreements.json`` (the table in docs/bioformats-comparison.md).
A new disagreement is a regression; a listed one that vanished means the list is
stale (update it and the doc).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tests.needs import unavailable

pytestmark = [pytest.mark.realdata, pytest.mark.timeout(300)]

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parents[1] / "scripts"
KNOWN = json.loads((HERE / "bioformats_disagreements.json").read_text(encoding="utf-8"))


def _compare_module() -> Any:
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(
        "compare_bioformats", SCRIPTS / "compare_bioformats.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _row(entry: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        json.dumps(entry[k]) for k in ("file", "scene", "channel", "field", "ours", "bioformats")
    )


def test_channels_agree_with_bioformats_except_the_listed(testdata: Path) -> None:
    if importlib.util.find_spec("jpype") is None:
        unavailable("jpype1 (the dev extra) is not installed: Bio-Formats runs through it")
    compare = _compare_module()
    reference = sys.modules["bioformats_ref"]
    try:
        reference.jar_path()
    except reference.BioFormatsUnavailable as exc:
        unavailable(f"Bio-Formats: {exc}")
    differences, compared = compare.compare(testdata)
    assert sum(compared.values()) > 500  # the whole corpus was compared, not a part
    found = {_row(asdict(d)) for d in differences}
    listed = {_row(entry) for entry in KNOWN["disagreements"]}
    new = sorted(found - listed)
    gone = sorted(listed - found)
    assert not new, f"new disagreements with Bio-Formats (a regression, or list them): {new}"
    assert not gone, f"listed disagreements no longer seen (update the list and doc): {gone}"
