"""The OpenAPI document's 404s of the project and dataset routes name what is missing.

Why: every route shared the image routes' 404 description, so the document told clients
that ``GET /api/datasets/{id}`` answers "No image with this id". A client generated from
the document (or a person reading /docs) then misreads which id was not found.
"""

from __future__ import annotations

from typing import Any

import pytest

from zstack_analyzer.service.app import create_app
from zstack_analyzer.service.config import Settings

#: (method, path) -> what its 404 must name.
EXPECTED = {
    ("post", "/api/datasets"): "No project with this id",
    ("get", "/api/datasets"): "No project with this id",
    ("get", "/api/projects/{project_id}"): "No project with this id",
    ("patch", "/api/projects/{project_id}"): "No project with this id",
    ("delete", "/api/projects/{project_id}"): "No project with this id",
    ("get", "/api/datasets/{dataset_id}"): "No dataset with this id",
    ("patch", "/api/datasets/{dataset_id}"): "No dataset with this id",
    ("delete", "/api/datasets/{dataset_id}"): "No dataset with this id",
    ("post", "/api/datasets/{dataset_id}/images"): "No dataset or image with this id",
    ("delete", "/api/datasets/{dataset_id}/images/{image_id}"): "No dataset or image with this id",
    ("get", "/api/datasets/{dataset_id}/images"): "No dataset with this id",
    ("post", "/api/projects/{project_id}/datasets"): "No project or dataset with this id",
    ("delete", "/api/projects/{project_id}/datasets/{dataset_id}"): (
        "No project or dataset with this id"
    ),
    ("get", "/api/images/{image_id}/datasets"): "No image with this id",
}


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    return create_app(settings).openapi()["paths"]


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_a_container_route_404_names_what_is_missing(
    paths: dict[str, Any], method: str, path: str
) -> None:
    operation = paths[path][method]
    assert operation["responses"]["404"]["description"] == EXPECTED[(method, path)]


def test_no_project_or_dataset_route_says_image(paths: dict[str, Any]) -> None:
    """No 404 under /api/projects or /api/datasets (annotation routes too) blames an image,
    except where the route also looks an image up."""
    wrong = sorted(
        (method, path)
        for path, item in paths.items()
        if path.startswith(("/api/projects", "/api/datasets"))
        for method, operation in item.items()
        if operation.get("responses", {}).get("404", {}).get("description")
        == "No image with this id"
    )
    assert wrong == [], wrong
