"""``zstack quality --missing``: measure the images that have no quality yet.

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

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.quality import SceneQuality
    from zstack_analyzer.service.config import Settings
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.storage.base import ObjectStorage

__all__ = ["BackfillSummary", "backfill_quality"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class BackfillSummary:
    """What a run did."""

    measured: int = 0
    failed: int = 0


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
    from zstack_analyzer.service.db.quality import (
        images_without_quality,
        store_quality,
        store_quality_error,
    )
    from zstack_analyzer.service.db.session import Database, make_engine
    from zstack_analyzer.service.storage import make_storage

    engine = make_engine(settings.resolved_database_url())
    summary = BackfillSummary()
    try:
        upgrade_database(engine)
        database = Database(engine)
        storage = make_storage(settings)
        limits = settings.limits.read_limits()
        while limit is None or summary.measured + summary.failed < limit:
            size = batch if limit is None else min(batch, limit - summary.measured - summary.failed)
            images = database.call(lambda s, n=size: images_without_quality(s, limit=n))
            if not images:
                break
            for image in images:
                try:
                    qualities = _measure(image, storage, limits)
                except (ZstackError, OSError, ValueError) as exc:
                    error = str(exc) or type(exc).__name__
                    database.call(store_quality_error, image.id, error)
                    summary.failed += 1
                    if progress is not None:
                        progress(image.filename, error)
                    continue
                database.call(store_quality, image.id, qualities)
                summary.measured += 1
                if progress is not None:
                    progress(image.filename, None)
    finally:
        engine.dispose()
    return summary


def _measure(image: Image, storage: ObjectStorage, limits: ReadLimits) -> list[SceneQuality]:
    """Every scene of one stored image."""
    from zstack_analyzer.loader import open_image
    from zstack_analyzer.quality import measure_reader
    from zstack_analyzer.service.images_service import readable_source

    source = readable_source(image, storage)
    with open_image(source, limits=limits) as reader:
        return [measure_reader(reader, info.index) for info in reader.scenes()]
