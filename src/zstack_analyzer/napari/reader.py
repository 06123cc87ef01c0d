"""The npe2 reader contribution: ``viewer.open(path, plugin="zstack-analyzer")``.

Scenes: every scene of the file becomes its own layers, named
``"<scene>: <channel>"`` when there are several; scene 0 is shown and the
others are added hidden (tick a layer's eye to see it), so nothing is read from
them until then except the few reduced planes of their contrast windows. A file
of more than :data:`MAX_SCENES` scenes (a plate) opens its first
:data:`MAX_SCENES`; :func:`scene_layer_data` opens any other one from Python.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from zstack_analyzer.errors import UnsupportedFormatError
from zstack_analyzer.napari.layers import scene_layers

if TYPE_CHECKING:
    from collections.abc import Callable

    from zstack_analyzer.napari.layers import LayerData

__all__ = ["MAX_SCENES", "get_reader", "read_path", "scene_layer_data"]

logger = logging.getLogger(__name__)

#: Most scenes of one file opened as layers at once.
MAX_SCENES = 16


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Napari's reader hook: :func:`read_path` when our library reads ``path``, else ``None``.

    Decided by content (:func:`~zstack_analyzer.registry.detect_reader`), as the
    library decides, so a ``.tif`` napari's own reader would take is ours only
    when asked for by plugin name or preferred; ``None`` lets napari try others.
    """
    from zstack_analyzer.registry import detect_reader

    paths = [path] if isinstance(path, str) else list(path)
    if not paths:
        return None
    try:
        for one in paths:
            detect_reader(one)
    except (UnsupportedFormatError, FileNotFoundError, OSError):
        return None
    except Exception:  # a corrupt file is ours to report when read, not to hide here
        logger.debug("zstack-analyzer: %s detected with an error", paths, exc_info=True)
    return read_path


def read_path(path: str | list[str]) -> list[LayerData]:
    """The layer data of every file in ``path``: each scene's channels as layers.

    Raises the library's typed errors (corrupt file, missing reader package...),
    which napari shows as the reason the file did not open.
    """
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for one in paths:
        layers.extend(_file_layers(one))
    return layers


def _file_layers(path: str) -> list[LayerData]:
    from zstack_analyzer.loader import open_image

    # Not closed here: the lazy arrays read through the reader for as long as napari
    # holds them; the reader closes its handles when they are dropped.
    reader = open_image(path if "://" in path else Path(path))
    count = len(reader.scenes())
    if count > MAX_SCENES:
        logger.warning(
            "%s: %d scenes; opening the first %d (scene_layer_data opens any other)",
            reader.path.name,
            count,
            MAX_SCENES,
        )
    layers: list[LayerData] = []
    for scene in range(min(count, MAX_SCENES)):
        prefix = None
        if count > 1:
            from zstack_analyzer.zarr.ngff import scene_title

            prefix = scene_title(reader.metadata(scene), scenes=count)
        layers.extend(scene_layers(reader, scene, prefix=prefix, visible=scene == 0))
    return layers


def scene_layer_data(path: str | Path, scene: int) -> list[LayerData]:
    """The layers of one ``scene`` of ``path``, shown: ``viewer._add_layer_from_data(*ld)``.

    Example: ``for data, kwargs, kind in scene_layer_data("plate.czi", 40):
    viewer.add_image(data, **kwargs)``.
    """
    from zstack_analyzer.loader import open_image
    from zstack_analyzer.zarr.ngff import scene_title

    reader = open_image(Path(path))
    count = len(reader.scenes())
    reader.scene_info(scene)  # SceneNotFoundError for a scene the file lacks
    prefix = scene_title(reader.metadata(scene), scenes=count) if count > 1 else None
    return scene_layers(reader, scene, prefix=prefix, visible=True)
