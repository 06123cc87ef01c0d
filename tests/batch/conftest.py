"""Fixtures for archive tests: a nested folder of small real files, settings from ZSTACK_*."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.service.conftest import write_ome_tiff
from zstack_analyzer.service.config import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterator


def make_archive(root: Path, n: int = 6) -> list[Path]:
    """``n`` distinct small OME-TIFFs in nested folders; returns their paths."""
    files = []
    for i in range(n):
        folder = root / f"day{i % 2}" / f"well{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        files.append(write_ome_tiff(folder / f"stack{i}.ome.tif", (1, 3, 16, 20), seed=i))
    return files


@pytest.fixture
def zstack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ZSTACK_* pointing at a fresh data dir (SQLite); yields the data dir."""
    data = tmp_path / "data"
    for key in list(os.environ):
        if key.startswith("ZSTACK_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ZSTACK_DATA_DIR", str(data))
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def rows(data_dir: Path, columns: str = "sha256, source_path, stored_in_place") -> list[tuple]:
    """The images table of a data dir's SQLite database, read directly."""
    db = data_dir / "zstack.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute(f"SELECT {columns} FROM images").fetchall()  # noqa: S608
        except sqlite3.OperationalError:  # not migrated yet
            return []


def zstack_command() -> list[str]:
    """The installed entry point (what a user runs)."""
    script = Path(sys.executable).with_name("zstack")
    return [str(script)] if script.exists() else [sys.executable, "-m", "zstack_analyzer.cli"]


def child_env(**values: str) -> dict[str, str]:
    """The environment for a ``zstack`` child: ours without ZSTACK_*, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")}
    env.update(values)
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a child and reap it (never leave it behind)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
