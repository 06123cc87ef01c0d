"""Models and migrations agree; OpenAPI describes exactly the routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tests.service.conftest import api_routes
from zstack_analyzer.service.db.migrations import upgrade_database
from zstack_analyzer.service.db.models import Base
from zstack_analyzer.service.db.search import compare_schema_types, include_in_schema_compare
from zstack_analyzer.service.db.session import make_engine

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient


def test_migrations_match_models(tmp_path: Path, database_url: str | None) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    try:
        upgrade_database(engine)
        upgrade_database(engine)  # idempotent
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": compare_schema_types,
                    "include_name": include_in_schema_compare,
                },
            )
            diff = compare_metadata(context, Base.metadata)
            columns = {c["name"]: c for c in inspect(connection).get_columns("image_metadata")}
        assert diff == []
        if engine.dialect.name == "postgresql":
            assert type(columns["metadata"]["type"]).__name__ == "JSONB"
    finally:
        engine.dispose()


def _annotation_routes() -> set[tuple[str, str]]:
    from tests.service.test_permission_matrix import CATEGORIES

    return {
        key
        for key, category in CATEGORIES.items()
        if category in {"annotations", "image-annotate"}
        or (category == "image-view" and key[1].rsplit("/", 1)[1] in ANNOTATION_PARTS)
    }


ANNOTATION_PARTS = {"tags", "key-values", "comments", "attachments", "datasets"}
ANNOTATION_ROUTES = _annotation_routes()


def test_openapi_matches_routes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    # A "{key:path}" parameter is documented as "{key}".
    routes = {
        (path.replace(":path}", "}"), method.lower())
        for path, methods in api_routes(client.app)
        for method in methods
    }
    documented = {
        (path, method) for path, operations in schema["paths"].items() for method in operations
    }
    assert documented == routes
    expected = {
        ("/api/images/upload", "post"),
        ("/api/images/", "get"),
        ("/api/images/{image_id}", "get"),
        ("/api/images/{image_id}", "delete"),
        ("/api/images/{image_id}/metadata", "get"),
        ("/api/images/{image_id}/quality", "get"),
        ("/api/images/{image_id}/thumbnail", "get"),
        ("/api/images/{image_id}/mip", "get"),
        ("/api/images/{image_id}/slice/{z}", "get"),
        ("/api/images/{image_id}/section/{plane}/{index}", "get"),
        ("/api/images/{image_id}/orthogonal", "get"),
        ("/api/images/{image_id}/histogram", "get"),
        ("/api/images/{image_id}/download", "get"),
        ("/api/images/formats/supported", "get"),
        ("/api/images/{image_id}/zarr/{key}", "get"),
        ("/api/images/{image_id}.ome.zarr/{key}", "get"),
        ("/api/images/{image_id}/tile/{level}/{row}/{column}", "get"),
        ("/api/images/search", "get"),
        ("/api/images/register", "post"),
        ("/api/images/lookup", "get"),
        ("/api/health", "get"),
        # Accounts (issue 23): tests/service/test_permission_matrix.py classifies each.
        ("/api/images/{image_id}", "patch"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/auth/password", "post"),
        ("/api/auth/me", "get"),
        ("/api/tokens", "get"),
        ("/api/tokens", "post"),
        ("/api/tokens/{token_id}", "delete"),
        ("/api/admin/users", "get"),
        ("/api/admin/users", "post"),
        ("/api/admin/users/{username}", "patch"),
        ("/api/admin/groups", "get"),
        ("/api/admin/quality/backfill", "get"),
        ("/api/admin/quality/backfill", "post"),
        ("/api/admin/groups", "post"),
        ("/api/admin/groups/{name}", "patch"),
        ("/api/admin/groups/{name}", "delete"),
        ("/api/admin/groups/{name}/members/{username}", "put"),
        ("/api/admin/groups/{name}/members/{username}", "delete"),
        ("/api/admin/import-roots", "get"),
        ("/api/admin/import-roots", "post"),
        ("/api/admin/import-roots", "delete"),
        ("/api/admin/quality/backfill", "get"),
        ("/api/admin/quality/backfill", "post"),
        ("/api/audit", "get"),
        # ROIs and measurements (issue 24).
        ("/api/images/{image_id}/rois", "get"),
        ("/api/images/{image_id}/rois", "post"),
        ("/api/images/{image_id}/rois", "delete"),
        ("/api/images/{image_id}/rois/{roi_id}", "get"),
        ("/api/images/{image_id}/rois/{roi_id}", "delete"),
        ("/api/images/{image_id}/rois/{roi_id}", "put"),
        ("/api/images/{image_id}/rois/{roi_id}/stats", "get"),
        ("/api/images/{image_id}/rois/import", "post"),
        ("/api/images/{image_id}/rois.csv", "get"),
        ("/api/images/{image_id}/rois.geojson", "get"),
    }
    # Organize and annotate (issue 24): classified in test_permission_matrix.py too.
    expected |= {(path, method) for method, path in ANNOTATION_ROUTES}
    assert documented == expected
    paths = schema["paths"]
    for path in ("thumbnail", "mip", "orthogonal"):
        ok = paths[f"/api/images/{{image_id}}/{path}"]["get"]["responses"]["200"]
        assert "image/png" in ok["content"]
    upload = paths["/api/images/upload"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert set(upload["responses"]) >= {"201", "400", "413", "422", "500"}
    problem = upload["responses"]["422"]["content"]["application/problem+json"]
    assert problem["schema"]["$ref"].endswith("/Problem")
    image_public = schema["components"]["schemas"]["ImagePublic"]["properties"]
    assert "µm" in image_public["pixel_size_z"]["description"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_startup_is_repeatable(client: TestClient) -> None:
    """A second app on the same data dir starts on the migrated database."""
    from tests.service.conftest import _testclient_class
    from zstack_analyzer.service.app import create_app

    settings = client.app.state.settings
    with _testclient_class()(create_app(settings)) as second:
        assert second.get("/api/health").json()["database"] == "ok"
