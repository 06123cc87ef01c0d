"""The "Open from a zstack server" dock widget (magicgui, so it runs on any Qt binding).

Why magicgui: napari ships it, its widgets are plain Python objects (a test
sets ``widget.url.value`` and calls :meth:`ServerWidget.search`, as a click
does), and napari docks a magicgui ``Container`` as it is.

The work is in :mod:`zstack_analyzer.napari.remote`; this module only lays
it out and reports errors in its status line (never a traceback dialog).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    Label,
    LineEdit,
    Password,
    PushButton,
    SpinBox,
)

from zstack_analyzer.errors import ZstackError
from zstack_analyzer.napari.remote import Hit, image_layers, search_images

if TYPE_CHECKING:
    import napari

__all__ = ["ServerWidget"]


class ServerWidget(Container[Any]):
    """Server URL and token, the gallery's search filters, a result list and "Open".

    ``napari_viewer`` is injected by napari when the widget is docked from the
    Plugins menu.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.url = LineEdit(label="Server", value="http://127.0.0.1:8000")
        self.token = Password(label="Token", value="")
        self.q = LineEdit(label="Search", value="")
        self.format = LineEdit(label="Format", value="")
        self.channel = LineEdit(label="Channel", value="")
        self.objective = LineEdit(label="Objective", value="")
        self.search_button = PushButton(text="Search")
        self.results = ComboBox(label="Images", choices=[])
        self.scene = SpinBox(label="Scene", value=0, min=0, max=100_000)
        self.open_button = PushButton(text="Open")
        self.status = Label(value="")
        self.hits: list[Hit] = []
        self.extend(
            [
                self.url,
                self.token,
                self.q,
                self.format,
                self.channel,
                self.objective,
                self.search_button,
                self.results,
                self.scene,
                self.open_button,
                self.status,
            ]
        )
        self.search_button.changed.connect(self.search)
        self.open_button.changed.connect(self.open_selected)

    def search(self, *_: Any) -> list[Hit]:
        """Run the search with the filters as typed; list the hits (errors go to the status)."""
        try:
            hits = search_images(
                self.url.value,
                self.token.value or None,
                q=self.q.value,
                format=self.format.value,
                channel=self.channel.value,
                objective=self.objective.value,
            )
        except ZstackError as exc:
            self.status.value = str(exc)
            return []
        self.hits = hits
        self.results.choices = [(hit.label, hit.id) for hit in hits]
        self.status.value = f"{len(hits)} image(s)"
        return hits

    def open_selected(self, *_: Any) -> list[Any]:
        """Add the chosen image's scene to the viewer as lazy layers; returns the layers."""
        image_id = self.results.value
        if not image_id:
            self.status.value = "Search, then choose an image"
            return []
        hit = next((h for h in self.hits if h.id == image_id), None)
        name = hit.filename if hit is not None else None
        if hit is not None and hit.scene_count > 1:
            name = f"{name} #{int(self.scene.value) + 1}"
        try:
            data = image_layers(
                self.url.value,
                image_id,
                self.token.value or None,
                scene=int(self.scene.value),
                name=name,
            )
        except ZstackError as exc:
            self.status.value = str(exc)
            return []
        layers: list[Any] = []
        for array, kwargs, _kind in data:
            added = self.viewer.add_image(array, **kwargs)
            layers.extend(added if isinstance(added, list) else [added])
        self.status.value = f"opened {name or image_id}"
        return layers
