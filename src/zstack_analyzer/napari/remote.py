"""A zstack server's images as napari layers: search, then open the virtual OME-Zarr lazily.

Why through ``/api/images/{id}/zarr/`` and zarr over HTTP: the server makes
each chunk from the original file on request, and dask asks only for the
chunks napari shows, so opening a 10 GB stack fetches a few hundred kilobytes.
The bearer token goes in every request's header (fsspec's ``headers``). Names,
colours and 1-99 % windows come from the store's ``omero`` block and scales from
its ``multiscales`` (the server computed both from the file), so a served image
looks as the same file opened locally.

No napari import here (plain layer data); the widget
(:mod:`zstack_analyzer.napari.widget`) calls these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from zstack_analyzer.errors import ZstackError

if TYPE_CHECKING:
    from zstack_analyzer.napari.layers import LayerData

__all__ = [
    "SEARCH_FIELDS",
    "Hit",
    "ServerError",
    "image_layers",
    "search_images",
    "zarr_url",
]

#: Filters of ``GET /api/images/search`` the widget offers (the gallery's).
SEARCH_FIELDS = ("q", "format", "channel", "objective")
#: Seconds for one search request (connect and read).
TIMEOUT_S = 30.0
_UNITS = {"micrometer": "micrometer", "second": "second"}


class ServerError(ZstackError):
    """The server refused or could not be reached; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result, as the widget lists it."""

    id: str
    filename: str
    format: str
    scene_count: int

    @property
    def label(self) -> str:
        """``name (FORMAT, n scenes)`` for a list entry."""
        scenes = f", {self.scene_count} scenes" if self.scene_count > 1 else ""
        return f"{self.filename} ({self.format}{scenes})"


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _problem(response: httpx.Response) -> str:
    """The problem+json ``detail`` (or the start of the body) of a refused request."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:500]
    return str(body)[:500]


def search_images(
    url: str,
    token: str | None = None,
    *,
    limit: int = 100,
    transport: httpx.BaseTransport | None = None,
    **filters: str | None,
) -> list[Hit]:
    """The images of ``GET {url}/api/images/search`` matching ``filters`` (newest first).

    ``filters`` are the search's query parameters (``q``, ``format``,
    ``channel``, ``objective``...); empty ones are left out.

    Raises
    ------
    ServerError
        When the server is unreachable or answers with an error (its detail).
    """
    params = {k: v for k, v in filters.items() if v not in (None, "")}
    params["limit"] = str(limit)
    base = url.rstrip("/")
    try:
        with httpx.Client(
            base_url=base, headers=_headers(token), timeout=TIMEOUT_S, transport=transport
        ) as client:
            response = client.get("/api/images/search", params=params)
    except httpx.HTTPError as exc:
        msg = f"{base}: cannot reach the server: {exc}"
        raise ServerError(msg) from exc
    if response.status_code != 200:
        msg = f"{base}: search refused ({response.status_code}): {_problem(response)}"
        raise ServerError(msg)
    return [
        Hit(
            id=str(item["id"]),
            filename=str(item.get("filename") or item["id"]),
            format=str(item.get("format") or ""),
            scene_count=int(item.get("scene_count") or 1),
        )
        for item in response.json().get("data", [])
    ]


def zarr_url(url: str, image_id: str, scene: int = 0) -> str:
    """The virtual OME-Zarr of ``scene`` of an image (``/zarr/`` is scene 0)."""
    base = f"{url.rstrip('/')}/api/images/{image_id}/zarr/"
    return base if scene == 0 else f"{base}{scene}/"


def image_layers(
    url: str,
    image_id: str,
    token: str | None = None,
    *,
    scene: int = 0,
    name: str | None = None,
) -> list[LayerData]:
    """Layer data of one served image scene: lazy multiscale dask arrays, one layer per channel.

    Raises
    ------
    ServerError
        When the store cannot be opened (no such image, no access, not reachable).
    """
    import dask.array as da
    import zarr

    location = zarr_url(url, image_id, scene)
    try:
        group = zarr.open_group(
            location,
            mode="r",
            zarr_format=2,
            storage_options={"headers": _headers(token)},
        )
        attrs: dict[str, Any] = dict(group.attrs)
        multiscale = attrs["multiscales"][0]
        arrays: list[Any] = [group[dataset["path"]] for dataset in multiscale["datasets"]]
    except Exception as exc:  # zarr, fsspec and aiohttp errors alike
        msg = f"{location}: cannot open the image's OME-Zarr: {exc}"
        raise ServerError(msg) from exc
    axes = [axis["name"] for axis in multiscale["axes"]]
    levels = [da.from_zarr(array) for array in arrays]
    scale0 = next(
        t["scale"]
        for t in multiscale["datasets"][0]["coordinateTransformations"]
        if t["type"] == "scale"
    )
    units = [axis.get("unit") for axis in multiscale["axes"]]
    keep = [i for i, axis in enumerate(axes) if axis != "c"]
    omero = attrs.get("omero", {})
    channels = omero.get("channels", [])
    size_c = int(arrays[0].shape[axes.index("c")]) if "c" in axes else 1
    title = name or omero.get("name") or multiscale.get("name") or image_id
    labels = [
        str(channels[i].get("label") or f"C{i}") if i < len(channels) else f"C{i}"
        for i in range(size_c)
    ]
    kwargs: dict[str, Any] = {
        "scale": [float(scale0[i]) for i in keep],
        "units": [_UNITS.get(units[i] or "", "pixel") for i in keep],
        "axis_labels": [axes[i] for i in keep],
        "multiscale": len(levels) > 1,
        "name": [f"{title}: {label}" for label in labels],
        "metadata": {"url": location, "image_id": image_id, "scene": scene},
        "blending": "additive" if size_c > 1 else "translucent",
    }
    if channels:
        from zstack_analyzer.napari.layers import colormap_of

        kwargs["colormap"] = [colormap_of(f"#{ch.get('color') or 'FFFFFF'}") for ch in channels]
        kwargs["contrast_limits"] = [
            [float(ch["window"]["start"]), float(ch["window"]["end"])] for ch in channels
        ]
    data: Any = levels if len(levels) > 1 else levels[0]
    if "c" in axes:
        kwargs["channel_axis"] = axes.index("c")
    else:
        kwargs["name"] = kwargs["name"][0]
    return [(data, kwargs, "image")]
