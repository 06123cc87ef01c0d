"""The Bio-Formats fallback through HTTP: formats table, upload, and a hanging file.

A file that hangs Bio-Formats (its ``FakeReader`` told to sleep in setId) is
registered in place: the request ends in 422 ``read_timeout`` after the
configured deadline, and the server answers the next requests, including a
real multi-file ICS/IDS set registered from its main file.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from tests.needs import unavailable
from tests.service.conftest import upload
from tests.service.live import make_settings
from tests.testdata_more import require_testdata_more
from zstack_analyzer.errors import MissingDependencyError
from zstack_analyzer.readers.bioformats import require_runtime
from zstack_analyzer.service.config import BioformatsSettings

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient

pytestmark = pytest.mark.xdist_group("bioformats")


@pytest.fixture
def more() -> Path:
    try:
        require_runtime()
    except MissingDependencyError as exc:
        unavailable(str(exc))
    return require_testdata_more()


def test_formats_table_lists_every_bioformats_extension(
    tmp_path: Path, make_client: Callable[..., TestClient], more: Path
) -> None:
    from zstack_analyzer.readers.bioformats.formats import claimed_suffixes

    client = make_client(make_settings(tmp_path / "data"))
    body = client.get("/api/images/formats/supported").json()
    formats = body["formats"]
    assert formats[".dm4"] == {
        "name": "Gatan Digital Micrograph (Bio-Formats)",
        "available": True,
        "required_package": "zstack-analyzer[bioformats]",
        "reader": "Bio-Formats GatanReader",
    }
    assert set(claimed_suffixes()) <= set(formats)  # every one, natives keep their own
    assert formats[".tif"]["reader"] == "TiffReader"
    assert ".ids" not in formats  # a companion is opened through its main file
    assert len({f["reader"] for f in formats.values() if f["reader"].startswith("Bio-")}) > 100


def test_upload_view_and_a_hanging_file_does_not_hang_the_server(
    tmp_path: Path, make_client: Callable[..., TestClient], more: Path
) -> None:
    roots = tmp_path / "archive"
    roots.mkdir()
    settings = make_settings(tmp_path / "data").model_copy(
        update={"import_roots": [roots], "bioformats": BioformatsSettings(workers=1, timeout_s=5)}
    )
    client = make_client(settings)

    uploaded = upload(client, more / "gatan" / "dmTest_3D_int16_64,65,66.dm4")
    assert uploaded.status_code == 201, uploaded.text
    stack = uploaded.json()["image_stack"]
    assert stack["format"] == "Gatan Digital Micrograph (Bio-Formats)"
    image = uploaded.json()["id"]
    metadata = client.get(f"/api/images/{image}/metadata").json()
    assert (metadata["size_x"], metadata["size_y"], metadata["size_z"]) == (64, 65, 66)
    for route in ("thumbnail", "mip", "slice/3"):
        shown = client.get(f"/api/images/{image}/{route}")
        assert shown.status_code == 200, (route, shown.text)
        assert shown.headers["content-type"] == "image/png"

    hang = roots / "hang&sleepInitFile=600000.fake"
    hang.write_bytes(b"fake")
    refused = client.post("/api/images/register", json={"path": str(hang)})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "read_timeout"

    assert client.get("/api/health").status_code == 200
    for name in ("testim.ics", "testim.ids"):
        shutil.copyfile(more / "ics" / name, roots / name)
    registered = client.post("/api/images/register", json={"path": str(roots / "testim.ics")})
    assert registered.status_code == 201, registered.text
    assert registered.json()["image_stack"]["depth"] == 2
    image = registered.json()["id"]
    assert client.get(f"/api/images/{image}/slice/1").status_code == 200


def test_a_long_bioformats_format_name_is_stored_on_every_engine(
    tmp_path: Path, make_client: Callable[..., TestClient], more: Path, database_url: str | None
) -> None:
    """PostgreSQL refused "Gatan Digital Micrograph (Bio-Formats)" in a 32-character column (500)."""
    client = make_client(make_settings(tmp_path / "data", database_url=database_url))
    uploaded = upload(client, more / "gatan" / "dmTest_3D_int16_64,65,66.dm4")
    assert uploaded.status_code == 201, uploaded.text
    listed = client.get("/api/images/").json()["data"]
    assert [item["format"] for item in listed] == ["Gatan Digital Micrograph (Bio-Formats)"]
