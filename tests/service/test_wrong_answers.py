"""Issue 21, section 4: no 500 on hostile keys, one in-place record per path, CSP, 401 first."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select, text

from tests.service.conftest import upload, write_ome_tiff

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

HOSTILE_KEYS = [
    "٠/.zattrs",  # an Arabic-Indic zero: was served as scene 0
    "²/.zattrs",  # isdigit() is true, int() fails: was a 500
    "0/" + "7" * 5000 + "/.zarray",  # past Python's int digit limit: was a 500
    "0/0/0/0/0/0/" + "9" * 5000,
    "0/0/٠/0/0/0/0",
    "0/0/0/0/0/0/²",
    "0/0/0/0/0/0/+0",
    "0/0/0/0/0/0/-1",
    "0/0/0/0/0/0/0x1",
    "0/0/0/0/0/0/ 0",
    "0/0/0/0/0/0/0_0",
    "1000000000/.zattrs",
    "0/1000000000/.zarray",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_zarr_keys_are_404(client: TestClient, tiff_file: Path, key: str) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    response = client.get(f"/api/images/{image_id}/zarr/{key}")
    assert response.status_code == 404, (response.status_code, response.text[:200])
    assert response.json()["code"] == "no_such_key"


def test_ascii_keys_still_answer(client: TestClient, tiff_file: Path) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    for key in (".zattrs", "0/.zattrs", "0/0/.zarray", "0/0/0/0/0/0/0", "000/0/0/0/0/00/0"):
        assert client.get(f"/api/images/{image_id}/zarr/{key}").status_code == 200, key


def test_concurrent_registrations_give_one_row_per_path(
    settings: Settings, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    """50 registrations of 5 paths at once (threads, real concurrency): 5 rows, on both engines."""
    from zstack_analyzer.service.db.models import Image

    roots = tmp_path / "archive"
    roots.mkdir()
    paths = [
        write_ome_tiff(roots / f"p{i}.ome.tif", shape=(1, 2, 16, 16), seed=i) for i in range(5)
    ]
    client = make_client(settings.model_copy(update={"import_roots": [roots]}))
    barrier = threading.Barrier(50)
    answers: list[Any] = []
    lock = threading.Lock()

    def register(path: Path) -> None:
        barrier.wait()
        response = client.post("/api/images/register", json={"path": str(path)})
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=register, args=(paths[i % 5],)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted({r.status_code for r in answers}) in ([200, 201], [201]), [
        (r.status_code, r.text[:200]) for r in answers if r.status_code not in (200, 201)
    ]
    assert sum(r.status_code == 201 for r in answers) == 5
    ids_per_path: dict[str, set[str]] = {}
    for response in answers:
        stack = response.json()["image_stack"]
        ids_per_path.setdefault(stack["source_path"], set()).add(response.json()["id"])
    assert all(len(ids) == 1 for ids in ids_per_path.values()), ids_per_path
    database = client.app.state.database  # type: ignore[attr-defined]
    rows = database.call(lambda s: s.scalar(select(func.count()).select_from(Image)))
    assert rows == 5
    assert client.get("/api/images/").json()["count"] == 5


def test_the_database_refuses_a_second_in_place_row(
    settings: Settings, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    """The unique index, not only the code: a direct second insert of the same path fails."""
    import uuid

    from sqlalchemy.exc import IntegrityError

    from zstack_analyzer.service.db.models import Image

    roots = tmp_path / "archive"
    roots.mkdir()
    source = write_ome_tiff(roots / "one.ome.tif")
    client = make_client(settings.model_copy(update={"import_roots": [roots]}))
    assert client.post("/api/images/register", json={"path": str(source)}).status_code == 201
    database = client.app.state.database  # type: ignore[attr-defined]

    def insert_twin(session: Any) -> None:
        row = session.scalars(select(Image)).one()
        twin = Image(
            **{
                c.key: getattr(row, c.key)
                for c in Image.__mapper__.column_attrs
                if c.key not in ("id", "stored_name", "search_vector")
            },
            id=uuid.uuid4(),
            stored_name=f"inplace-{uuid.uuid4().hex}",
        )
        session.add(twin)
        session.commit()

    with pytest.raises(IntegrityError):
        database.call(insert_twin)


# ---------------------------------------------------------------- HTTP: CSP and 401 first
def test_viewer_page_sends_a_content_security_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[-1].split(";", 1)[0]


def test_401_comes_before_404_and_405(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    """Without the token, no answer tells which API routes or methods exist."""
    client = make_client(settings.model_copy(update={"api_token": "s3cret-token"}))
    for method, path in (
        ("DELETE", "/api/health"),  # a route, a wrong method: was 405 with Allow
        ("PUT", "/api/images/"),
        ("POST", "/api/images/00000000-0000-0000-0000-000000000000/slice/0"),
        ("GET", "/api/no-such-route"),  # was 404
        ("GET", "/api/images/x/zarr/²"),
    ):
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.status_code)
        assert "allow" not in response.headers
        assert response.headers["www-authenticate"] == "Bearer"
    good = {"Authorization": "Bearer s3cret-token"}
    assert client.request("DELETE", "/api/health", headers=good).status_code == 405
    assert client.get("/api/no-such-route", headers=good).status_code == 404
    assert client.get("/api/health", headers=good).status_code == 200


def test_migration_0005_folds_existing_duplicates_into_the_oldest(
    settings: Settings, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    """Duplicates made before the unique index existed: the oldest record stays, once."""
    import uuid

    from alembic import command
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.db.migrations import alembic_config, upgrade_database
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.db.session import make_engine

    roots = tmp_path / "archive"
    roots.mkdir()
    source = write_ome_tiff(roots / "dup.ome.tif")
    client = make_client(settings.model_copy(update={"import_roots": [roots]}))
    first = client.post("/api/images/register", json={"path": str(source)})
    assert first.status_code == 201
    url = client.app.state.database.engine.url  # type: ignore[attr-defined]
    client.__exit__(None, None, None)
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        # Back to a 0004 database holding duplicates (as concurrent registrations made them).
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ux_images_in_place_source_path"))
        with Session(engine) as session:
            row = session.scalars(select(Image)).one()
            for _ in range(2):
                session.add(
                    Image(
                        **{
                            c.key: getattr(row, c.key)
                            for c in Image.__mapper__.column_attrs
                            if c.key not in ("id", "stored_name", "search_vector", "created_at")
                        },
                        id=uuid.uuid4(),
                        stored_name=f"inplace-{uuid.uuid4().hex}",
                    )
                )
            session.commit()
            assert session.scalar(select(func.count()).select_from(Image)) == 3
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE images DROP COLUMN source_dev"))
            connection.execute(text("ALTER TABLE images DROP COLUMN source_ino"))
        command.stamp(alembic_config(engine), "0004")
        upgrade_database(engine, "0005")  # later revisions' tables exist already
        with Session(engine) as session:
            ids = session.scalars(select(Image.id)).all()
        assert [str(i) for i in ids] == [first.json()["id"]]
    finally:
        engine.dispose()


def test_concurrent_registrations_against_a_live_server(
    tmp_path: Path, database_url: str | None
) -> None:
    """The same race over real sockets (uvicorn, its worker threads): 50 requests, 5 rows."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.service.live import live_server

    roots = tmp_path / "archive"
    roots.mkdir()
    paths = [
        write_ome_tiff(roots / f"p{i}.ome.tif", shape=(1, 2, 16, 16), seed=i) for i in range(5)
    ]
    with live_server(tmp_path / "data", database_url=database_url, import_roots=[roots]) as base:
        barrier = threading.Barrier(50)

        def register(path: Path) -> tuple[int, str]:
            barrier.wait()
            response = requests.post(
                f"{base}/api/images/register", json={"path": str(path)}, timeout=120
            )
            return response.status_code, response.json().get("id", response.text)

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(register, [paths[i % 5] for i in range(50)]))
        assert {status for status, _ in answers} <= {200, 201}, answers
        assert len({image_id for _, image_id in answers}) == 5
        listed = requests.get(f"{base}/api/images/", params={"limit": 100}, timeout=30).json()
        assert listed["count"] == 5
