"""The demo archive (scripts/demo_archive.py): every stack shows both channels' blobs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_archive.py"


def _demo() -> Any:
    spec = importlib.util.spec_from_file_location("demo_archive", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_demo_stack_has_its_whole_dapi_blob_and_gfp_bar() -> None:
    """All 300 stacks of the README's archive: a channel lost to an edge looked like a bug."""
    demo = _demo()
    for relative, data in demo.demo_stacks(300):
        assert data.shape == (2, 8, 256, 256), relative
        dapi = data[0] >= 3100  # noise is < 300
        assert (dapi.sum(axis=(1, 2)) == 48 * 48).all(), relative
        gfp = data[1] >= 2100
        assert (gfp[2:6].sum(axis=(1, 2)) == 24 * 80).all(), relative
        assert not gfp[:2].any() and not gfp[6:].any(), relative
        # the bar lies inside the blob's rows, centred on the same place
        ys, xs = np.nonzero(gfp[2])
        yd, xd = np.nonzero(dapi[0])
        assert (ys.min() + ys.max(), xs.min() + xs.max()) == (
            yd.min() + yd.max(),
            xd.min() + xd.max(),
        )
