"""What the routes share: reading an upload's metadata, building rows, finding images.

Why here and not in the routes: the routers stay thin (parse, call, respond),
and the CLI-free logic is testable on its own.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from zstack_analyzer.service.db import crud
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import ImageNotFoundError
from zstack_analyzer.service.schemas import ImagePublic, ImageSummary
from zstack_analyzer.vendor import json_safe

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata, SceneInfo
    from zstack_analyzer.service.db.session import Database

__all__ = [
    "Inspection",
    "RecordMemo",
    "build_image",
    "inspect_file",
    "json_safe",
    "missing_file_error",
    "parse_image_id",
    "require_image",
    "to_public",
    "to_summary",
]

Inspection = tuple["ImageMetadata", list["SceneInfo"]]


def inspect_file(path: Path, limits: ReadLimits) -> Inspection:
    """Detect the format and read scene 0's metadata and the scene list (headers only)."""
    from zstack_analyzer import open_image

    with open_image(path, limits=limits) as reader:
        scenes = list(reader.scenes())
        metadata = reader.metadata(0)
    return metadata, scenes


def build_image(
    *,
    image_id: uuid.UUID,
    filename: str,
    stored_name: str,
    size_bytes: int,
    sha256: str,
    metadata: ImageMetadata,
    scenes: list[SceneInfo],
) -> Image:
    """A new row from an inspected upload."""
    physical = metadata.physical_size
    return Image(
        id=image_id,
        filename=filename,
        stored_name=stored_name,
        format=metadata.file_format,
        size_bytes=size_bytes,
        sha256=sha256,
        width=metadata.size_x,
        height=metadata.size_y,
        depth=metadata.size_z,
        channels=metadata.size_c,
        timepoints=metadata.size_t,
        samples_per_pixel=metadata.samples_per_pixel,
        bit_depth=metadata.bit_depth,
        dtype=metadata.dtype,
        pixel_size_x=physical.x_um,
        pixel_size_y=physical.y_um,
        pixel_size_z=physical.z_um,
        # The scene list is stored once (its own column) and put back by full_metadata().
        image_metadata={
            **json_safe(metadata.model_dump(mode="json", exclude={"scenes"})),
            "filename": filename,
        },
        scenes=[json_safe(scene.model_dump(mode="json")) for scene in scenes],
        thumbnail_ready=False,
    )


def _aware(value: datetime) -> datetime:
    """``value`` with its zone: SQLite hands back naive datetimes, stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def to_summary(image: Image) -> ImageSummary:
    """The list view of a row: summary columns only."""
    return ImageSummary(
        id=image.id,
        filename=image.filename,
        width=image.width,
        height=image.height,
        depth=image.depth,
        channels=image.channels,
        bit_depth=image.bit_depth,
        pixel_size_x=image.pixel_size_x,
        pixel_size_y=image.pixel_size_y,
        pixel_size_z=image.pixel_size_z,
        format=image.format,
        size_bytes=image.size_bytes,
        sha256=image.sha256,
        created_at=_aware(image.created_at),
        timepoints=image.timepoints,
        samples_per_pixel=image.samples_per_pixel,
        dtype=image.dtype,
        thumbnail_ready=image.thumbnail_ready,
        scene_count=max(len(image.scenes), 1),
    )


def full_metadata(image: Image) -> dict[str, Any]:
    """Scene 0's metadata JSON with its scene list (stored once, in the ``scenes`` column)."""
    metadata = dict(image.image_metadata)
    metadata.setdefault("scenes", image.scenes)
    return metadata


def to_public(image: Image) -> ImagePublic:
    """The API view of a row."""
    return ImagePublic(
        scene_count=max(len(image.scenes), 1),
        id=image.id,
        filename=image.filename,
        width=image.width,
        height=image.height,
        depth=image.depth,
        channels=image.channels,
        bit_depth=image.bit_depth,
        pixel_size_x=image.pixel_size_x,
        pixel_size_y=image.pixel_size_y,
        pixel_size_z=image.pixel_size_z,
        metadata=full_metadata(image),
        format=image.format,
        size_bytes=image.size_bytes,
        sha256=image.sha256,
        scenes=image.scenes,
        created_at=_aware(image.created_at),
        timepoints=image.timepoints,
        samples_per_pixel=image.samples_per_pixel,
        dtype=image.dtype,
        thumbnail_ready=image.thumbnail_ready,
    )


def parse_image_id(value: str) -> uuid.UUID:
    """The id as a UUID; anything else is an unknown image (404), not a validation error."""
    try:
        return uuid.UUID(value)
    except ValueError:
        msg = f"no image with id {value[:64]!r}"
        raise ImageNotFoundError(msg) from None


def require_image(session: Session, image_id: str) -> Image:
    """The row for ``image_id``, or :class:`ImageNotFoundError` (404)."""
    image = crud.get_image(session, parse_image_id(image_id))
    if image is None:
        msg = f"no image with id {image_id!r}"
        raise ImageNotFoundError(msg)
    return image


async def missing_file_error(database: Database, image_id: str, exc: OSError) -> Exception:
    """What to raise when a job could not open an image's file.

    Why: a delete removes the row, then the file. A render or metadata read
    queued behind it finds no file; the client gets 404 (the image is gone),
    exactly as if it had asked a moment later. A job that had already opened
    the file finishes from its open handle (POSIX keeps unlinked files readable).
    A file missing while its row exists is a server fault and stays a 500.
    """
    try:
        parsed = parse_image_id(image_id)
    except ImageNotFoundError as not_found:
        return not_found
    if await database.run(crud.get_image, parsed) is None:
        return ImageNotFoundError(f"no image with id {image_id!r} (deleted meanwhile)")
    return exc


class RecordMemo:
    """A short-lived, per-process memo of image rows for the picture routes.

    Why: a cached thumbnail is a few syscalls, and a database round trip in a
    worker thread doubled its latency. Rows never change after upload, so the
    only staleness is a delete made by another server process, bounded by
    ``ttl_s`` (a delete in this process forgets the row at once).
    """

    def __init__(self, *, ttl_s: float = 5.0, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._rows: OrderedDict[str, tuple[float, Image]] = OrderedDict()

    async def require(self, database: Database, image_id: str) -> Image:
        """The row for ``image_id`` (memoised), or :class:`ImageNotFoundError`."""
        now = time.monotonic()
        hit = self._rows.get(image_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        image: Image = await database.run(require_image, image_id)
        self._rows[image_id] = (now, image)
        self._rows.move_to_end(image_id)
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
        return image

    def forget(self, image_id: str) -> None:
        """Drop ``image_id`` (called when this process deletes it)."""
        self._rows.pop(image_id, None)


def scene_sizes(image: Image, scene: int) -> dict[str, Any]:
    """The stored SceneInfo JSON of ``scene`` (scene 0 falls back to the summary columns)."""
    if 0 <= scene < len(image.scenes):
        return dict(image.scenes[scene])
    if scene == 0:
        return {
            "size_t": image.timepoints,
            "size_c": image.channels,
            "size_z": image.depth,
            "size_y": image.height,
            "size_x": image.width,
        }
    return {}
