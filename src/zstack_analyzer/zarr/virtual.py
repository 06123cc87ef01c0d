"""A virtual OME-Zarr (NGFF 0.4, zarr v2 keys) of any file we read, made on request.

Why virtual: a stored image becomes readable by napari, vizarr, neuroglancer
or zarr itself by URL, with no conversion step and no second copy on disk.

Layout (keys relative to the store root)::

    .zgroup, .zattrs           scene 0 as an image; its levels are the arrays "0/0", "0/1", ...
    {scene}/.zgroup, .zattrs   scene ``scene`` as an image, levels "0", "1", ...
    {scene}/{level}/.zarray
    {scene}/{level}/{t}/{c}/{z}/{cy}/{cx}   a chunk: raw little-endian bytes, C order

Seen as a collection (``collection=True``, the bioformats2raw layout that
``zstack convert --all-scenes`` writes) the same keys serve every scene; only
the root differs: it is no image but ``{"bioformats2raw.layout": 3}``, and
``OME/.zgroup``, ``OME/.zattrs`` (``series``) and ``OME/METADATA.ome.xml``
list the scenes, so generic clients (napari-ome-zarr, vizarr) find them all.

Why scene 0's levels live under "0/": the URL of scene ``n`` is ``{root}/{n}/``,
so a level of scene 0 named "1" at the root would be the same key as scene 1.
NGFF dataset paths are relative paths, so "0/1" is as valid as "1".

Level-0 chunks are the file's planes or tiles (read through
:class:`~zstack_analyzer.zarr.source.SceneSource`). A lower level is the
file's own reduced level when it stores one of exactly that size (pyramidal
OME-TIFF, slides); otherwise a chunk of it is the 2x reduction of the region of
the level above that it covers, kept in the render cache so each is computed
once per file.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.errors import LimitExceededError
from zstack_analyzer.zarr.keys import parse_index
from zstack_analyzer.zarr.ngff import (
    display_windows,
    multiscales_attrs,
    omero_attrs,
    scene_layout,
    scene_title,
)
from zstack_analyzer.zarr.ome_xml import collection_ome_xml
from zstack_analyzer.zarr.pyramid import downsample2x
from zstack_analyzer.zarr.source import SceneSource

if TYPE_CHECKING:
    from zstack_analyzer.cache import RenderCache
    from zstack_analyzer.readers._base import ImageReader
    from zstack_analyzer.zarr.ngff import SceneLayout

__all__ = ["BIOFORMATS2RAW_LAYOUT", "STORE_VERSION", "VirtualOmeZarr"]

logger = logging.getLogger(__name__)

#: Part of every ETag: bump when the bytes served for a key change (vz2: display
#: windows, display names, the bioformats2raw collection).
STORE_VERSION = "vz2"
#: Part of the cache key of a computed chunk: bump when a reduced level's pixels change.
CHUNK_CACHE_VERSION = "vz1"
#: Part of the cache key of a scene's display windows: bump when their computation changes.
WINDOW_CACHE_VERSION = "vzw1"
#: The ``bioformats2raw.layout`` version the collection follows (as bioformats2raw 0.9 writes).
BIOFORMATS2RAW_LAYOUT = 3
_JSON = {"indent": None, "separators": (",", ":"), "sort_keys": True}


def _json(value: Any) -> bytes:
    return json.dumps(value, **_JSON).encode()  # type: ignore[arg-type]


class VirtualOmeZarr:
    """The keys of the virtual store of one open file.

    ``get(key)`` returns the bytes of a key or raises ``KeyError`` for a key
    the store does not have (an HTTP 404: zarr clients probe for keys).

    Parameters
    ----------
    reader
        The open file.
    cache
        Where chunks of reduced levels are kept (``None``: computed each time).
    identity
        Content identity of the file (the upload's SHA-256 in the service).

    Names: a scene the file names keeps its name; an unnamed one is called by
    the ``name`` given to :meth:`get` (the name the user uploaded or registered,
    since the stored file's own name may be a content hash), with `` #n``
    (1-based, as Bio-Formats names series) when the file has several scenes.

    Examples
    --------
    >>> store = VirtualOmeZarr(reader, cache=None, identity="ab12")  # doctest: +SKIP
    >>> json.loads(store.get("0/0/.zarray"))["chunks"]  # doctest: +SKIP
    [1, 1, 1, 1024, 1024]
    """

    def __init__(self, reader: ImageReader, *, cache: RenderCache | None, identity: str) -> None:
        self.reader = reader
        self.cache = cache
        self.identity = identity
        self._sources: dict[int, SceneSource] = {}
        self._layouts: dict[int, SceneLayout] = {}
        self._file_levels: dict[int, dict[int, int]] = {}
        self._windows: dict[int, list[tuple[float, float]]] = {}
        self._windows_lock = threading.Lock()
        self._ome_xml: dict[str | None, str] = {}

    # ------------------------------------------------------------------ scenes
    def source(self, scene: int) -> SceneSource:
        """The :class:`SceneSource` of ``scene`` (``KeyError`` when it does not exist)."""
        if scene not in self._sources:
            if not 0 <= scene < len(self.reader.scenes()):
                raise KeyError(scene)
            self._sources[scene] = SceneSource(self.reader, scene)
        return self._sources[scene]

    def layout(self, scene: int) -> SceneLayout:
        """The NGFF layout of ``scene``."""
        if scene not in self._layouts:
            source = self.source(scene)
            self._layouts[scene] = scene_layout(source.metadata, file_tile=source.file_tile())
        return self._layouts[scene]

    def file_level(self, scene: int, level: int) -> int | None:
        """The file's own resolution level with exactly the shape of our ``level``, if any.

        Why: a slide or pyramidal OME-TIFF already stores reduced levels; serving
        them (their own tiles) spares decoding the whole full-resolution plane
        to make the first, smallest view.
        """
        if scene not in self._file_levels:
            ours = self.layout(scene).levels
            theirs = self.source(scene).file_level_shapes()
            self._file_levels[scene] = {
                ours.index(shape): index
                for index, shape in enumerate(theirs)
                if index and shape in ours
            }
        return self._file_levels[scene].get(level)

    # ------------------------------------------------------------------ keys
    def get(self, key: str, *, name: str | None = None, collection: bool = False) -> bytes:
        """The bytes of ``key``; ``KeyError`` when the store has no such key.

        ``name`` names unnamed scenes (default: the file's name); ``collection``
        serves the root as a bioformats2raw collection instead of scene 0.
        """
        parts = key.strip("/").split("/")
        if collection and (parts in ([".zgroup"], [".zattrs"]) or parts[0] == "OME"):
            return self._collection_key(parts, name=name)
        if parts in ([".zgroup"], [".zattrs"]):
            return self._group_key(0, parts[0], prefix="0/", name=name)
        scene = parse_index(parts[0])
        if scene is None:
            raise KeyError(key)
        rest = parts[1:]
        if rest in ([".zgroup"], [".zattrs"]):
            return self._group_key(scene, rest[0], prefix="", name=name)
        level = parse_index(rest[0]) if len(rest) >= 2 else None
        if level is None:
            raise KeyError(key)
        layout = self.layout(scene)
        if not 0 <= level < len(layout.levels):
            raise KeyError(key)
        if rest[1:] == [".zarray"]:
            return _json(self.zarray(scene, level))
        if rest[1:] == [".zattrs"]:
            return b"{}"
        indices = [parse_index(p) for p in rest[1:]]
        if len(rest) != 6 or None in indices:
            raise KeyError(key)
        t, c, z, cy, cx = (int(i) for i in indices if i is not None)
        return self.chunk(scene, level, t, c, z, cy, cx)

    def _group_key(self, scene: int, key: str, *, prefix: str, name: str | None) -> bytes:
        if key == ".zgroup":
            self.layout(scene)  # KeyError for a missing scene
            return _json({"zarr_format": 2})
        return _json(self.attrs(scene, prefix=prefix, name=name))

    def _collection_key(self, parts: list[str], *, name: str | None) -> bytes:
        """A key of the collection's own: its root, and the ``OME`` group listing the series."""
        if parts == [".zgroup"] or parts == ["OME", ".zgroup"]:
            return _json({"zarr_format": 2})
        if parts == [".zattrs"]:
            return _json({"bioformats2raw.layout": BIOFORMATS2RAW_LAYOUT})
        series = range(len(self.reader.scenes()))
        if parts == ["OME", ".zattrs"]:
            return _json({"series": [str(scene) for scene in series]})
        if parts == ["OME", "METADATA.ome.xml"]:
            return self.ome_xml(name=name).encode()
        raise KeyError("/".join(parts))

    def ome_xml(self, *, name: str | None = None) -> str:
        """``OME/METADATA.ome.xml``: every scene as an ``Image`` (``Image:n`` is group ``n``).

        Kept per ``name``: a file of many scenes (a plate) would otherwise be
        described scene by scene on every request.
        """
        xml = self._ome_xml.get(name)
        if xml is None:
            series = []
            for scene in range(len(self.reader.scenes())):
                layout = self.layout(scene)
                metadata = self.source(scene).metadata
                omero = omero_attrs(metadata, layout)["omero"]
                labels = [channel["label"] for channel in omero["channels"]]
                series.append((self.scene_name(scene, name), layout, labels))
            xml = collection_ome_xml(series)
            self._ome_xml[name] = xml
        return xml

    def scene_name(self, scene: int, name: str | None = None) -> str:
        """The name of ``scene``: the file's own, else ``name`` (``#n`` when there are several)."""
        metadata = self.source(scene).metadata
        return scene_title(metadata, name=name, scenes=len(self.reader.scenes()))

    def windows(self, scene: int) -> list[tuple[float, float]]:
        """The 1-99 % display window of each channel of ``scene``, as ``zstack convert`` writes.

        Computed once from the smallest level (at most 512 px a side, a few
        planes per channel: bounded memory whatever the file's size), then kept
        here and in the render cache, so neither a second request nor a restart
        reads the pixels again.
        """
        with self._windows_lock:
            if scene in self._windows:
                return self._windows[scene]
            key = f"{WINDOW_CACHE_VERSION}-windows-s{scene}"
            windows = self._cached_windows(key)
            if windows is None:
                layout = self.layout(scene)
                top = len(layout.levels) - 1
                ny, nx = layout.levels[top]
                windows = display_windows(
                    layout, lambda c, z: self._region(scene, top, 0, c, z, 0, ny, 0, nx)
                )
                if self.cache is not None:
                    self.cache.put(self.identity, key, _json(windows))
            self._windows[scene] = windows
            return windows

    def _windows_if_affordable(self, scene: int) -> list[tuple[float, float]] | None:
        """:meth:`windows`, or ``None`` (the full value range) when sampling is over the decode limits.

        Why: a file in huge strips can make even its smallest level cost more
        than a request may decode (422 on that level's chunks); its group
        attributes must still answer, or no client could open level 0 either.
        Nothing is cached, so a later request under a larger budget computes them.
        """
        try:
            return self.windows(scene)
        except LimitExceededError:
            return None

    def _cached_windows(self, key: str) -> list[tuple[float, float]] | None:
        if self.cache is None:
            return None
        data = self.cache.get(self.identity, key)
        if data is None:
            return None
        try:
            return [(float(lo), float(hi)) for lo, hi in json.loads(data)]
        except (ValueError, TypeError):
            return None  # a damaged entry: compute again

    def attrs(self, scene: int, *, prefix: str = "", name: str | None = None) -> dict[str, Any]:
        """The group attributes of ``scene``: ``multiscales`` (paths under ``prefix``) and ``omero``."""
        layout = self.layout(scene)
        metadata = self.source(scene).metadata
        title = self.scene_name(scene, name)
        multiscales = multiscales_attrs(layout, name=title, version="0.4")
        for dataset in multiscales["multiscales"][0]["datasets"]:
            dataset["path"] = prefix + dataset["path"]
        omero = omero_attrs(
            metadata, layout, windows=self._windows_if_affordable(scene), name=title
        )
        return {
            **multiscales,
            **omero,
            "zstack": {
                "scenes": len(self.reader.scenes()),
                "scene": scene,
                "warnings": [*layout.warnings],
            },
        }

    def zarray(self, scene: int, level: int) -> dict[str, Any]:
        """The ``.zarray`` of a level: uncompressed chunks, little-endian, C order."""
        layout = self.layout(scene)
        return {
            "zarr_format": 2,
            "shape": list(layout.level_shape(level)),
            "chunks": list(layout.level_chunks(level)),
            "dtype": layout.dtype.newbyteorder("<").str,
            "compressor": None,
            "fill_value": 0,
            "order": "C",
            "filters": None,
            "dimension_separator": "/",
        }

    # ------------------------------------------------------------------ chunks
    def chunk_grid(self, scene: int, level: int) -> tuple[int, int, int, int, int]:
        """Number of chunks along T, C, Z, Y, X of a level."""
        layout = self.layout(scene)
        shape, chunks = layout.level_shape(level), layout.level_chunks(level)
        t, c, z, y, x = (math.ceil(s / k) for s, k in zip(shape, chunks, strict=True))
        return (t, c, z, y, x)

    def chunk(self, scene: int, level: int, t: int, c: int, z: int, cy: int, cx: int) -> bytes:
        """The bytes of one chunk (full chunk size: edge chunks are padded with 0)."""
        grid = self.chunk_grid(scene, level)
        if not all(0 <= v < n for v, n in zip((t, c, z, cy, cx), grid, strict=True)):
            raise KeyError((scene, level, t, c, z, cy, cx))
        layout = self.layout(scene)
        ch, cw = layout.level_chunks(level)[3:]
        data = self._chunk_array(scene, level, t, c, z, cy, cx)
        if data.shape != (ch, cw):
            padded = np.zeros((ch, cw), dtype=data.dtype)
            padded[: data.shape[0], : data.shape[1]] = data
            data = padded
        return np.ascontiguousarray(data, dtype=layout.dtype.newbyteorder("<")).tobytes()

    def _cache_key(self, scene: int, level: int, t: int, c: int, z: int, cy: int, cx: int) -> str:
        return f"{CHUNK_CACHE_VERSION}-s{scene}-l{level}-{t}-{c}-{z}-{cy}-{cx}"

    def _chunk_array(
        self, scene: int, level: int, t: int, c: int, z: int, cy: int, cx: int
    ) -> np.ndarray:
        """The chunk's pixels, unpadded (edge chunks are smaller)."""
        layout = self.layout(scene)
        ch, cw = layout.level_chunks(level)[3:]
        ny, nx = layout.levels[level]
        y0, x0 = cy * ch, cx * cw
        y1, x1 = min(ny, y0 + ch), min(nx, x0 + cw)
        if level == 0:
            return self.source(scene).read_region(t, c, z, y0, y1, x0, x1)
        file_level = self.file_level(scene, level)
        if file_level is not None:
            return self.source(scene).read_region(t, c, z, y0, y1, x0, x1, level=file_level)
        key = self._cache_key(scene, level, t, c, z, cy, cx)
        dtype = layout.dtype
        if self.cache is not None:
            cached = self.cache.get(self.identity, key)
            if cached is not None and len(cached) == (y1 - y0) * (x1 - x0) * dtype.itemsize:
                return np.frombuffer(cached, dtype=dtype).reshape(y1 - y0, x1 - x0)
        py, px = layout.levels[level - 1]
        above = self._region(
            scene, level - 1, t, c, z, 2 * y0, min(py, 2 * y1), 2 * x0, min(px, 2 * x1)
        )
        data = downsample2x(above)[: y1 - y0, : x1 - x0]
        data = np.ascontiguousarray(data)
        if self.cache is not None:
            self.cache.put(self.identity, key, data.tobytes())
        return data

    def _region(
        self, scene: int, level: int, t: int, c: int, z: int, y0: int, y1: int, x0: int, x1: int
    ) -> np.ndarray:
        """Rows y0:y1, columns x0:x1 of a level, assembled from its chunks."""
        layout = self.layout(scene)
        if level == 0:
            return self.source(scene).read_region(t, c, z, y0, y1, x0, x1)
        file_level = self.file_level(scene, level)
        if file_level is not None:
            return self.source(scene).read_region(t, c, z, y0, y1, x0, x1, level=file_level)
        ch, cw = layout.level_chunks(level)[3:]
        out = np.empty((y1 - y0, x1 - x0), dtype=layout.dtype)
        for cy in range(y0 // ch, (y1 - 1) // ch + 1):
            for cx in range(x0 // cw, (x1 - 1) // cw + 1):
                block = self._chunk_array(scene, level, t, c, z, cy, cx)
                by, bx = cy * ch, cx * cw
                sy0, sy1 = max(y0, by), min(y1, by + block.shape[0])
                sx0, sx1 = max(x0, bx), min(x1, bx + block.shape[1])
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = block[
                    sy0 - by : sy1 - by, sx0 - bx : sx1 - bx
                ]
        return out
