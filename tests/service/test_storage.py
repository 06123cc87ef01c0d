"""Filenames, suffixes, settings from the environment and the crash sweep."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pytest

from tests.service.conftest import upload
from zstack_analyzer.service.config import Settings
from zstack_analyzer.service.storage import display_filename, stored_suffix

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cells.czi", "cells.czi"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\stack.nd2", "stack.nd2"),
        ("a\x00b\x1fc\x7f.tif", "abc.tif"),
        ("e\u0301.tif", "\u00e9.tif"),
        ("", "upload"),
        (None, "upload"),
        ("..", "upload"),
        ("/", "upload"),
        ("  spaced.lif  ", "spaced.lif"),
    ],
)
def test_display_filename(raw: str | None, expected: str) -> None:
    assert display_filename(raw) == expected


def test_display_filename_caps_length_keeping_extension() -> None:
    name = display_filename("x" * 1000 + ".ome.tiff")
    assert len(name) == 255
    assert name.endswith(".tiff")


def test_stored_suffix() -> None:
    known = frozenset({".ome.tif", ".tif", ".czi"})
    assert stored_suffix("A.OME.TIF", known) == ".ome.tif"
    assert stored_suffix("a.czi", known) == ".czi"
    assert stored_suffix("a.weird", known) == ".weird"
    assert stored_suffix("a.b/../x", known) == ""
    assert stored_suffix("noext", known) == ""
    assert stored_suffix("a.$(rm -rf)", known) == ""


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZSTACK_HOST", "0.0.0.0")  # noqa: S104
    monkeypatch.setenv("ZSTACK_PORT", "9123")
    monkeypatch.setenv("ZSTACK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ZSTACK_API_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("ZSTACK_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("ZSTACK_LIMITS__MAX_UPLOAD_BYTES", "12345")
    monkeypatch.setenv("ZSTACK_RENDER__WORKERS", "3")
    settings = Settings()
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.port == 9123
    assert settings.data_dir == tmp_path
    assert settings.token() == "s3cr3t-value"
    assert settings.cors_origins == ["http://a.example", "http://b.example"]
    assert settings.limits.max_upload_bytes == 12345
    assert settings.render.workers == 3
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path.resolve() / 'zstack.db'}"
    assert "s3cr3t-value" not in repr(settings)
    monkeypatch.setenv("ZSTACK_CORS_ORIGINS", '["http://c.example"]')
    monkeypatch.setenv("ZSTACK_DATABASE_URL", "postgresql+psycopg://u@h/db")
    settings = Settings()
    assert settings.cors_origins == ["http://c.example"]
    assert settings.resolved_database_url() == "postgresql+psycopg://u@h/db"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ZSTACK_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert str(settings.data_dir) == "data"
    assert settings.token() is None
    assert settings.cors_origins == []


def test_startup_sweep_removes_temp_and_orphans(
    settings: Settings, make_client, tiff_file: Path
) -> None:
    client = make_client(settings)
    kept = upload(client, tiff_file).json()["id"]
    client.__exit__(None, None, None)
    [stored] = list(settings.images_dir.iterdir())
    # A crash mid-upload leaves a temp file; a crash between rename and commit an orphan.
    stale_temp = settings.tmp_dir / "0123456789abcdef.upload"
    stale_temp.write_bytes(b"half an upload")
    orphan = settings.images_dir / "fedcba9876543210fedcba9876543210.tif"
    orphan.write_bytes(tiff_file.read_bytes())
    old = time.time() - 3600
    os.utime(stale_temp, (old, old))

    restarted = make_client(settings)
    assert not stale_temp.exists()
    assert not orphan.exists()
    assert stored.exists()
    assert restarted.get(f"/api/images/{kept}/download").content == tiff_file.read_bytes()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sweep_grace_keeps_young_files(settings: Settings, make_client) -> None:
    graced = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"sweep_grace_seconds": 600})}
    )
    graced.tmp_dir.mkdir(parents=True)
    young = graced.tmp_dir / "in-flight.upload"
    young.write_bytes(b"x")
    make_client(graced)
    assert young.exists()
