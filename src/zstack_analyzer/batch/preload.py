"""What a LocalCluster's workers have loaded before their first task: imported by the forkserver.

Why: a worker process that starts bare imports the readers, the format packages,
the renderer and the quality kernels (numba, its compiled code loaded from the
disk cache) on its first file: about 1.5 s of CPU, paid again by every worker.
:func:`zstack_analyzer.batch.runner.open_runner` names this module in the
forkserver's preload list, so the server process pays it once and every worker
forks from it with all of that in memory, as the workers of a plain fork-based
process pool inherit what their parent imported.

Importing this module never raises: the forkserver dies on any error other than
an ImportError, and a missing optional package only means that worker imports
it (or not) on first use, as before.
"""

from __future__ import annotations

import contextlib
import importlib
import logging

__all__ = ["FORMAT_PACKAGES", "warm"]

logger = logging.getLogger(__name__)

#: Third-party modules the common formats' readers import when they open a file.
FORMAT_PACKAGES = (
    "tifffile",
    "imagecodecs",
    "pylibCZIrw.czi",
    "xmltodict",
    "defusedxml.ElementTree",
    "PIL.Image",
    "PIL.PngImagePlugin",
)


def warm() -> None:
    """Import what :func:`~zstack_analyzer.batch.tasks.process_file` imports on first use.

    Also runs the quality measure on a tiny 16-bit plane: numba loads a kernel's
    machine code on its first call, not at import.
    """
    try:
        import numpy as np

        from zstack_analyzer.batch import tasks  # noqa: F401  (the task itself)
        from zstack_analyzer.cache import RenderCache  # noqa: F401
        from zstack_analyzer.quality import measure_plane
        from zstack_analyzer.registry import reader_classes
        from zstack_analyzer.render import encode, thumbnails  # noqa: F401

        reader_classes()
        for name in FORMAT_PACKAGES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        measure_plane(np.arange(64, dtype=np.uint16).reshape(8, 8))
    except Exception:  # a worker then does it on its first task: slower, never wrong
        logger.debug("batch preload incomplete", exc_info=True)


warm()
