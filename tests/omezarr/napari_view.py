"""Run by ``test_napari.py`` in its own process: open a URL in napari, report what it shows.

Usage: ``python napari_view.py URL PLUGIN`` with ``DISPLAY`` set (Xvfb). Prints one
JSON line: the layers' names and contrast limits, and the RGB of the canvas centre.

Why a separate process: napari owns a Qt application and its event loop, and
imports plugins that warn at import; the test process stays free of both.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(url: str, plugin: str) -> None:
    """Open ``url`` with ``plugin`` as ``napari --plugin PLUGIN URL`` does, then screenshot."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    try:
        layers = viewer.open(url, plugin=plugin)
        viewer.reset_view()
        QApplication.processEvents()
        shot = np.asarray(viewer.screenshot(canvas_only=True, flash=False))
        h, w = shot.shape[:2]
        centre = shot[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3, :3].reshape(-1, 3)
        report = {
            "layers": [
                {
                    "name": layer.name,
                    "contrast_limits": [float(v) for v in layer.contrast_limits],
                    "shape": [int(s) for s in layer.data[0].shape],
                    "multiscale": bool(layer.multiscale),
                }
                for layer in layers
            ],
            "centre": [float(v) for v in centre.mean(axis=0)],
            "canvas": [int(h), int(w)],
        }
    finally:
        viewer.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
