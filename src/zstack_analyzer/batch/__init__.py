"""Work over many files: walk a folder, ingest, watch, thumbnails of many.

Library code: it knows readers and render, never the service. Where records go
is a *sink* the caller passes (the service's :class:`LocalSink`, or
:class:`~zstack_analyzer.batch.remote.HttpSink` for a server's API); where the
per-file work runs is a *runner* (this process, threads, or dask.distributed:
a LocalCluster sized to the machine, or a scheduler address).
"""

from zstack_analyzer.batch.ingest import Commit, IngestProgress, IngestSummary, Sink, ingest
from zstack_analyzer.batch.many import thumbnails_of_many
from zstack_analyzer.batch.runner import SMALL_BATCH, open_runner
from zstack_analyzer.batch.tasks import FileJob, FileResult, process_file
from zstack_analyzer.batch.walk import BadEntry, FileEntry, count_files, walk
from zstack_analyzer.batch.watch import watch_folder

__all__ = [
    "SMALL_BATCH",
    "BadEntry",
    "Commit",
    "FileEntry",
    "FileJob",
    "FileResult",
    "IngestProgress",
    "IngestSummary",
    "Sink",
    "count_files",
    "ingest",
    "open_runner",
    "process_file",
    "thumbnails_of_many",
    "walk",
    "watch_folder",
]
