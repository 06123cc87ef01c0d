"""Every action name the code records is one ``audit.ACTIONS`` lists.

Why: ``action`` is free text in the table, so nothing stops a call site from recording a
name the docs and the audit filter's list do not know (``container_delete`` was recorded
by the containers route but missing from ``ACTIONS``). This reads every
``events.emit("<name>", ...)`` in the package's source, so a new call site with a new name
fails here until the list names it too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import zstack_analyzer
from zstack_analyzer.service.auth.audit import ACTIONS


def _emitted_action_names() -> dict[str, str]:
    """Literal first arguments of ``events.emit(...)`` calls, with where each was found."""
    root = Path(zstack_analyzer.__file__).parent
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "emit"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "events"
                and node.args
            ):
                continue
            first = node.args[0]
            names: list[ast.expr] = [first]
            if isinstance(first, ast.IfExp):  # "membership_add" if ... else "..."
                names = [first.body, first.orelse]
            for name in names:
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    found.setdefault(name.value, f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_every_recorded_action_is_listed() -> None:
    emitted = _emitted_action_names()
    # The scan must see the call sites at all (a scan that finds nothing passes vacuously).
    assert {"login", "upload", "delete", "container_delete"} <= set(emitted)
    missing = {name: where for name, where in emitted.items() if name not in ACTIONS}
    assert not missing, f"recorded but not in audit.ACTIONS: {missing}"
