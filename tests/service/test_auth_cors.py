"""Optional bearer-token auth on every /api route; configurable CORS."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.service.conftest import api_routes, upload

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.service.config import Settings


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_token_required_on_every_api_route(
    settings: Settings, make_client, tiff_file: Path
) -> None:
    client = make_client(settings.model_copy(update={"api_token": "s3cret-token"}))
    good = {"Authorization": "Bearer s3cret-token"}
    created = upload(client, tiff_file, headers=good)
    assert created.status_code == 201
    image_id = created.json()["id"]
    routes = api_routes(client.app)
    assert len(routes) >= 13
    for route_path, methods in routes:
        path = (
            route_path.replace("{image_id}", image_id)
            .replace("{z}", "0")
            .replace("{plane}", "xz")
            .replace("{index}", "0")
        )
        for method in methods:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["code"] == "unauthorized"
    assert client.get(f"/api/images/{image_id}", headers=good).status_code == 200
    assert client.get(f"/api/images/{image_id}/thumbnail", headers=good).status_code == 200
    assert client.get("/api/health", headers=good).status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_token_means_open(client) -> None:
    assert client.get("/api/health").status_code == 200
    assert (
        client.get("/api/health", headers={"Authorization": "Bearer anything"}).status_code == 200
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cors(settings: Settings, make_client) -> None:
    allowed = "http://viewer.example"
    client = make_client(settings.model_copy(update={"cors_origins": [allowed]}))
    preflight = client.options(
        "/api/images/",
        headers={
            "Origin": allowed,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == allowed
    simple = client.get("/api/health", headers={"Origin": allowed})
    assert simple.headers["access-control-allow-origin"] == allowed
    assert "etag" in simple.headers["access-control-expose-headers"].lower()
    other = client.get("/api/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cors_off_by_default(client) -> None:
    response = client.get("/api/health", headers={"Origin": "http://viewer.example"})
    assert "access-control-allow-origin" not in response.headers
