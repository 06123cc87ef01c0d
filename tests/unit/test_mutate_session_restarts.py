"""The mutation runner's handling of a mutant that ends the pytest session itself.

Why: such a mutant (an error escaping the test protocol, an exit from a fixture) once
ended every run of its module without a verdict, so the module could never be scored.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutate_session.py"


@pytest.fixture(scope="module")
def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_session_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _meta(tmp_path: Path, codes: dict[str, int | None]) -> Path:
    meta = tmp_path / "walk.py.meta"
    meta.write_text(json.dumps({"exit_code_by_key": codes, "other": 1}), "utf-8")
    return meta


def _note(runner: ModuleType, meta: Path, name: str, tries: int) -> None:
    runner.running_marker(meta).write_text(json.dumps({"name": name, "tries": tries}), "utf-8")


def test_without_a_note_the_order_stays(runner: ModuleType, tmp_path: Path) -> None:
    meta = _meta(tmp_path, {"a": None, "b": None})
    assert runner.settle_session_enders(meta, ["a", "b"]) == ["a", "b"]


def test_a_mutant_that_ended_the_session_once_runs_first(
    runner: ModuleType, tmp_path: Path
) -> None:
    meta = _meta(tmp_path, {"a": None, "b": None, "c": None})
    _note(runner, meta, "b", 1)
    assert runner.settle_session_enders(meta, ["a", "b", "c"]) == ["b", "a", "c"]
    assert runner.running_marker(meta).exists()  # its own run notes it a second time
    assert json.loads(meta.read_text("utf-8"))["exit_code_by_key"]["b"] is None


def test_a_mutant_that_ended_the_session_twice_is_killed(
    runner: ModuleType, tmp_path: Path
) -> None:
    meta = _meta(tmp_path, {"a": None, "b": None})
    _note(runner, meta, "b", 2)
    assert runner.settle_session_enders(meta, ["a", "b"]) == ["a"]
    saved = json.loads(meta.read_text("utf-8"))
    assert saved["exit_code_by_key"] == {"a": None, "b": runner.KILLED}
    assert saved["other"] == 1
    assert not runner.running_marker(meta).exists()


def test_a_saved_verdict_leaves_nothing_to_settle(runner: ModuleType, tmp_path: Path) -> None:
    meta = _meta(tmp_path, {"a": None, "b": runner.TIMEOUT})  # the watchdog's, then a restart
    _note(runner, meta, "b", 3)
    assert runner.settle_session_enders(meta, ["a"]) == ["a"]
    assert json.loads(meta.read_text("utf-8"))["exit_code_by_key"]["b"] == runner.TIMEOUT
    assert not runner.running_marker(meta).exists()


def test_the_note_counts_tries_of_the_same_mutant(runner: ModuleType, tmp_path: Path) -> None:
    meta = _meta(tmp_path, {"a": None, "b": None})
    loop = runner.MutantLoop(meta, ["a", "b"], budget=1, check_every=1)
    try:
        loop._mark_running("a")
        loop._mark_running("a")
        assert json.loads(runner.running_marker(meta).read_text("utf-8")) == {
            "name": "a",
            "tries": 2,
        }
        loop._mark_running("b")
        assert json.loads(runner.running_marker(meta).read_text("utf-8"))["tries"] == 1
    finally:
        loop.log.close()
