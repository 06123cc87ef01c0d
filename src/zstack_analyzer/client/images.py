"""Images on the server as Python objects: records, pictures, lazy pixels, originals.

Why lazy pixels through the virtual OME-Zarr: a notebook asking for one
plane of a 20 GB stack fetches that plane's chunks only; dask builds the
array from the same store napari reads, and our OME-Zarr reader maps it onto
the library's canonical T, C, Z, Y, X, so ``to_dask`` has the loader's shape.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from zstack_analyzer.client.annotations import AnnotationsMixin
from zstack_analyzer.client.errors import ClientError, RemoteSceneNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import dask.array as da
    from PIL.Image import Image as PILImage

    from zstack_analyzer.client._http import Transport

__all__ = ["Image", "Images"]

_DOWNLOAD_CHUNK = 1 << 20


class _ProgressFile(io.RawIOBase):
    """A read-only file that reports how much of it was read (the upload's progress)."""

    def __init__(self, raw: BinaryIO, total: int, callback: Callable[[int, int], None]) -> None:
        super().__init__()
        self._raw = raw
        self.total = total
        self.sent = 0
        self._callback = callback

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._raw.seek(offset, whence)
        self.sent = position
        return position

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.sent += len(data)
            self._callback(self.sent, self.total)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class Image(AnnotationsMixin):
    """One image of the server: its record, and what the API makes of it (annotations too).

    Attributes
    ----------
    id
        The image's id (a UUID string).
    record
        The record as the server returned it (a list's summary or the full record).
    """

    def __init__(self, images: Images, record: dict[str, Any]) -> None:
        self._images = images
        self.record = record
        self.id = str(record["id"])
        self._metadata: dict[str, Any] | None = None

    @property
    def _http(self) -> Transport:
        return self._images.transport

    @property
    def filename(self) -> str:
        """The original file's name."""
        return str(self.record.get("filename", ""))

    @property
    def format(self) -> str:
        """The detected format ("CZI", "OME-TIFF", ...)."""
        return str(self.record.get("format", ""))

    def __repr__(self) -> str:
        return f"<Image {self.id} {self.filename!r} {self.format}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def metadata(self) -> dict[str, Any]:
        """The full metadata of scene 0 (``GET /api/images/{id}/metadata``), fetched once."""
        if self._metadata is None:
            body = self._http.request("GET", f"/api/images/{self.id}/metadata").json()
            self._metadata = body if isinstance(body, dict) else {}
        return self._metadata

    def refresh(self) -> Image:
        """Fetch the full record again (``thumbnail_ready`` and the metadata may change)."""
        self.record = self._http.request("GET", f"/api/images/{self.id}").json()
        self._metadata = None
        return self

    def thumbnail(
        self,
        width: int = 256,
        height: int = 256,
        *,
        z_slice: int | None = None,
        image_format: str = "png",
        as_pil: bool = False,
    ) -> bytes | PILImage:
        """The server's thumbnail: PNG (or ``image_format``) bytes, or a PIL image."""
        params: dict[str, Any] = {"width": width, "height": height, "format": image_format}
        if z_slice is not None:
            params["z_slice"] = z_slice
        data = self._http.request("GET", f"/api/images/{self.id}/thumbnail", params=params).content
        if not as_pil:
            return data
        from PIL import Image as PILModule

        picture = PILModule.open(io.BytesIO(data))
        picture.load()
        return picture

    def quality(self, scene: int = 0) -> dict[str, Any]:
        """Focus, exposure and signal of ``scene`` per channel (``GET .../quality``).

        The same structure as :meth:`zstack_analyzer.readers._base.ImageReader.quality`
        on a local file; ``status`` is ``"pending"`` until the server's background
        job has measured the image, ``"failed"`` (with ``error``) when it could not.
        """
        body = self._http.request(
            "GET", f"/api/images/{self.id}/quality", params={"scene": scene}
        ).json()
        return body if isinstance(body, dict) else {}

    def zarr_url(self, scene: int = 0) -> str:
        """URL of the virtual OME-Zarr of ``scene`` (what napari or zarr can open)."""
        suffix = "" if scene == 0 else f"{scene}/"
        return f"{self._http.base_url}/api/images/{self.id}/zarr/{suffix}"

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy T, C, Z, Y, X pixels of ``scene`` at pyramid ``level``, chunk by chunk.

        Needs the ``zarr`` extra. Nothing is fetched but the store's metadata until
        the array (or part of it) is computed.
        """
        scenes = int(self.record.get("scene_count") or 1)
        if not 0 <= scene < scenes:
            msg = f"{self.filename}: scene {scene} does not exist; the image has {scenes}"
            raise RemoteSceneNotFoundError(msg, status=0, code="out_of_range")
        try:
            import aiohttp  # noqa: F401  (fsspec's http filesystem)
            import zarr  # noqa: F401
        except ImportError as exc:
            from zstack_analyzer.errors import MissingDependencyError

            msg = f"image.to_dask() reads the server's OME-Zarr with zarr: pip install 'zstack-analyzer[zarr]' ({exc})"
            raise MissingDependencyError(msg, package="zstack-analyzer[zarr]") from exc
        from zstack_analyzer.zarr.reader import OmeZarrReader

        options = {"headers": dict(self._http.headers)} if self._http.headers else {}
        reader = OmeZarrReader(self.zarr_url(scene), storage_options=options)
        return reader.to_dask(0, level)

    def download(
        self, path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None
    ) -> Path:
        """Stream the original file to ``path`` (a directory: under its original name)."""
        target = Path(path)
        if target.is_dir():
            target = target / Path(self.filename).name
        partial = target.with_name(target.name + ".part")
        with self._http.stream("GET", f"/api/images/{self.id}/download") as response:
            total = int(response.headers.get("content-length") or 0)
            done = 0
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(_DOWNLOAD_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        partial.replace(target)
        return target

    def delete(self) -> None:
        """Delete the image on the server."""
        self._images.delete(self)

    def _repr_html_(self) -> str:
        """A notebook's view: the thumbnail and a table of the main metadata."""
        try:
            data = self.thumbnail()
            assert isinstance(data, bytes)  # noqa: S101  (as_pil is False)
            picture = (
                f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" '
                'style="max-width:256px;image-rendering:pixelated">'
            )
        except ClientError as exc:
            picture = f"<em>no thumbnail: {html.escape(str(exc))}</em>"
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._summary_rows()
        )
        return (
            "<div style='display:flex;gap:1em;align-items:flex-start'>"
            f"<div>{picture}</div><table>{rows}</table></div>"
        )

    def _summary_rows(self) -> list[tuple[str, str]]:
        md = self.metadata
        rows = [("id", self.id), ("file", self.filename), ("format", self.format)]
        dims = "".join(
            f"{axis}={md[key]} " for axis, key in zip("TCZYX", _SIZE_KEYS, strict=True) if key in md
        )
        rows.append(("dimensions", dims.strip()))
        if "dtype" in md:
            rows.append(("dtype", str(md["dtype"])))
        size = md.get("physical_size") or {}
        if isinstance(size, dict):
            parts = [f"{a}={size[a]:g}" for a in ("x", "y", "z") if isinstance(size.get(a), float)]
            if parts:
                rows.append(("pixel size (µm)", ", ".join(parts)))
        channels = md.get("channels") or []
        if isinstance(channels, list) and channels:
            names = [str(c.get("name") or i) for i, c in enumerate(channels) if isinstance(c, dict)]
            rows.append(("channels", ", ".join(names)))
        objective = md.get("objective")
        if isinstance(objective, dict) and objective.get("name"):
            rows.append(("objective", str(objective["name"])))
        return rows


_SIZE_KEYS = ("size_t", "size_c", "size_z", "size_y", "size_x")


class Images:
    """``client.images``: list, search, get, upload, register and delete images."""

    def __init__(self, transport: Transport, *, page_size: int = 500) -> None:
        self.transport = transport
        self.page_size = page_size

    def _pages(self, url: str, params: dict[str, Any]) -> Iterator[Image]:
        skip = 0
        while True:
            query = {**params, "skip": skip, "limit": self.page_size}
            body = self.transport.request("GET", url, params=query).json()
            data = body.get("data") or []
            for record in data:
                yield Image(self, record)
            skip += len(data)
            if not data or skip >= int(body.get("count", 0)):
                return

    def list(self, *, q: str | None = None, group: str | None = None) -> Iterator[Image]:
        """Every image, newest first (filename substring ``q``), paged to the end."""
        params = {k: v for k, v in {"q": q, "group": group}.items() if v is not None}
        return self._pages("/api/images/", params)

    def search(
        self,
        q: str | None = None,
        *,
        format: str | None = None,
        channel: str | None = None,
        objective: str | None = None,
        magnification: float | None = None,
        immersion: str | None = None,
        min_size_z: int | None = None,
        max_size_z: int | None = None,
        pixel_size_min_um: float | None = None,
        pixel_size_max_um: float | None = None,
        acquired_after: str | None = None,
        acquired_before: str | None = None,
        group: str | None = None,
    ) -> Iterator[Image]:
        """Images matching the filters of ``GET /api/images/search``, newest first, to the end.

        Pages are fetched as the iterator is consumed (``page_size`` per request).
        """
        filters = {
            "q": q,
            "format": format,
            "channel": channel,
            "objective": objective,
            "magnification": magnification,
            "immersion": immersion,
            "min_size_z": min_size_z,
            "max_size_z": max_size_z,
            "pixel_size_min_um": pixel_size_min_um,
            "pixel_size_max_um": pixel_size_max_um,
            "acquired_after": acquired_after,
            "acquired_before": acquired_before,
            "group": group,
        }
        params = {k: v for k, v in filters.items() if v is not None}
        return self._pages("/api/images/search", params)

    def count(self, **filters: Any) -> int:
        """How many images match the search ``filters`` (one request)."""
        params = {k: v for k, v in filters.items() if v is not None}
        body = self.transport.request(
            "GET", "/api/images/search", params={**params, "limit": 1}
        ).json()
        return int(body.get("total", body.get("count", 0)))

    def get(self, image_id: str) -> Image:
        """The image with this id (its full record)."""
        return Image(self, self.transport.request("GET", f"/api/images/{image_id}").json())

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> Image:
        """Upload a file (streamed from disk); ``progress(sent, total)`` is called as it goes."""
        source = Path(path)
        total = source.stat().st_size
        with source.open("rb") as raw:
            body: BinaryIO = raw
            if progress is not None:
                body = _ProgressFile(raw, total, progress)  # type: ignore[assignment]

            def rewind() -> None:
                body.seek(0)

            response = self.transport.request(
                "POST",
                "/api/images/upload",
                files={"file": (source.name, body, "application/octet-stream")},
                rewind=rewind,
            )
        return Image(self, response.json()["image_stack"])

    def register(self, path: str) -> Image:
        """Register a file the server sees under its import roots, in place (no copy)."""
        response = self.transport.request("POST", "/api/images/register", json={"path": path})
        return Image(self, response.json()["image_stack"])

    def delete(self, image: Image | str) -> None:
        """Delete an image (by object or id)."""
        image_id = image.id if isinstance(image, Image) else str(image)
        self.transport.request("DELETE", f"/api/images/{image_id}")
