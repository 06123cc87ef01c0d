#!/usr/bin/env bash
# Build the wheel and sdist once, check them with twine, and install the wheel into one
# clean venv: the library alone (import, version, open a synthetic file), then with the
# `service` extra (the app imports), then the `bioio` and `napari` extras (their plugin
# discovery finds our entry points). Dependencies come from pip's cache / local indexes.
# Usage: scripts/package-check.sh [PYTHON]   (PYTHON has `build` and `twine`; default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/zstack-package-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

"$PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
"$PY" -m twine check --strict "$WORK"/dist/*
wheel=("$WORK"/dist/*.whl)
sdist=("$WORK"/dist/*.tar.gz)
[ "${#wheel[@]}" -eq 1 ] && [ "${#sdist[@]}" -eq 1 ]
# The sdist carries what a rebuild needs (sources, licence text in metadata, changelog).
tar -tzf "${sdist[0]}" >"$WORK/sdist.txt"
grep -q '/src/zstack_analyzer/client/__init__.py$' "$WORK/sdist.txt"
grep -q '/CHANGELOG.md$' "$WORK/sdist.txt"

python3 -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
pip_install() {  # pip's warnings about local index paths go to a log shown on failure
    "$VPY" -m pip install --quiet "$@" 2>"$WORK/pip.log" || { cat "$WORK/pip.log"; exit 1; }
}
pip_install "${wheel[0]}"
cd "$WORK"  # never import the source tree by accident
"$VPY" - <<'PY'
import importlib.metadata as md
import tempfile, pathlib
import numpy as np
import tifffile
import zstack_analyzer
from zstack_analyzer import open_image

assert zstack_analyzer.__version__ == md.version("zstack-analyzer"), zstack_analyzer.__version__
assert "site-packages" in zstack_analyzer.__file__, zstack_analyzer.__file__
path = pathlib.Path(tempfile.mkdtemp()) / "cells.ome.tif"
data = (np.arange(2 * 3 * 16 * 20, dtype=np.uint16).reshape(2, 3, 16, 20) * 7)
tifffile.imwrite(path, data, ome=True, metadata={"axes": "CZYX", "PhysicalSizeX": 0.5})
with open_image(path) as image:
    md0 = image.metadata(0)
    assert (md0.size_c, md0.size_z, md0.size_y, md0.size_x) == (2, 3, 16, 20)
    assert (image.to_dask(0).compute()[0] == data).all()
try:
    import fastapi  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("fastapi is installed without the service extra")
from zstack_analyzer.client import Client  # the client needs only core dependencies
print(f"library alone: zstack-analyzer {zstack_analyzer.__version__} OK")
PY
pip_install "${wheel[0]}[service]"
"$VPY" - <<'PY'
from zstack_analyzer.service.app import create_app
from zstack_analyzer.service.config import Settings
import tempfile
app = create_app(Settings(data_dir=tempfile.mkdtemp(), api_token=None, database_url=None))
assert "/api/images/search" in app.openapi()["paths"]
print("service extra: the app builds OK")
PY
"$WORK/venv/bin/zstack" --help >/dev/null
# The plugin extras: bioio's discovery and napari's npe2 find our entry points in the wheel.
pip_install "${wheel[0]}[bioio]"
"$VPY" - <<'PY'
from bioio.plugins import get_plugins
plugins = get_plugins(use_cache=False)
assert any(p.entrypoint.name == "zstack-analyzer" for ps in plugins.values() for p in ps), plugins
print("bioio extra: bioio's plugin discovery lists zstack-analyzer OK")
PY
pip_install "${wheel[0]}[napari]"
"$VPY" - <<'PY'
from npe2 import PluginManager
manager = PluginManager.instance()
manager.discover()
manifest = manager.get_manifest("zstack-analyzer")
assert manifest.contributions.readers, manifest
print("napari extra: npe2 finds the zstack-analyzer manifest and its reader OK")
PY
echo "package-check: OK"
