"""napari, the viewer most of the lab uses, opens a served image by the README's command.

The real client end to end: a live server, napari 0.9 (PyQt6) with
napari-ome-zarr in a separate process on an Xvfb display (Debian's;
scripts/ensure-napari-deps.sh installs it; Qt's offscreen platform has no
OpenGL for napari's canvas), the URL and plugin taken from the README as written. A 16-bit
two-channel image whose data sit at 76..304 must not be black in the middle of
the canvas: that needs the ``.zarr`` URL napari-ome-zarr accepts, the
collection it reads, and the 1-99 % windows (the whole dtype range shows it black).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.needs import unavailable
from tests.omezarr.helpers import dim_stack
from tests.service.live import live_server
from tests.synthetic_tiff import write_ome_tiff
from tests.xvfb import xvfb_display

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README_URL = re.compile(r"^napari --plugin (\S+) (http://127\.0\.0\.1:8000/\S+)$", re.MULTILINE)
README_INSTALL = re.compile(r"^pip install (.*napari.*)$", re.MULTILINE)


def _readme_command() -> tuple[str, str]:
    """The plugin and URL template of the README's napari command (``<id>`` for the image)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = README_URL.search(text)
    assert found is not None, "README: no `napari --plugin ... http://127.0.0.1:8000/...` line"
    return found.group(1), found.group(2)


def test_the_readme_install_line_is_the_dev_extra() -> None:
    """The README's install line brings a Qt backend, and the tests install the same."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = README_INSTALL.findall(text)
    assert any('"napari[pyqt6]"' in line and "napari-ome-zarr" in line for line in lines), lines
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=]", spec)[0] for spec in dev["dev"]}
    assert {"napari[pyqt6]", "napari-ome-zarr"} <= names


def test_napari_opens_the_readme_url_of_a_dim_16_bit_image(tmp_path: Path) -> None:
    if (
        importlib.util.find_spec("napari") is None
        or importlib.util.find_spec("napari_ome_zarr") is None
    ):
        unavailable("napari and napari-ome-zarr (pyproject's dev extra)")
    plugin, template = _readme_command()
    stack = dim_stack(2, 3, 1100, 900)
    path = write_ome_tiff(tmp_path / "dim.ome.tif", [stack])
    with (
        xvfb_display() as display,
        live_server(tmp_path / "data") as base,
        httpx.Client(base_url=base, timeout=120) as client,
    ):
        with path.open("rb") as fh:
            up = client.post("/api/images/upload", files={"file": ("dim.ome.tif", fh)})
        assert up.status_code == 201, up.text
        image_id = up.json()["id"]
        url = template.replace("http://127.0.0.1:8000", base).replace("<id>", image_id)
        assert url.rstrip("/").endswith(".zarr")
        windows = [
            ch["window"]
            for ch in client.get(f"/api/images/{image_id}/zarr/.zattrs").json()["omero"]["channels"]
        ]
        runtime = tmp_path / "xdg"
        runtime.mkdir(mode=0o700)
        env = {
            **os.environ,
            "DISPLAY": display,
            # The backend the README installs; the offscreen platform gives vispy no OpenGL
            # (napari's canvas stays black), so a real X server (Xvfb) it is.
            "QT_API": "pyqt6",
            "QT_QPA_PLATFORM": "xcb",
            "XDG_RUNTIME_DIR": str(runtime),
        }
        env.pop("WAYLAND_DISPLAY", None)
        run = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("napari_view.py")), url, plugin],
            capture_output=True,
            text=True,
            env=env,
            timeout=240,
            check=False,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    layers = report["layers"]
    assert [layer["shape"] for layer in layers] == [[1, 3, 1100, 900]] * 2
    assert all(layer["multiscale"] for layer in layers)
    assert [layer["contrast_limits"] for layer in layers] == [
        [w["start"], w["end"]] for w in windows
    ]
    assert max(report["centre"]) > 100, report
