"""Shared fixtures: the real corpus location and its expected values."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.s3server import S3Server
from tests.needs import unavailable

REPO_ROOT = Path(__file__).resolve().parent.parent


def _fresh_dask_pools_in_a_forked_child() -> None:
    """Forget dask's cached thread pools in a forked child process.

    Why: mutmut forks every mutant's test run from a process that already ran the
    tests; dask keeps its threaded scheduler's pools per thread, and in a forked
    child those pools have lost their threads, so the first threaded compute (every
    ``convert``) waits for ever. mutmut then records a timeout, which counts as a
    kill whatever the mutant did. New pools are made on the next compute.
    """
    threaded = sys.modules.get("dask.threaded")
    if threaded is None:
        return
    threaded.pools_lock = threading.Lock()
    threaded.default_pool = None
    threaded.pools.clear()


os.register_at_fork(after_in_child=_fresh_dask_pools_in_a_forked_child)


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
    """Entries of EXPECTED.json, or [] when the corpus is absent.

    EXPECTED.json's rule for ``expect``: "'unsupported': UnsupportedFormatError
    until the project has a reader for that format (values, where given, are
    for that future reader)". An entry of a format we now read, with values,
    is therefore expected to open ("ok"); one without values (Cellomics C01)
    stays unsupported.
    """
    root = testdata_dir()
    if root is None or not (root / "EXPECTED.json").is_file():
        return []
    entries = list(json.loads((root / "EXPECTED.json").read_text())["files"])
    return [_with_current_readers(entry) for entry in entries]


def _with_current_readers(entry: dict[str, Any]) -> dict[str, Any]:
    from zstack_analyzer.registry import supported_formats

    readable = {f.name for f in supported_formats() if f.available}
    if entry["expect"] == "unsupported" and entry.get("scenes") and entry["format"] in readable:
        return {**entry, "expect": "ok"}
    fallback = {f.name for f in supported_formats() if f.name.endswith("(Bio-Formats)")}
    if entry["expect"] == "unsupported" and f"{entry['format']} (Bio-Formats)" in fallback:
        # Read by the Bio-Formats fallback now (Cellomics C01): it has no values here, so
        # tests/readers/bioformats checks it against testdata-more/MANIFEST.md instead.
        return {**entry, "expect": "bioformats"}
    return entry


@pytest.fixture
def tokyo() -> Iterator[None]:
    """The process's local zone set to Asia/Tokyo (UTC+9, no daylight saving), then restored."""
    from tests.local_zone import local_zone

    with local_zone("Asia/Tokyo"):
        yield


@pytest.fixture(scope="session")
def testdata() -> Path:
    root = testdata_dir()
    if root is None:
        unavailable("real corpus absent: set ZSTACK_TESTDATA or place it at ../shared/testdata")
    return root


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server on loopback (SeaweedFS), one per worker.

    ``ZSTACK_TEST_S3_ENDPOINT`` names one already running instead (anonymous, as
    :mod:`tests.s3server` starts it). Why: a mutation run forks a fresh pytest per
    mutant, and a server started per fork costs 5 to 30 s of a shared CPU each time;
    ``scripts/s3_for_mutation.py`` starts one for the whole run.
    """
    from tests.needs import unavailable
    from tests.s3server import S3Server, running_s3_server

    endpoint = os.environ.get("ZSTACK_TEST_S3_ENDPOINT")
    if endpoint:
        yield S3Server(endpoint.rstrip("/"), "external", 0)
        return
    try:
        with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
            yield server
    except RuntimeError as exc:
        unavailable(f"no S3 server: {exc}")


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """The two options napari's ``make_napari_viewer`` reads (tests/napari_plugin/conftest.py).

    Why here: napari's pytest plugin, which would add them, stays disabled
    (pyproject's addopts), and options can only be added by an initial conftest.
    When a run enables the plugin (``-p napari``) it adds them itself.
    """
    if pluginmanager.has_plugin("napari"):
        return
    group = parser.getgroup("napari", "napari viewer tests (tests/napari_plugin)")
    group.addoption("--show-napari-viewer", action="store_true", default=False)
    group.addoption("--save-leaked-object-graph", action="store_true", default=False)
