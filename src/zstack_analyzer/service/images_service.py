"""What the routes share: reading an upload's metadata, building rows, finding images.

Why here and not in the routes: the routers stay thin (parse, call, respond),
and the CLI-free logic is testable on its own.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zstack_analyzer.confine import UnsafeFileError, inspect_confined, open_confined
from zstack_analyzer.service.change_markers import marked_since, touch_marker
from zstack_analyzer.service.db import crud
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import (
    ImageNotFoundError,
    ImportForbiddenError,
    NotRegularFileError,
    OriginalChangedError,
    OriginalMissingError,
    SourceNotFoundError,
)
from zstack_analyzer.service.format_label import format_variant
from zstack_analyzer.service.schemas import ImagePublic
from zstack_analyzer.vendor import json_safe

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from zstack_analyzer.filesets import SetState
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata, SceneInfo
    from zstack_analyzer.service.auth.labels import Labels
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
    "identity_of",
    "in_place_original",
    "in_place_record",
    "inspect_file",
    "json_safe",
    "missing_file_error",
    "open_in_place",
    "parse_image_id",
    "prune_tombstones",
    "readable_source",
    "regular_or_folder",
    "require_image",
    "resolve_import_path",
    "save_in_place",
    "signed64",
    "to_public",
    "write_tombstone",
]

logger = logging.getLogger(__name__)

#: ``stored_name`` of an in-place record: never a file in our storage (unique, like a uuid name).
IN_PLACE_PREFIX = "inplace-"
#: Tombstones of deleted ids are kept this long (far longer than RecordMemo's TTL).
TOMBSTONE_KEEP_S = 3600.0
#: A running server prunes old tombstones at most this often (on a delete).
TOMBSTONE_PRUNE_EVERY_S = 60.0
#: The file name suffix of a "moved" marker beside the tombstones (``<id>.changed``).
CHANGE_SUFFIX = ".changed"

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


def full_metadata(image: Image) -> dict[str, Any]:
    """Scene 0's metadata JSON with its scene list (stored once, in the ``scenes`` column)."""
    metadata = dict(image.image_metadata)
    metadata.setdefault("scenes", image.scenes)
    return metadata


def to_public(image: Image, labels: Labels | None = None) -> ImagePublic:
    """The API view of a row (``labels``: owner and group names)."""
    owner, group = labels.of(image) if labels is not None else (None, None)
    return ImagePublic(
        owner_id=image.owner_id,
        group_id=image.group_id,
        owner=owner,
        group=group,
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
        format_variant=format_variant(image.format, image.image_metadata),
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

    A move to another group changes who may see the row, so it may not wait for
    ``ttl_s``: the mover writes ``<deleted_dir>/<id>.changed`` (:meth:`mark_changed`,
    after the commit, its mtime set to the clock then) and every memo hit also
    stats that marker: a row fetched before the marker's time (less a margin;
    the clock rules are in :mod:`~zstack_analyzer.service.change_markers`) is
    fetched again. Without it, another server process kept showing a moved image
    to its old group for up to ``ttl_s``.

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
        #: id -> (monotonic time of the fetch, wall-clock ns when the fetch began, row)
        self._rows: OrderedDict[str, tuple[float, int, Image]] = OrderedDict()
        self._pruned_at: float | None = None
        self._prune_lock = threading.Lock()

    def _deleted_elsewhere(self, image: Image) -> bool:
        if self.deleted_dir is None:
            return False
        return os.path.lexists(self.deleted_dir / str(image.id))

    def _changed_elsewhere(self, image_id: str, fetched_ns: int) -> bool:
        """Whether a move was marked after (or about when) this row was fetched."""
        if self.deleted_dir is None:
            return False
        return marked_since(self.deleted_dir / f"{image_id}{CHANGE_SUFFIX}", fetched_ns)

    async def require(self, database: Database, image_id: str) -> Image:
        """The row for ``image_id`` (memoised), or :class:`ImageNotFoundError`."""
        now = time.monotonic()
        hit = self._rows.get(image_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            _, fetched_ns, row = hit
            if self._deleted_elsewhere(row):
                self._rows.pop(image_id, None)
                msg = f"no image with id {image_id!r}"
                raise ImageNotFoundError(msg)
            if not self._changed_elsewhere(image_id, fetched_ns):
                return row
        fetched_ns = time.time_ns()  # before the query: a move committed during it is "after"
        image: Image = await database.run(require_image, image_id)
        self._rows[image_id] = (now, fetched_ns, image)
        self._rows.move_to_end(image_id)
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
        return image

    def forget(self, image_id: str) -> None:
        """Drop ``image_id`` (called when this process deletes it)."""
        self._rows.pop(image_id, None)

    def mark_changed(self, image_id: str) -> None:
        """After a committed move: other processes' memos fetch ``image_id`` again.

        Blocking file work (one touch): call it in a worker thread. The marker's mtime is
        set explicitly to the clock now, not left to the file system's coarser clock.
        A marker that cannot be written (a read-only or full data dir) is logged as an
        ERROR and the move stands: it is committed, and this process has forgotten the
        row; other processes see it when their entries expire (``ttl_s``). A 500 would
        tell the caller that a committed move failed.
        """
        self.forget(image_id)
        if self.deleted_dir is None:
            return
        marker = self.deleted_dir / f"{image_id}{CHANGE_SUFFIX}"
        try:
            touch_marker(marker)
        except OSError as exc:
            logger.error(
                "image %s moved, but its change marker %s cannot be written (%s): other server "
                "processes may show it to its old group for up to %.0f s; make the data dir "
                "writable",
                image_id,
                marker,
                exc,
                self.ttl_s,
            )

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


def signed64(value: int) -> int:
    """``value`` (an unsigned 64-bit device or inode number) as the signed BIGINT we store."""
    return value - (1 << 64) if value >= 1 << 63 else value


def identity_of(st: os.stat_result) -> tuple[int, int]:
    """``(device, inode)`` of a stat result, as stored in ``source_dev`` / ``source_ino``."""
    return signed64(st.st_dev), signed64(st.st_ino)


def _changed_error(image: Image, source: Path, why: str) -> OriginalChangedError:
    msg = (
        f"{source}: the original changed since it was registered ({why}); "
        "ingest it again to refresh the record"
    )
    return OriginalChangedError(msg)


def in_place_original(image: Image) -> Path:
    """The original of an in-place record, checked against what was registered.

    So a changed or vanished file is reported, never rendered from stale pixels,
    and a file swapped for a symlink, a FIFO, a socket or a device (or for
    another file with the same size and mtime) is refused, never followed:

    - the registered path itself must not have become a symlink (it was
      resolved at registration), nor anything but a regular file or a folder;
    - what it leads to must lie inside the import roots (a parent folder
      swapped for a symlink out is caught here);
    - its device and inode must be those recorded at registration (rows from
      before migration 0005 have none: size and mtime only).

    Every later open beneath the roots is checked again where it lands
    (:mod:`zstack_analyzer.confine`).

    Raises
    ------
    OriginalMissingError
        The original is gone (410).
    OriginalChangedError
        It is no longer the registered file (409).
    """
    source = Path(image.source_path or "")
    try:
        link = source.lstat()
    except (FileNotFoundError, NotADirectoryError):
        msg = f"{source}: the original of image {image.id} is gone (moved or deleted)"
        raise OriginalMissingError(msg) from None
    if not (stat.S_ISREG(link.st_mode) or stat.S_ISDIR(link.st_mode)):
        kind = "symlink" if stat.S_ISLNK(link.st_mode) else "FIFO, socket or device"
        raise _changed_error(image, source, f"it is now a {kind}")
    try:
        st = inspect_confined(source, allow_dir=True)
    except UnsafeFileError as exc:
        raise _changed_error(image, source, exc.message) from None
    except (FileNotFoundError, NotADirectoryError):
        msg = f"{source}: the original of image {image.id} is gone (moved or deleted)"
        raise OriginalMissingError(msg) from None
    if image.source_ino is not None and identity_of(st) != (image.source_dev, image.source_ino):
        raise _changed_error(image, source, "another file now has its name")
    if stat.S_ISDIR(st.st_mode):
        # A folder image (OME-Zarr): its own mtime changes when entries are added or removed.
        changed = st.st_mtime_ns != image.source_mtime_ns
    else:
        changed = (st.st_size, st.st_mtime_ns) != (image.source_size, image.source_mtime_ns)
        if changed:
            state = set_state_of(source)
            if state is not None:
                # A multi-file image remembers its set's total size and newest mtime.
                changed = (state.size, state.mtime_ns) != (
                    image.source_size,
                    image.source_mtime_ns,
                )
                if changed:
                    detail = f"its files changed (size {image.source_size} -> {state.size})"
                    raise _changed_error(image, source, detail)
    if changed:
        raise _changed_error(image, source, f"size {image.source_size} -> {st.st_size}")
    return source


def set_state_of(path: Path) -> SetState | None:
    """Total size and newest mtime of the multi-file image ``path`` is the main file of.

    ``None`` when ``path`` is a single-file image (or a member, not the main file).
    """
    from zstack_analyzer.filesets import file_set, set_state

    files = file_set(path)
    if not files.is_multi or files.main != Path(os.path.abspath(path)):
        return None
    return set_state(files)


def open_in_place(image: Image) -> tuple[int, os.stat_result]:
    """A descriptor of an in-place record's original file, checked on the descriptor itself.

    What serves the original's bytes as they are (the download): checked like
    :func:`in_place_original`, then opened so that the descriptor is that very
    file (:func:`~zstack_analyzer.confine.open_confined`), whatever is swapped
    in under its name between the check and the open. The caller closes it.

    Raises
    ------
    OriginalMissingError, OriginalChangedError
        As :func:`in_place_original` (409 also for a swap during the open).
    """
    source = in_place_original(image)
    identity = (image.source_dev, image.source_ino) if image.source_ino is not None else None
    try:
        fd, st = open_confined(source, identity=None)
    except UnsafeFileError as exc:
        raise _changed_error(image, source, exc.message) from None
    except (FileNotFoundError, NotADirectoryError):
        msg = f"{source}: the original of image {image.id} is gone (moved or deleted)"
        raise OriginalMissingError(msg) from None
    same = (
        identity_of(st) == identity
        if identity is not None
        else (st.st_size, st.st_mtime_ns) == (image.source_size, image.source_mtime_ns)
    )
    if not same:
        os.close(fd)
        raise _changed_error(image, source, "replaced while it was opened")
    return fd, st


def regular_or_folder(path: Path, raw: str) -> os.stat_result:
    """``stat`` of ``path`` if it is a regular file or a folder; refuse anything else unopened.

    A FIFO opened for reading blocks until someone writes to it (two such
    registrations held both render workers); a device or socket is no image.
    ``stat`` never opens the file, so nothing here can block.

    Raises
    ------
    ImportForbiddenError
        A FIFO, socket or device (403, code ``not_a_regular_file``).
    """
    st = path.stat()
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
        )
        msg = f"{raw[:200]}: {kind}, not a regular file or folder"
        raise NotRegularFileError(msg)
    return st


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
    if "\x00" in raw:
        msg = f"{raw[:200]!r}: a path cannot hold a NUL character"
        raise ImportForbiddenError(msg)
    candidate = Path(raw)
    if not candidate.is_absolute():
        msg = f"{raw[:200]!r}: give an absolute path"
        raise ImportForbiddenError(msg)
    try:
        resolved = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        msg = f"{raw[:200]}: cannot be resolved ({exc})"
        raise ImportForbiddenError(msg) from None
    if not any(resolved.is_relative_to(root.resolve(strict=False)) for root in roots):
        msg = f"{raw[:200]}: outside the import roots ({', '.join(str(r) for r in roots)})"
        raise ImportForbiddenError(msg)
    try:
        regular_or_folder(resolved, raw)
    except (FileNotFoundError, NotADirectoryError):
        msg = f"{raw[:200]}: no such file or folder"
        raise SourceNotFoundError(msg) from None
    except OSError as exc:  # ELOOP, EACCES, ENAMETOOLONG: nothing to read there
        msg = f"{raw[:200]}: cannot be read ({exc.strerror or exc})"
        raise ImportForbiddenError(msg) from None
    return resolved


def find_present(
    session: Session,
    *,
    path: str,
    size: int,
    mtime_ns: int,
    in_place: bool,
    identity: tuple[int, int] | None = None,
) -> Image | None:
    """The record of ``path`` ingested with this size and mtime (in place or copied), if any.

    With ``identity`` (``(device, inode)``, :func:`identity_of`), a record that
    remembers another file is not this one: a file swapped for another with the
    same size and mtime is read again (and its record refreshed).
    """
    from sqlalchemy import and_, or_, select

    query = (
        select(Image)
        .where(Image.source_path == path)
        .where(Image.stored_in_place == in_place)
        .where(Image.source_mtime_ns == mtime_ns)
    )
    if size:  # a folder image has no size of its own
        query = query.where(Image.source_size == size)
    if identity is not None:
        query = query.where(
            or_(
                Image.source_ino.is_(None),
                and_(Image.source_dev == identity[0], Image.source_ino == identity[1]),
            )
        )
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
    identity: tuple[int, int] | None = None,
    owner_id: int | None = None,
    group_id: int | None = None,
) -> tuple[Image, bool, str | None]:
    """Create or refresh the in-place record of ``path``: ``(row, created, previous sha256)``.

    One function for the register route and the command-line ingest, so both
    write the same row. A refresh keeps the id (links stay valid), owner and
    group, and replaces everything read from the file; a new row gets
    ``owner_id`` and ``group_id``. ``identity`` is the original's
    ``(device, inode)`` (:func:`identity_of`).

    Concurrent calls for one path end with one row: the unique index on the
    in-place ``source_path`` (migration 0005) refuses the second insert, which
    then refreshes the row that won.
    """
    from sqlalchemy.exc import IntegrityError

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
    fresh.source_dev, fresh.source_ino = identity if identity is not None else (None, None)
    fresh.owner_id, fresh.group_id = owner_id, group_id
    existing = in_place_record(session, path)
    if existing is None:
        session.add(fresh)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # another request registered it meanwhile: refresh that row
            existing = in_place_record(session, path)
            if existing is None:
                raise
        else:
            return fresh, True, None
    previous = existing.sha256
    for column in (
        "format", "size_bytes", "sha256", "width", "height", "depth", "channels",
        "timepoints", "samples_per_pixel", "bit_depth", "dtype", "pixel_size_x",
        "pixel_size_y", "pixel_size_z", "image_metadata", "scenes", "source_size",
        "source_mtime_ns", "source_dev", "source_ino",
    ):  # fmt: skip
        setattr(existing, column, getattr(fresh, column))
    existing.thumbnail_ready = False
    session.commit()
    return existing, False, previous


def in_place_record(session: Session, path: str) -> Image | None:
    """The in-place record of ``path``, if one exists (whoever's it is; at most one, by index)."""
    from sqlalchemy import select

    return session.scalars(
        select(Image)
        .where(Image.source_path == path)
        .where(Image.stored_in_place == True)  # noqa: E712  (SQL, not Python)
        .order_by(Image.created_at)
        .limit(1)
    ).first()
