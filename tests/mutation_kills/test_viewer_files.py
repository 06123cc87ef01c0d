"""The viewer's static files (``service/viewer_files.py``): every answer carries the policy.

What the broader tests leave open: all three headers, on a plain file and on a folder's index;
a revalidation answered 304.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.service.conftest import _testclient_class
from zstack_analyzer.service.viewer_files import CONTENT_SECURITY_POLICY, ViewerFiles

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from fastapi import FastAPI

    folder: Path = tmp_path_factory.mktemp("viewer")
    (folder / "index.html").write_text("<!doctype html><title>viewer</title>")
    (folder / "app.js").write_text("console.log('viewer');")
    app = FastAPI()
    app.mount("/", ViewerFiles(directory=folder, html=True), name="viewer")
    with _testclient_class()(app) as test_client:
        yield test_client


def _secured(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_a_file_and_the_index(client: TestClient) -> None:
    script = client.get("/app.js")
    assert script.status_code == 200
    assert script.text == "console.log('viewer');"
    _secured(script)
    index = client.get("/")
    assert index.status_code == 200
    assert "<title>viewer</title>" in index.text
    _secured(index)


def test_a_revalidation_is_304(client: TestClient) -> None:
    etag = client.get("/app.js").headers["etag"]
    again = client.get("/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
