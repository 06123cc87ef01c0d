"""Write ``readers/bioformats/formats.json``: Bio-Formats' reader list, from its jar.

Run after changing the jar's version: ``python scripts/bioformats_formats.py``.
The test ``tests/readers/test_bioformats_formats.py`` fails when the table and
the jar disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

from zstack_analyzer.readers.bioformats.pool import PoolOptions, WorkerPool

TABLE = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "zstack_analyzer"
    / "readers"
    / "bioformats"
    / "formats.json"
)


def main() -> None:
    """Ask one worker for its readers and version and write the table."""
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=256))
    try:
        here = Path(__file__)
        readers = pool.request(here, {"op": "formats"}).header["result"]
        version = pool.request(here, {"op": "version"}).header["result"]
    finally:
        pool.close()
    TABLE.write_text(
        json.dumps({"bioformats_version": version, "readers": readers}, indent=1) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
