"""The Bio-Formats fallback: every format Bio-Formats reads, in JVM worker processes.

Why a package of its own: the reader (:mod:`.reader`), its worker process
(:mod:`.worker`), the warm pool that runs them (:mod:`.pool`), where Java and
the jar come from (:mod:`.jar`), which formats it reads (:mod:`.formats`) and
the companion-file check (:mod:`.companions`) are one job with six parts. The
server never hosts a JVM: only the worker processes do.

Nothing heavy is imported here; JPype is imported only inside a worker.
"""

from __future__ import annotations

from zstack_analyzer.readers.bioformats.jar import find_jar, require_runtime
from zstack_analyzer.readers.bioformats.pool import (
    PoolOptions,
    configure,
    get_pool,
    pool_options,
)

__all__ = [
    "PoolOptions",
    "configure",
    "find_jar",
    "get_pool",
    "is_available",
    "pool_options",
    "require_runtime",
]


def is_available() -> bool:
    """Whether JPype1, Java and the jar are all there (without starting anything)."""
    from zstack_analyzer.errors import MissingDependencyError

    try:
        require_runtime(pool_options().jar)
    except MissingDependencyError:
        return False
    return True
