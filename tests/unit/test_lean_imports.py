"""A lazy open imports dask.array without xarray, pandas and scipy, and dask behaves the same.

Why: ``import dask.array`` imports xarray (hence pandas) and scipy when they are
installed, only to recognise their types; that was 50 MiB of the 129 MiB peak
RSS of a process that lazily opens one file (bench record ``lazy-open/c``).
``zstack_analyzer._dask_import`` leaves them for later. Each check runs in a
fresh interpreter, since which modules a process has imported is process state.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.needs import unavailable
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer._dask_import import _Hide

DEFERRED = ("xarray", "pandas", "scipy")


def _needs_deferred_packages() -> None:
    # Without them installed the first test would pass whatever the code does.
    missing = [p for p in ("xarray", "scipy") if importlib.util.find_spec(p) is None]
    if missing:
        unavailable(f"needs {', '.join(missing)} installed (the dev extra brings them)")


def _run(code: str, *args: str) -> dict[str, object]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_LAZY_OPEN = """
import asyncio, json, sys
import numpy as np
from zstack_analyzer import ImageLoader
array, md = asyncio.run(ImageLoader().load_image(sys.argv[1], lazy=True))
after_open = sorted(m for m in ("xarray", "pandas", "scipy") if m in sys.modules)
plane = np.asarray(array[1, 3].compute())  # timepoint 0: C, Z, Y, X
print(json.dumps({
    "type": type(array).__module__,
    "after_open": after_open,
    "after_compute": sorted(m for m in ("xarray", "pandas", "scipy") if m in sys.modules),
    "checksum": int(plane.astype(np.int64).sum()),
}))
"""


def test_a_lazy_open_and_a_plane_import_neither_xarray_pandas_nor_scipy(tmp_path: Path) -> None:
    _needs_deferred_packages()
    stack = encoded_stack(1, 2, 4, 32, 48)
    path = write_ome_tiff(tmp_path / "s.ome.tif", [stack])
    out = _run(_LAZY_OPEN, str(path))
    assert out["type"] == "dask.array.core"
    assert out["checksum"] == int(stack[0, 1, 3].astype(np.int64).sum())
    assert out["after_open"] == []
    assert out["after_compute"] == []


# What dask does with xarray and scipy types, and every module global the import of
# dask.array left behind (modules by name, scalars by value, containers by length).
_PROBE = """
import json, sys, types, warnings
from zstack_analyzer._dask_import import dask_array
mode = sys.argv[1]
if mode.startswith("xarray-first"):
    import xarray
before = set(sys.modules)
if mode.endswith("plain"):
    import dask.array
else:
    dask_array()
window = sorted(set(sys.modules) - before - {"__main__", "__mp_main__"})

import numpy as np
import scipy.fftpack
import scipy.sparse as sp
import xarray as xr
import dask.array as da
from dask.array.chunk_types import is_valid_array_chunk, is_valid_chunk_type

x = da.ones(4, chunks=2)
probes = {
    "from_array(DataArray of dask) is its data": da.from_array(xr.DataArray(x)) is x,
    "from_array(DataArray of numpy)": type(da.from_array(xr.DataArray(np.arange(3))).compute()).__name__,
    "chunk types": [is_valid_chunk_type(t) for t in (sp.csr_matrix, sp.coo_matrix, sp.csr_array, np.ndarray, list)],
    "array chunks": [is_valid_array_chunk(a) for a in (sp.csr_matrix(np.eye(2)), sp.csr_array(np.eye(2)), np.eye(2), [1])],
}
s = da.from_array(sp.csr_matrix(np.eye(4)), chunks=2, asarray=False)
probes["sparse blocks doubled"] = (s * 2).compute().toarray().tolist()
probes["sparse meta"] = type(s._meta).__name__
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    da.fft.fft_wrap(scipy.fftpack.fft)
probes["fftpack warnings"] = [w.category.__name__ for w in caught]

state = {}
for name in window:
    module = sys.modules.get(name)
    if module is None:
        continue
    for key, value in list(vars(module).items()):
        if key.startswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            state[f"{name}:{key}"] = "module " + value.__name__
        elif isinstance(value, (bool, str, type(None))):
            state[f"{name}:{key}"] = repr(value)
        elif isinstance(value, (list, tuple, set, frozenset, dict)):
            state[f"{name}:{key}"] = f"{type(value).__name__} of {len(value)}"
        else:
            state[f"{name}:{key}"] = type(value).__name__
print(json.dumps({"probes": probes, "window": window, "state": state}, default=str))
"""

#: What differs after the lean import, and why it is the same to dask (see _dask_import).
_STAND_INS = {
    "dask.array.core:xr",  # xarray once imported
    "dask.array.fft:scipy",  # scipy on first attribute use; dask tests it against None
    "dask.array.chunk_types:_HANDLED_CHUNK_TYPES",  # one class stands for spmatrix and sparray
    "dask.array.chunk_types:scipy",  # names only chunk_types' own registration used
    "dask.array.chunk_types:sparray",
}


@pytest.mark.parametrize("mode", ["lean", "xarray-first"])
def test_dask_behaves_as_after_a_plain_import(mode: str) -> None:
    """Same answers about xarray and scipy types; no other module global differs."""
    _needs_deferred_packages()
    plain = _run(_PROBE, "plain" if mode == "lean" else f"{mode}-plain")
    other = _run(_PROBE, mode)
    assert other["probes"] == plain["probes"]
    assert plain["probes"]["chunk types"] == [True, True, True, True, False]  # type: ignore[index]
    assert plain["probes"]["from_array(DataArray of dask) is its data"] is True  # type: ignore[index]
    a, b = plain["state"], other["state"]
    assert isinstance(a, dict)
    assert isinstance(b, dict)
    both = set(plain["window"]) & set(other["window"])  # type: ignore[arg-type]
    differ = {
        key for key in set(a) | set(b) if key.split(":")[0] in both and a.get(key) != b.get(key)
    }
    if mode == "lean":
        assert differ <= _STAND_INS, sorted(differ - _STAND_INS)
        assert not set(other["window"]) & set(DEFERRED)  # type: ignore[arg-type]
    else:  # xarray was there already: only scipy is left for later
        assert differ <= _STAND_INS - {"dask.array.core:xr"}, sorted(differ)


def test_packages_are_hidden_from_the_importing_thread_only() -> None:
    """Another thread importing xarray while dask.array is imported gets it as usual."""
    hide = _Hide(["xarray"])
    with pytest.raises(ModuleNotFoundError):
        hide.find_spec("xarray.core", None)
    assert hide.find_spec("numpy", None) is None
    seen: list[object] = []
    other = threading.Thread(target=lambda: seen.append(hide.find_spec("xarray", None)))
    other.start()
    other.join()
    assert seen == [None]


_NEEDS_WHAT_IS_HIDDEN = """
import json, sys
from zstack_analyzer import _dask_import
# As a dask release that imports a hidden package unconditionally would: dask itself hidden.
assert "dask.array" not in sys.modules
failed = _dask_import._import_hiding(("dask",))
left = sorted(m for m in sys.modules if m.split(".")[0] == "dask")
da = _dask_import.dask_array()  # then the plain way
print(json.dumps({
    "failed": failed is None,
    "left": left,
    "sum": int(da.ones((2, 3), chunks=1).sum().compute()),
    "finders": sum(type(f).__name__ == "_Hide" for f in sys.meta_path),
}))
"""


def test_a_dask_that_needs_a_hidden_package_is_imported_plainly() -> None:
    """The lean import failing costs memory, never the open: nothing half-imported is left."""
    found = _run(_NEEDS_WHAT_IS_HIDDEN)
    assert found == {"failed": True, "left": [], "sum": 6, "finders": 0}
