"""An image's annotations from Python: its ROIs, tags and key-value pairs.

Why a mixin of its own: :class:`~zstack_analyzer.client.images.Image` keeps
records, pictures and pixels; what people write *about* an image lives here,
on the same routes the viewer uses (``/api/images/{id}/rois``, ``/tags``,
``/key-values``), so the server's permission table applies unchanged (a
read-only group answers :class:`~zstack_analyzer.client.errors.ClientError`
with status 403 to a write).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zstack_analyzer.client._http import Transport

__all__ = ["AnnotationsMixin", "KeyValues"]

#: Key-value pairs as accepted by :meth:`AnnotationsMixin.set_key_values`: a mapping,
#: ``(key, value)`` pairs (keys may repeat), or dicts with ``key``, ``value``, ``namespace``.
KeyValues = Mapping[str, str] | Iterable[tuple[str, str] | Mapping[str, Any]]


def _pairs(values: KeyValues) -> list[dict[str, Any]]:
    items = values.items() if isinstance(values, Mapping) else values
    body: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Mapping):
            body.append({k: item[k] for k in ("key", "value", "namespace") if k in item})
        else:
            key, value = item
            body.append({"key": str(key), "value": str(value)})
    return body


class AnnotationsMixin:
    """ROIs, tags and key-value pairs of one image (needs ``id`` and ``_http``)."""

    id: str

    @property
    def _http(self) -> Transport:  # pragma: no cover - provided by Image
        raise NotImplementedError

    def rois(self) -> list[dict[str, Any]]:
        """Every ROI of the image, oldest first: ``id``, ``name``, ``scene``, ``shapes``, ...

        The shapes are the server's (``type``, pixel coordinates, ``z``, ``t``).
        """
        body = self._http.request("GET", f"/api/images/{self.id}/rois").json()
        data = body.get("data", []) if isinstance(body, dict) else body
        return list(data)

    def tags(self) -> list[str]:
        """The names of the image's tags."""
        body = self._http.request("GET", f"/api/images/{self.id}/tags").json()
        return [str(tag["name"]) for tag in body]

    def set_tags(self, names: Iterable[str]) -> list[str]:
        """Replace the image's tags by ``names`` (new names are created); the tags now."""
        wanted = [names] if isinstance(names, str) else list(names)
        body = self._http.request("PUT", f"/api/images/{self.id}/tags", json=wanted).json()
        return [str(tag["name"]) for tag in body]

    def key_values(self) -> list[dict[str, Any]]:
        """The image's key-value pairs in order: dicts with ``key``, ``value``, ``namespace``."""
        body = self._http.request("GET", f"/api/images/{self.id}/key-values").json()
        return [dict(item) for item in body]

    def set_key_values(self, values: KeyValues) -> list[dict[str, Any]]:
        """Replace the image's key-value pairs (a dict, or pairs when keys repeat); the pairs now."""
        body = self._http.request(
            "PUT", f"/api/images/{self.id}/key-values", json=_pairs(values)
        ).json()
        return [dict(item) for item in body]
