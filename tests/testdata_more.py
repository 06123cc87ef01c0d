"""Where ``testdata-more`` is and what its ``MANIFEST.md`` says (Bio-Formats 7.3.1's values).

Why one module: the Bio-Formats fallback tests, the native long-tail readers' comparison
and the kill tests all read the same folder and the same table; one parser means one
idea of a row and of a length in it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.needs import unavailable

__all__ = ["length_um", "manifest_rows", "require_testdata_more", "testdata_more_dir"]

#: The units MANIFEST lengths come in, in µm.
_UNITS_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "Å": 1e-4, "mm": 1e3}


def testdata_more_dir() -> Path | None:
    """``$ZSTACK_TESTDATA_MORE``, else ``../shared/testdata-more`` beside the checkout; ``None``: absent."""
    configured = os.environ.get("ZSTACK_TESTDATA_MORE")
    root = Path(configured) if configured else REPO_ROOT.parent / "shared" / "testdata-more"
    return root if root.is_dir() else None


def require_testdata_more() -> Path:
    """The folder, or skip the test (a failure under ``CI=true``) when it is absent."""
    root = testdata_more_dir()
    if root is None or not (root / "MANIFEST.md").is_file():
        unavailable(
            "testdata-more absent: set ZSTACK_TESTDATA_MORE or place ../shared/testdata-more "
            "(with its MANIFEST.md) beside the checkout"
        )
    return root


def manifest_rows(root: Path | None = None) -> list[dict[str, str]]:
    """The MANIFEST.md table as dicts keyed by its header, companion rows left out.

    ``root`` defaults to :func:`testdata_more_dir`; no folder or no MANIFEST: no rows.
    """
    root = root if root is not None else testdata_more_dir()
    if root is None or not (root / "MANIFEST.md").is_file():
        return []
    lines = [
        line
        for line in (root / "MANIFEST.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("|")
    ]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        row = dict(zip(header, cells, strict=True))
        if row["BF reader"] != "(companion)":
            rows.append(row)
    return rows


def length_um(text: str) -> float | None:
    """A MANIFEST length ("2 µm", "56.7913 Å", "7.7e-06 mm") in µm; ``None`` for "-" or empty."""
    found = re.fullmatch(r"([-+0-9.e]+)\s*(\S+)", text.strip())
    if not found:
        return None
    return float(found.group(1)) * _UNITS_UM[found.group(2)]
