"""Metadata and the default thumbnail of many files: the batch path the bench measures.

Why its own function: "thumbnails of many" is the same per-file task as an
ingest without a database, so a lab can pre-render a folder's gallery into a
render cache (or measure the cluster) with one call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zstack_analyzer.batch.runner import open_runner
from zstack_analyzer.batch.tasks import FileJob, FileResult, process_file
from zstack_analyzer.batch.walk import FileEntry, walk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from zstack_analyzer.limits import ReadLimits

__all__ = ["thumbnails_of_many"]


def thumbnails_of_many(
    paths: Iterable[str | Path],
    cache_dir: str | Path,
    *,
    limits: ReadLimits | None = None,
    scheduler: str | None = None,
    expected: int | None = None,
    progress: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Read metadata and render the default thumbnail of every file under ``paths``.

    The pictures go into the render cache at ``cache_dir`` (under each file's
    SHA-256, as the service names them). Runs on a LocalCluster for more than a
    few files, on ``scheduler`` when given.

    Examples
    --------
    >>> results = thumbnails_of_many(["/data/lab"], "/tmp/cache")  # doctest: +SKIP
    >>> sum(r.thumbnail_ready for r in results)
    200
    """
    from zstack_analyzer.limits import ReadLimits

    paths = list(paths)
    read_limits = limits or ReadLimits()
    total = (
        expected
        if expected is not None
        else sum(1 for item in walk(paths) if isinstance(item, FileEntry))
    )

    def jobs() -> Iterator[FileJob]:
        for item in walk(paths):
            if isinstance(item, FileEntry):
                yield FileJob(path=item.path, limits=read_limits, cache_dir=str(cache_dir))

    results: list[FileResult] = []
    with open_runner(scheduler=scheduler, expected=total) as runner:
        for _, result in runner.map_unordered(process_file, jobs()):
            results.append(result)
            if progress is not None:
                progress(result)
    return results
