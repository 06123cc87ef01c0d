"""``/api/health``, ``/api/images/formats/supported`` and the routes' problem entries (``routes/__init__.py``).

What the broader tests leave open: health's answer when the database is unreachable (503,
``database: error``, still naming the version, storage and decode budget), a bucket down
(200, ``degraded``), the decode budget's figures; the formats table's rule that a shared
suffix is named by its generic reader, which packages a missing reader needs, and the
message either way; and ``problems``' descriptions and schema reference.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from zstack_analyzer.budget import decode_scope, reserve
from zstack_analyzer.registry import supported_formats
from zstack_analyzer.service.app import service_version
from zstack_analyzer.service.db.session import Database, make_engine
from zstack_analyzer.service.routes import PROBLEM_MEDIA_TYPE, problems
from zstack_analyzer.service.schemas import Problem

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from fastapi.testclient import TestClient


def test_health_names_the_decode_budget_and_a_storage_outage(sqlite_client: TestClient) -> None:
    budget = sqlite_client.app.state.decode_budget  # type: ignore[attr-defined]
    # A decode in flight (4 KiB, one request): the figures are the budget's own.
    with decode_scope(budget), reserve(4096, what="a test"):
        answer = sqlite_client.get("/api/health")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "database": "ok",
        "version": service_version(),
        "storage": "ok",
        "decode": {
            "in_use_bytes": 4096,
            "budget_bytes": budget.total_bytes,
            "active_requests": 1,
        },
    }
    assert budget.total_bytes > 4096
    assert (budget.in_use, budget.active) == (0, 0)
    # A bucket unreachable since start-up: served degraded, with 200 (what needs no original works).
    sqlite_client.app.state.storage_status = "unavailable"  # type: ignore[attr-defined]
    answer = sqlite_client.get("/api/health")
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["storage"]) == ("degraded", "unavailable")
    assert answer.json()["database"] == "ok"


def test_health_with_the_database_unreachable_is_503_and_names_it(
    sqlite_client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = sqlite_client.app.state  # type: ignore[attr-defined]
    working = state.database
    # A database file in a folder that does not exist: every connection fails.
    state.database = Database(make_engine(f"sqlite:///{tmp_path / 'gone' / 'zstack.db'}"))
    state.storage_status = "unavailable"
    try:
        with caplog.at_level(logging.ERROR, "zstack_analyzer.service.routes.health"):
            answer = sqlite_client.get("/api/health")
    finally:
        state.database.engine.dispose()
        state.database = working
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "degraded"
    assert body["database"] == "error"
    assert body["version"] == service_version()
    assert body["storage"] == "unavailable"
    assert body["decode"]["budget_bytes"] == state.decode_budget.total_bytes
    # The operator's log says why, with the database's own error.
    logged = [r for r in caplog.records if r.name == "zstack_analyzer.service.routes.health"]
    assert [r.getMessage() for r in logged] == ["health check: database unreachable"]
    assert logged[0].exc_info is not None
    assert "unable to open database file" in str(logged[0].exc_info[1])


def test_formats_name_a_shared_suffix_by_its_generic_reader(sqlite_client: TestClient) -> None:
    body = sqlite_client.get("/api/images/formats/supported").json()
    infos = supported_formats()
    # Every suffix of every reader is listed, sorted.
    suffixes = {s for info in infos for s in info.suffixes}
    assert list(body["formats"]) == sorted(suffixes)
    # The registry lists specific readers before generic ones; a suffix is named by the last
    # that claims it, the generic one (".tif" is TIFF, not one of the TIFF dialects).
    assert body["formats"][".tif"]["name"] == "TIFF"
    for suffix, entry in body["formats"].items():
        named = next(info for info in reversed(infos) if suffix in info.suffixes)
        assert entry["name"] == named.name, suffix
        assert entry["reader"] == named.reader, suffix
        assert entry["available"] is named.available, suffix
        want = named.required_packages[0] if named.required_packages else "tifffile"
        assert entry["required_package"] == want, suffix
    missing = sorted({p for info in infos if not info.available for p in info.required_packages})
    if missing:
        assert body["message"] == (
            "Some formats need packages that are not installed: pip install " + " ".join(missing)
        )
    else:
        assert body["message"] == "All required packages are installed"


def test_problem_entries_describe_each_status_and_what_is_missing() -> None:
    entries = problems(404, 409, 418)
    assert list(entries) == [404, 409, 418]
    for entry in entries.values():
        assert entry["model"] is Problem
        assert entry["content"] == {
            PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    assert entries[404]["description"] == "No image with this id"
    assert entries[418]["description"] == "Error"
    assert entries[409]["description"] != "Error"
    named = problems(404, 409, missing="dataset")
    assert named[404]["description"] == "No dataset with this id"
    assert named[409]["description"] == entries[409]["description"]
    # The shared table is not changed by a named 404.
    assert problems(404)[404]["description"] == "No image with this id"
    assert problems() == {}


def test_formats_say_which_packages_a_lab_must_install(
    sqlite_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader whose package is not installed: listed unavailable, and the message says what to pip install.

    ``sys.modules[name] = None`` is Python's own way to make a package unimportable
    (``import`` raises, ``find_spec`` finds nothing): an installation without nd2 and liffile.
    """
    for package in ("nd2", "liffile"):
        monkeypatch.setitem(sys.modules, package, None)
    body = sqlite_client.get("/api/images/formats/supported").json()
    assert body["formats"][".nd2"] == {
        "name": "ND2",
        "available": False,
        "required_package": "nd2",
        "reader": "Nd2Reader",
    }
    assert body["formats"][".lif"]["available"] is False
    assert body["formats"][".czi"]["available"] is True
    assert body["message"] == (
        "Some formats need packages that are not installed: pip install liffile nd2"
    )
