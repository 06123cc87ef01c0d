"""Every skip in the suite goes through ``tests.needs.unavailable``.

Why: under ``CI=true`` a missing prerequisite must fail, never skip (a CI run that
skips the only test of a behaviour proves nothing). ``unavailable`` does exactly
that; a direct ``pytest.skip`` / ``importorskip`` / ``mark.skip`` bypasses it (the
unprivileged-user walk test skipped silently on CI when not run as root).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
_BYPASSES = {"skip", "importorskip", "skipif"}


def _direct_skips(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _BYPASSES:
            base = node.value
            names = []
            while isinstance(base, ast.Attribute):
                names.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id == "pytest":
                found.append(f"{path.relative_to(TESTS)}:{node.lineno} pytest.{node.attr}")
    return found


def test_no_test_skips_around_tests_needs() -> None:
    offenders = [
        hit
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "needs.py"
        for hit in _direct_skips(path)
    ]
    assert offenders == [], "use tests.needs.unavailable(reason) instead: " + ", ".join(offenders)
