"""One rule for missing prerequisites: skip locally, fail under CI.

Why: a suite that passes by skipping proves nothing. On CI (``CI=true``) the
machine is supposed to have the corpus, PostgreSQL, chromium, SeaweedFS and the
declared packages, so their absence is an error there; on a developer's
machine a skip with the reason printed is still allowed.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def on_ci() -> bool:
    """Whether this run is CI's (``CI=true``), where nothing may be skipped for lack of it."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip the test (locally) or fail it (on CI) because a prerequisite is missing."""
    if on_ci():
        pytest.fail(f"required on CI but missing: {reason}", pytrace=False)
    pytest.skip(reason)
