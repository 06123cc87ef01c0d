"""A started service on SQLite for the mutation-kill tests (one database, not both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.service.conftest import _testclient_class
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient


@pytest.fixture
def sqlite_client(tmp_path: Path) -> Iterator[TestClient]:
    from zstack_analyzer.service.app import create_app

    with _testclient_class()(create_app(make_settings(tmp_path / "data"))) as client:
        yield client
