"""Count, per metadata field, right / missing / wrong values over the real corpus.

Why: sizes and pixels have reference readers to compare with; the fields
people search on (objective, colours, wavelengths, exposure, microscope,
software, times, scene names) do not. ``tests/realdata/expected_fields.json``
holds what each file's own XML and tags state (with the source of every
value); this script opens every file of the corpus with the library and
compares field by field, so a change can be judged by its counts before and
after.

* **right**: the reader reports the stated value (or null where the file states nothing);
* **missing**: the file states a value and the reader reports null;
* **wrong**: the reader reports a different value, or one the file does not state (invented).

Channel fields count one value per channel.

Usage::

    .venv/bin/python scripts/metadata_fidelity.py [TESTDATA_DIR] [--json OUT] [--details]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXPECTED = REPO / "tests" / "realdata" / "expected_fields.json"


def load_expected(path: Path = EXPECTED) -> dict[str, Any]:
    """The expected-fields document (``fields``, ``files``)."""
    return json.loads(path.read_text(encoding="utf-8"))


def expected_for(entry: dict[str, Any], scene: int, field: str) -> Any:
    """The stated value of ``field`` in ``scene`` (None when the file states nothing)."""
    scenes = entry.get("scenes", {})
    for block in (scenes.get(str(scene), {}), entry.get("values", {})):
        if field in block:
            return block[field]["value"]
    return None


def actual_value(md: Any, field: str) -> Any:
    """The reader's value of ``field`` ("channels.color" gives a list, one per channel)."""
    head, _, tail = field.partition(".")
    if head == "channels":
        return [getattr(channel, tail) for channel in md.channels]
    value = getattr(md, head)
    if tail:
        value = None if value is None else getattr(value, tail)
    return value


def _same(expected: Any, actual: Any, field: str) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        try:
            return math.isclose(float(expected), float(actual), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if field.startswith("acquired_at"):
        wanted = datetime.fromisoformat(str(expected).replace("Z", "+00:00"))
        got = actual if isinstance(actual, datetime) else datetime.fromisoformat(str(actual))
        if (wanted.tzinfo is None) != (got.tzinfo is None):
            return False
        return abs((wanted - got).total_seconds()) < 1e-3
    return bool(expected == actual)


def classify(expected: Any, actual: Any, field: str) -> str:
    """``right``, ``missing`` or ``wrong`` for one value."""
    if expected is None:
        return "right" if actual is None else "wrong"
    if actual is None:
        return "missing"
    return "right" if _same(expected, actual, field) else "wrong"


def compare(
    testdata: Path, document: dict[str, Any]
) -> tuple[dict[str, dict[str, int]], list[tuple[str, int, str, str, Any, Any]]]:
    """Counts per field and the list of every non-right value (file, scene, field, verdict, ...)."""
    from zstack_analyzer import open_image

    fields: list[str] = document["fields"]
    counts = {f: {"right": 0, "missing": 0, "wrong": 0} for f in fields}
    problems: list[tuple[str, int, str, str, Any, Any]] = []
    for name, entry in sorted(document["files"].items()):
        with open_image(testdata / name) as image:
            for scene in range(len(image.scenes())):
                md = image.metadata(scene)
                for field in fields:
                    expected = expected_for(entry, scene, field)
                    actual = actual_value(md, field)
                    if field.startswith("channels."):
                        wanted = expected if expected is not None else [None] * len(actual)
                        pairs = list(zip(wanted, actual, strict=False))
                        if len(wanted) != len(actual):
                            pairs = [(w, None) for w in wanted]
                    else:
                        pairs = [(expected, actual)]
                    for want, got in pairs:
                        verdict = classify(want, got, field)
                        counts[field][verdict] += 1
                        if verdict != "right":
                            problems.append((name, scene, field, verdict, want, got))
    return counts, problems


def main(argv: list[str] | None = None) -> int:
    """Print the per-field table; optionally write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("testdata", nargs="?", default=str(REPO.parent / "shared" / "testdata"))
    parser.add_argument("--json", help="write the counts here")
    parser.add_argument("--details", action="store_true", help="list every missing/wrong value")
    args = parser.parse_args(argv)
    document = load_expected()
    counts, problems = compare(Path(args.testdata), document)
    width = max(len(f) for f in counts)
    sys.stdout.write(f"{'field':<{width}}  right  missing  wrong\n")
    totals = {"right": 0, "missing": 0, "wrong": 0}
    for field, row in counts.items():
        sys.stdout.write(
            f"{field:<{width}}  {row['right']:>5}  {row['missing']:>7}  {row['wrong']:>5}\n"
        )
        for key in totals:
            totals[key] += row[key]
    sys.stdout.write(
        f"{'TOTAL':<{width}}  {totals['right']:>5}  {totals['missing']:>7}  {totals['wrong']:>5}\n"
    )
    if args.details:
        for name, scene, field, verdict, want, got in problems:
            sys.stdout.write(
                f"{verdict:7} {name} s{scene} {field}: expected {want!r}, got {got!r}\n"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": counts, "totals": totals}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
