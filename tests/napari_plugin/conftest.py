"""napari's own ``make_napari_viewer`` fixture for these tests only, on a private Xvfb display.

Why not ``-p napari`` for the whole run: napari's pytest plugin imports napari
(and Qt) in every test process and adds autouse fixtures to every test; the
suite keeps it disabled (pyproject's addopts) and these tests import the few
pieces they need here. ``tests/conftest.py`` registers the two command-line
options napari's fixture reads. Why Xvfb and not ``QT_QPA_PLATFORM=offscreen``:
the offscreen platform gives vispy no OpenGL context and napari's canvas fails
to make a layer's visual (``glGetParameter`` returns nothing); Debian's Xvfb
(scripts/ensure-napari-deps.sh) with Mesa's software GL does. Missing napari,
pytest-qt or Xvfb skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import TYPE_CHECKING

import pytest

from tests.needs import unavailable
from tests.xvfb import xvfb_display

if TYPE_CHECKING:
    from collections.abc import Iterator

_MISSING = [
    name for name in ("napari", "pytestqt", "magicgui") if importlib.util.find_spec(name) is None
]

if not _MISSING:
    # napari's own imports warn (pydantic deprecations of its dependencies); the suite turns
    # warnings into errors, so napari is imported once here with them silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import napari.viewer  # noqa: F401

    # napari's fixtures, and its hook that records the call's outcome (its fixture reads it).
    from napari.utils._testsupport import (  # noqa: F401
        make_napari_viewer,
        mock_app_model,
        pytest_runtest_makereport,
    )
else:

    @pytest.fixture
    def make_napari_viewer() -> None:
        unavailable(f"{', '.join(_MISSING)} (pyproject's napari and dev extras)")


@pytest.fixture(scope="session", autouse=True)
def _xvfb_display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private X display for Qt (``Xvfb -displayfd`` picks a free number; no TCP)."""
    runtime = tmp_path_factory.mktemp("xdg")
    runtime.chmod(0o700)
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "QT_QPA_PLATFORM", "XDG_RUNTIME_DIR")}
    with xvfb_display() as display:
        os.environ.update(
            {"DISPLAY": display, "QT_QPA_PLATFORM": "xcb", "XDG_RUNTIME_DIR": str(runtime)}
        )
        try:
            yield display
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
