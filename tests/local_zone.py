"""The process's local time zone changed for a test, then restored.

Why: code that must store UTC (acquisition times, rows a migration dates) cannot be
told from code that takes the local wall clock for UTC on a machine set to UTC, as
CI machines are; a zone far from UTC (Asia/Tokyo, UTC+9, no daylight saving) can.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def local_zone(name: str) -> Iterator[None]:
    """``TZ`` set to ``name`` (and ``time.tzset``) inside the block, the old zone after it."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
