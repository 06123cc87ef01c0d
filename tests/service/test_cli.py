"""The ``zstack`` command: info, thumbnail, db upgrade, serve."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.service.conftest import write_ome_tiff
from zstack_analyzer.cli import app
from zstack_analyzer.service.config import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_info_json_and_table(tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "s.ome.tif")
    result = runner.invoke(app, ["info", str(source), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["size_c"], data["size_z"], data["size_y"], data["size_x"]) == (2, 5, 24, 32)
    assert data["physical_size"]["z_um"] == 2.0
    table = runner.invoke(app, ["info", str(source), "--table"])
    assert table.exit_code == 0, table.output
    assert "OME-TIFF" in table.output
    assert "uint16" in table.output


def test_info_errors_are_messages(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("hello")
    result = runner.invoke(app, ["info", str(text)])
    assert result.exit_code == 2
    assert "unsupported format" in result.output
    assert "Traceback" not in result.output


def test_thumbnail(tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "s.ome.tif")
    out = tmp_path / "t.png"
    result = runner.invoke(app, ["thumbnail", str(source), str(out), "--size", "64"])
    assert result.exit_code == 0, result.output
    with Image.open(io.BytesIO(out.read_bytes())) as image:
        assert max(image.size) <= 64
    side = tmp_path / "side.jpg"
    result = runner.invoke(app, ["thumbnail", str(source), str(side), "--axis", "1"])
    assert result.exit_code == 0, result.output
    assert side.read_bytes()[:2] == b"\xff\xd8"
    plane = tmp_path / "z.png"
    assert runner.invoke(app, ["thumbnail", str(source), str(plane), "--z", "3"]).exit_code == 0
    bad = runner.invoke(app, ["thumbnail", str(source), str(tmp_path / "p.png"), "--z", "9"])
    assert bad.exit_code == 2
    assert "out of range" in bad.output


def test_db_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZSTACK_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.delenv("ZSTACK_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "zstack.db").is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_from_environment(tmp_path: Path) -> None:
    """What ``make serve`` runs: the installed entry point, configured by ZSTACK_*."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")},
        "ZSTACK_PORT": str(port),
        "ZSTACK_DATA_DIR": str(tmp_path / "served"),
        "ZSTACK_LOG_LEVEL": "warning",
    }
    script = Path(sys.executable).with_name("zstack")  # the pyproject entry point
    command = [str(script)] if script.exists() else [sys.executable, "-m", "zstack_analyzer.cli"]
    process = subprocess.Popen(
        [*command, "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0].decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        assert (tmp_path / "served" / "zstack.db").is_file()
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_serve_says_where_its_data_is_and_keeps_migrations_quiet(tmp_path: Path) -> None:
    """A relative data folder is printed absolute; Alembic's INFO lines only at debug."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")},
        "ZSTACK_PORT": str(port),
        "ZSTACK_DATA_DIR": "lab-data",  # relative to the working folder
        "ZSTACK_LOG_LEVEL": "info",
    }
    script = Path(sys.executable).with_name("zstack")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "zstack_analyzer.cli"]
    process = subprocess.Popen(
        [*command, "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0].decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    data = (tmp_path / "lab-data").resolve()
    assert f"zstack-analyzer: http://127.0.0.1:{port}/ (data in {data})" in output, output
    assert "(data in lab-data)" not in output
    assert "alembic" not in output.lower(), output  # "Context impl ...", "Running upgrade ..."
