"""Shared fixtures: the real corpus location and its expected values."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.needs import unavailable

REPO_ROOT = Path(__file__).resolve().parent.parent


def testdata_dir() -> Path | None:
    """The real corpus: $ZSTACK_TESTDATA, else ../shared/testdata beside the checkout.

    A ZSTACK_TESTDATA that is set but missing is an error, not a skip.
    """
    configured = os.environ.get("ZSTACK_TESTDATA")
    if configured:
        path = Path(configured)
        if not path.is_dir():
            raise pytest.UsageError(f"ZSTACK_TESTDATA={configured} is not a directory")
        return path
    default = REPO_ROOT.parent / "shared" / "testdata"
    return default if default.is_dir() else None


def expected_entries() -> list[dict[str, Any]]:
    """Entries of EXPECTED.json, or [] when the corpus is absent."""
    root = testdata_dir()
    if root is None or not (root / "EXPECTED.json").is_file():
        return []
    return list(json.loads((root / "EXPECTED.json").read_text())["files"])


@pytest.fixture(scope="session")
def testdata() -> Path:
    root = testdata_dir()
    if root is None:
        unavailable("real corpus absent: set ZSTACK_TESTDATA or place it at ../shared/testdata")
    return root
