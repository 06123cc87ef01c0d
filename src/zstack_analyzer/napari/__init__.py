"""napari plugin ``zstack-analyzer``: our readers and the server's images as napari layers.

Why a subpackage that the library never imports: napari (and Qt) are an
optional extra (``pip install zstack-analyzer[napari]``). Only the widget
module imports napari or magicgui, and only when napari loads it; the layer
builders here return plain ``(data, kwargs, "image")`` tuples, napari's
LayerData, so they are usable (and testable) without a viewer.

Contributions (``napari.yaml``): a reader for every suffix the library reads
(:func:`zstack_analyzer.napari.reader.get_reader`) and the "Open from a zstack
server" widget (:class:`zstack_analyzer.napari.widget.ServerWidget`).
"""

from __future__ import annotations

__all__: list[str] = []
