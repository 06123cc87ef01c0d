"""``zstack quality --missing`` and the admin backfill: measure images that have no quality yet.

Why resumable by construction: each image's rows are committed as soon as it
is measured (or its failure is recorded), and the next batch is asked of the
database again, so a run stopped anywhere picks up where it left off and never
measures an image twice. Records made before quality existed, and uploads
whose background job did not run the measures (a thumbnail request rendered
first, a dask cluster rendered it), are what this finds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zstack_analyzer.errors import ZstackError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.quality import SceneQuality
    from zstack_analyzer.service.children import ChildProcesses
    from zstack_analyzer.service.config import Settings
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.db.session import Database
    from zstack_analyzer.service.workers import WorkerPool
    from zstack_analyzer.storage.base import ObjectStorage
    from zstack_analyzer.storage.remote import RemoteObject

__all__ = [
    "BackfillJob",
    "BackfillSummary",
    "backfill_quality",
    "measure_and_store",
    "measure_file",
]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class BackfillSummary:
    """What a run did."""

    measured: int = 0
    failed: int = 0
    last_error: str | None = None

    def add(self, error: str | None) -> None:
        """Count one image (``error``: why it failed, ``None`` when measured)."""
        if error is None:
            self.measured += 1
        else:
            self.failed += 1
            self.last_error = error


def backfill_quality(
    settings: Settings,
    *,
    limit: int | None = None,
    batch: int = 50,
    progress: Callable[[str, str | None], None] | None = None,
) -> BackfillSummary:
    """Measure every image without a quality row (at most ``limit``), committing each.

    ``progress(filename, error)`` is called after each image (``error`` is
    ``None`` when it was measured).
    """
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.quality import images_without_quality
    from zstack_analyzer.service.db.session import Database, make_engine
    from zstack_analyzer.service.storage import make_storage

    engine = make_engine(settings.resolved_database_url())
    summary = BackfillSummary()
    try:
        upgrade_database(engine)
        database = Database(engine)
        storage = make_storage(settings)
        limits = settings.limits.read_limits()
        tried: set[object] = set()
        while limit is None or summary.measured + summary.failed < limit:
            size = batch if limit is None else min(batch, limit - summary.measured - summary.failed)
            images = database.call(lambda s, n=size: images_without_quality(s, limit=n))
            fresh = [image for image in images if image.id not in tried]
            if not fresh:
                break
            for image in fresh:
                tried.add(image.id)
                error = measure_and_store(database, storage, limits, image)
                summary.add(error)
                if progress is not None:
                    progress(image.filename, error)
    finally:
        engine.dispose()
    return summary


def measure_and_store(
    database: Database,
    storage: ObjectStorage,
    limits: ReadLimits,
    image: Image,
    processes: ChildProcesses | None = None,
) -> str | None:
    """Measure every scene of ``image`` and store it (or why it failed); the error or ``None``.

    An image deleted meanwhile (its rows cannot reference it any more) counts
    as failed and is not retried: the next batch no longer lists it. With
    ``processes`` (the server's), a local file is measured in a child process,
    so the server never loads numba and the quality kernels; a child that dies
    on a file fails that image only.
    """
    from concurrent.futures.process import BrokenProcessPool

    from sqlalchemy.exc import IntegrityError

    from zstack_analyzer.service.db.quality import store_quality, store_quality_error
    from zstack_analyzer.service.images_service import readable_source
    from zstack_analyzer.service.routes.images import name_image_in_message

    source: Path | RemoteObject | None = None
    try:
        source = readable_source(image, storage)
        qualities = _measure(source, limits, processes)
    except (ZstackError, OSError, ValueError, BrokenProcessPool) as exc:
        if isinstance(exc, ZstackError):
            # As the routes do: the stored error names the user's file, never our stored name.
            name_image_in_message(exc, image, source)
        error = str(exc) or type(exc).__name__
        if source is not None:
            # An OS error quotes the path it failed on: our storage path, never shown
            # (a reader's error no longer holds it: renamed above).
            error = error.replace(str(source), image.filename)
        try:
            kept = database.call(store_quality_error, image.id, error)
        except IntegrityError:
            kept = False
        if not kept:
            logger.info("%s was deleted while it was measured", image.id)
        return error
    try:
        stored = database.call(store_quality, image.id, qualities)
    except IntegrityError:  # stored by an upload's job at the same moment
        stored = False
    if not stored:  # deleted meanwhile (store_quality stores nothing, quietly)
        return "not stored: the image changed while it was measured"
    return None


def _measure(
    source: Path | RemoteObject, limits: ReadLimits, processes: ChildProcesses | None
) -> list[SceneQuality]:
    """Every scene of one stored image (a local file in a child process when there are some)."""
    from pathlib import Path

    from zstack_analyzer.confine import confined_roots
    from zstack_analyzer.loader import open_image
    from zstack_analyzer.quality import measure_reader

    if processes is not None and isinstance(source, Path):
        return processes.call(measure_file, str(source), limits, confined_roots())
    with open_image(source, limits=limits) as reader:
        return [measure_reader(reader, info.index) for info in reader.scenes()]


def measure_file(
    path: str, limits: ReadLimits, confine_to: tuple[str, ...] = ()
) -> list[SceneQuality]:
    """Every scene of the file at ``path``: what a child process runs for the server.

    ``confine_to``: the server's import roots, confined in the child too.
    """
    from zstack_analyzer.loader import open_image
    from zstack_analyzer.quality import measure_reader

    if confine_to:
        from zstack_analyzer.confine import confine_reads

        confine_reads(confine_to)
    with open_image(path, limits=limits) as reader:
        return [measure_reader(reader, info.index) for info in reader.scenes()]


class BackfillJob:
    """The service's backfill (``POST /api/admin/quality/backfill``): one at a time.

    Why in the worker pool, image by image: each image is measured by one
    :meth:`~zstack_analyzer.service.workers.WorkerPool.run` call, under the
    same thread limit and decode budget as renders, so a backfill of 100,000
    images never crowds out the viewers, and a shutdown stops it between two
    decodes. Resumable: each image's rows are committed as it is measured, so
    a new start (after a restart) carries on with what is still missing.
    """

    def __init__(self) -> None:
        self.running = False
        self.summary = BackfillSummary()

    def start(
        self,
        pool: WorkerPool,
        database: Database,
        storage: ObjectStorage,
        limits: ReadLimits,
        *,
        batch: int = 50,
    ) -> bool:
        """Start the run in the background unless one runs; whether this call started it."""
        if self.running:
            return False
        self.running = True
        self.summary = BackfillSummary()
        pool.start_soon(self._run, pool, database, storage, limits, batch)
        return True

    async def _run(
        self,
        pool: WorkerPool,
        database: Database,
        storage: ObjectStorage,
        limits: ReadLimits,
        batch: int,
    ) -> None:
        from zstack_analyzer.service.db.quality import images_without_quality

        tried: set[object] = set()
        try:
            while True:
                images = await database.run(lambda s: images_without_quality(s, limit=batch))
                fresh = [image for image in images if image.id not in tried]
                if not fresh:
                    break
                for image in fresh:
                    tried.add(image.id)
                    error = await pool.run(
                        measure_and_store, database, storage, limits, image, pool.processes
                    )
                    self.summary.add(error)
        except Exception:
            logger.exception("quality backfill stopped")
        finally:
            self.running = False
