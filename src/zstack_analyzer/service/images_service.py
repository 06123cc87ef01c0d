"""What the routes share: reading an upload's metadata, building rows, finding images.

Why here and not in the routes: the routers stay thin (parse, call, respond),
and the CLI-free logic is testable on its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zstack_analyzer.service.db import crud
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import (
    ImageNotFoundError,
    ImportForbiddenError,
    OriginalChangedError,
    OriginalMissingError,
    SourceNotFoundError,
)
from zstack_analyzer.service.schemas import ImagePublic, ImageSummary
from zstack_analyzer.vendor import json_safe

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata, SceneInfo
    from zstack_analyzer.service.db.session import Database
    from zstack_analyzer.storage.base import ObjectStorage
    from zstack_analyzer.storage.remote import RemoteObject

__all__ = [
    "IN_PLACE_PREFIX",
    "TOMBSTONE_KEEP_S",
    "Inspection",
    "RecordMemo",
    "build_image",
    "find_present",
    "in_place_original",
    "inspect_file",
    "json_safe",
    "missing_file_error",
    "parse_image_id",
    "prune_tombstones",
    "readable_source",
    "require_image",
    "resolve_import_path",
    "save_in_place",
    "to_public",
    "to_summary",
    "write_tombstone",
]

logger = logging.getLogger(__name__)

#: ``stored_name`` of an in-place record: never a file in our storage (unique, like a uuid name).
IN_PLACE_PREFIX = "inplace-"
#: Tombstones of deleted ids are kept this long (far longer than RecordMemo's TTL).
TOMBSTONE_KEEP_S = 3600.0
#: A running server prunes old tombstones at most this often (on a delete).
TOMBSTONE_PRUNE_EVERY_S = 60.0

Inspection = tuple["ImageMetadata", list["SceneInfo"]]


def inspect_file(path: Path, limits: ReadLimits) -> Inspection:
    """Detect the format and read scene 0's metadata and the scene list (headers only).

    The same function the batch tasks use (ingest, register), so records agree.
    """
    from zstack_analyzer.batch.tasks import inspect_path

    return inspect_path(path, limits)


def build_image(
    *,
    image_id: uuid.UUID,
    filename: str,
    stored_name: str,
    size_bytes: int,
    sha256: str,
    metadata: ImageMetadata,
    scenes: list[SceneInfo],
    stored_in_place: bool = False,
    source_path: str | None = None,
    source_size: int | None = None,
    source_mtime_ns: int | None = None,
) -> Image:
    """A new row from an inspected file (upload, in-place registration or ingest)."""
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
        stored_in_place=stored_in_place,
        source_path=source_path,
        source_size=source_size,
        source_mtime_ns=source_mtime_ns,
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
        stored_in_place=bool(image.stored_in_place),
        source_path=image.source_path if image.stored_in_place else None,
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
        stored_in_place=bool(image.stored_in_place),
        source_path=image.source_path if image.stored_in_place else None,
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
    worker thread doubled its latency. Rows change only by a delete or by an
    in-place refresh (which changes ``sha256``, hence every ETag). A delete made
    by *another* server process is seen at once through its tombstone: every
    memo hit checks for ``<deleted_dir>/<id>`` (one ``stat`` of the shared data
    dir, written before the row is deleted), so no process serves a deleted
    record. Without a ``deleted_dir`` the staleness is bounded by ``ttl_s``.
    A refresh made elsewhere is seen within ``ttl_s`` (5 s).

    Tombstones are written by :meth:`tombstone` and outlive every memo entry
    by far (``keep_s``, an hour, against ``ttl_s``); older ones are pruned
    while the server runs, at most every ``prune_every_s`` (one directory
    scan), so the folder holds about an hour of deletes, not every delete
    since the last start.
    """

    def __init__(
        self,
        *,
        ttl_s: float = 5.0,
        max_entries: int = 4096,
        deleted_dir: Path | None = None,
        keep_s: float = TOMBSTONE_KEEP_S,
        prune_every_s: float = TOMBSTONE_PRUNE_EVERY_S,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.deleted_dir = deleted_dir
        self.keep_s = keep_s
        self.prune_every_s = prune_every_s
        self._rows: OrderedDict[str, tuple[float, Image]] = OrderedDict()
        self._pruned_at: float | None = None
        self._prune_lock = threading.Lock()

    def _deleted_elsewhere(self, image: Image) -> bool:
        if self.deleted_dir is None:
            return False
        return os.path.lexists(self.deleted_dir / str(image.id))

    async def require(self, database: Database, image_id: str) -> Image:
        """The row for ``image_id`` (memoised), or :class:`ImageNotFoundError`."""
        now = time.monotonic()
        hit = self._rows.get(image_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            if not self._deleted_elsewhere(hit[1]):
                return hit[1]
            self._rows.pop(image_id, None)
            msg = f"no image with id {image_id!r}"
            raise ImageNotFoundError(msg)
        image: Image = await database.run(require_image, image_id)
        self._rows[image_id] = (now, image)
        self._rows.move_to_end(image_id)
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
        return image

    def forget(self, image_id: str) -> None:
        """Drop ``image_id`` (called when this process deletes it)."""
        self._rows.pop(image_id, None)

    def tombstone(self, image_id: uuid.UUID) -> int:
        """Write the tombstone of ``image_id`` (before its row goes); prune old ones if due.

        Returns how many old tombstones were removed (0 when no prune was due).
        Blocking file work: call it in a worker thread.
        """
        if self.deleted_dir is None:
            return 0
        write_tombstone(self.deleted_dir, image_id)
        now = time.monotonic()
        with self._prune_lock:
            if self._pruned_at is not None and now - self._pruned_at < self.prune_every_s:
                return 0
            self._pruned_at = now
        return prune_tombstones(self.deleted_dir, keep_s=self.keep_s)


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


def write_tombstone(deleted_dir: Path, image_id: uuid.UUID) -> None:
    """Mark ``image_id`` deleted for every server process sharing the data dir (before the row goes)."""
    deleted_dir.mkdir(parents=True, exist_ok=True)
    (deleted_dir / str(image_id)).touch()


def prune_tombstones(deleted_dir: Path, *, keep_s: float = TOMBSTONE_KEEP_S) -> int:
    """Remove tombstones older than ``keep_s`` (at start-up, then by :meth:`RecordMemo.tombstone`); how many went."""
    if not deleted_dir.is_dir():
        return 0
    cutoff = time.time() - keep_s
    removed = 0
    with os.scandir(deleted_dir) as entries:
        for entry in entries:
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def readable_source(image: Image, storage: ObjectStorage) -> Path | RemoteObject:
    """What a reader opens for ``image``: a local file, or the object in the bucket.

    The one join point every route that reads an image goes through:

    - an in-place record: its original, checked (:func:`in_place_original`);
    - local storage, or an object already in the local cache: that file;
    - object storage, a format whose reader reads by ranges (the TIFF family,
      zipped OME-Zarr; the record's ``format`` says) and no cached copy: the
      :class:`~zstack_analyzer.storage.remote.RemoteObject`, read in place by
      ranged GETs, so a large stack is never downloaded whole to draw a plane;
    - any other format (CZI, ND2, LIF, DICOM, OIB...): a local copy, fetched
      into the bounded cache if needed.

    It may stat or download, so call it in a worker thread, never on the event loop.

    Raises
    ------
    OriginalMissingError
        The in-place original is gone (410).
    OriginalChangedError
        Its size or mtime differ from the registered ones (409).
    """
    from zstack_analyzer.registry import reads_remote

    if image.stored_in_place:
        return in_place_original(image)
    if reads_remote(image.format):
        local = storage.cached_copy(image.stored_name)
        if local is not None:
            return local
        remote = storage.remote_object(image.stored_name)
        if remote is not None:
            return remote
    return storage.path(image.stored_name)


def in_place_original(image: Image) -> Path:
    """The original of an in-place record, checked against what was registered.

    So a changed or vanished file is reported, never rendered from stale pixels.

    Raises
    ------
    OriginalMissingError
        The original is gone (410).
    OriginalChangedError
        Its size or mtime differ from the registered ones (409).
    """
    source = Path(image.source_path or "")
    try:
        st = source.stat()
    except (FileNotFoundError, NotADirectoryError):
        msg = f"{source}: the original of image {image.id} is gone (moved or deleted)"
        raise OriginalMissingError(msg) from None
    if source.is_dir():
        # A folder image (OME-Zarr): its own mtime changes when entries are added or removed.
        changed = st.st_mtime_ns != image.source_mtime_ns
    else:
        changed = (st.st_size, st.st_mtime_ns) != (image.source_size, image.source_mtime_ns)
    if changed:
        msg = (
            f"{source}: the original changed since it was registered "
            f"(size {image.source_size} -> {st.st_size}); ingest it again to refresh the record"
        )
        raise OriginalChangedError(msg)
    return source


def resolve_import_path(raw: str, roots: Sequence[Path]) -> Path:
    """``raw`` resolved (symlinks and ``..``) and checked against the import roots.

    Raises
    ------
    ImportForbiddenError
        In-place import is off (no roots) or the resolved path is outside them (403).
    SourceNotFoundError
        The path does not exist (404); checked after the roots, so nothing is
        revealed about paths outside them.
    """
    if not roots:
        msg = "in-place import is off on this server (set ZSTACK_IMPORT_ROOTS)"
        raise ImportForbiddenError(msg)
    candidate = Path(raw)
    if not candidate.is_absolute():
        msg = f"{raw[:200]!r}: give an absolute path"
        raise ImportForbiddenError(msg)
    resolved = candidate.resolve(strict=False)
    if not any(resolved.is_relative_to(root.resolve(strict=False)) for root in roots):
        msg = f"{raw[:200]}: outside the import roots ({', '.join(str(r) for r in roots)})"
        raise ImportForbiddenError(msg)
    if not resolved.exists():
        msg = f"{raw[:200]}: no such file or folder"
        raise SourceNotFoundError(msg)
    return resolved


def find_present(
    session: Session, *, path: str, size: int, mtime_ns: int, in_place: bool
) -> Image | None:
    """The record of ``path`` ingested with this size and mtime (in place or copied), if any."""
    from sqlalchemy import select

    query = (
        select(Image)
        .where(Image.source_path == path)
        .where(Image.stored_in_place == in_place)
        .where(Image.source_mtime_ns == mtime_ns)
    )
    if size:  # a folder image has no size of its own
        query = query.where(Image.source_size == size)
    return session.scalars(query.limit(1)).first()


def save_in_place(
    session: Session,
    *,
    path: str,
    size: int,
    mtime_ns: int,
    sha256: str,
    metadata: ImageMetadata,
    scenes: list[SceneInfo],
) -> tuple[Image, bool, str | None]:
    """Create or refresh the in-place record of ``path``: ``(row, created, previous sha256)``.

    One function for the register route and the command-line ingest, so both
    write the same row. A refresh keeps the id (links stay valid) and replaces
    everything read from the file.
    """
    from sqlalchemy import select

    fresh = build_image(
        image_id=uuid.uuid4(),
        filename=Path(path).name,
        stored_name=f"{IN_PLACE_PREFIX}{uuid.uuid4().hex}",
        size_bytes=size,
        sha256=sha256,
        metadata=metadata,
        scenes=scenes,
        stored_in_place=True,
        source_path=path,
        source_size=size,
        source_mtime_ns=mtime_ns,
    )
    existing = session.scalars(
        select(Image)
        .where(Image.source_path == path)
        .where(Image.stored_in_place == True)  # noqa: E712  (SQL, not Python)
        .order_by(Image.created_at)
        .limit(1)
    ).first()
    if existing is None:
        session.add(fresh)
        session.commit()
        return fresh, True, None
    previous = existing.sha256
    for column in (
        "format", "size_bytes", "sha256", "width", "height", "depth", "channels",
        "timepoints", "samples_per_pixel", "bit_depth", "dtype", "pixel_size_x",
        "pixel_size_y", "pixel_size_z", "image_metadata", "scenes", "source_size",
        "source_mtime_ns",
    ):  # fmt: skip
        setattr(existing, column, getattr(fresh, column))
    existing.thumbnail_ready = False
    session.commit()
    return existing, False, previous
