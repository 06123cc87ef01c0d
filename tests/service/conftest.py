"""Fixtures for service tests: real SQLite per test, real PostgreSQL under its marker."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.needs import unavailable
from tests.service.live import make_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

PG_ADMIN_URL = os.environ.get("ZSTACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _testclient_class() -> type[TestClient]:
    # starlette warns that plain httpx is deprecated for its TestClient (it wants httpx2,
    # which is not installed); the warning is about packaging, not about our code.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    return TestClient


def write_ome_tiff(
    path: Path,
    shape: tuple[int, int, int, int] = (2, 5, 24, 32),
    *,
    pixel_um: tuple[float, float, float] | None = (0.5, 0.5, 2.0),
    seed: int = 0,
) -> Path:
    """A small C,Z,Y,X uint16 OME-TIFF with position-dependent values."""
    import tifffile

    c, z, y, x = shape
    data = np.arange(c * z * y * x, dtype=np.uint32).reshape(shape)
    data = ((data * 7 + seed * 101) % 4000).astype(np.uint16)
    metadata: dict[str, Any] = {"axes": "CZYX"}
    if pixel_um is not None:
        metadata.update(
            PhysicalSizeX=pixel_um[0], PhysicalSizeY=pixel_um[1], PhysicalSizeZ=pixel_um[2]
        )
    tifffile.imwrite(path, data, ome=True, metadata=metadata)
    return path


@pytest.fixture
def tiff_file(tmp_path: Path) -> Path:
    return write_ome_tiff(tmp_path / "cells.ome.tif")


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    """The PostgreSQL server's admin URL, or a skip saying why it is unusable."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}".strip()
        print(reason)
        unavailable(reason)
    yield PG_ADMIN_URL


def create_pg_database(admin_url: str, template: str | None = None) -> str:
    """A throwaway database (a copy of the database ``template`` if given); returns its URL."""
    import psycopg

    name = f"zstack_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def _migrated(url: str) -> None:
    """Every migration applied to ``url``, as an app's start-up applies them; no connection kept."""
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import make_engine

    engine = make_engine(url)
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin: str) -> Iterator[str]:
    """A PostgreSQL database migrated to head once per worker, copied for each app's test.

    Why: migrating a fresh database costs seconds of DDL per test on PostgreSQL;
    ``CREATE DATABASE ... TEMPLATE`` copies the migrated files in a fraction of
    that. Each test still gets its own database; the migrations themselves are
    tested on empty databases (``database_url`` without the ``settings`` fixture).
    """
    url = create_pg_database(postgres_admin)
    try:
        _migrated(url)
        yield url.rsplit("/", 1)[1]
    finally:
        drop_pg_database(postgres_admin, url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database file migrated to head once per worker (see :func:`postgres_template`)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "zstack.db"
    _migrated(f"sqlite:///{path}")
    # WAL is checkpointed into the file when the last connection closes: nothing else to copy.
    assert sorted(p.name for p in path.parent.iterdir()) == ["zstack.db"]
    return path


def drop_pg_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """``None`` (SQLite in the data dir) or a PostgreSQL database of this test's own.

    The database is empty, for tests that run the migrations themselves; for a
    test whose app comes from the ``settings`` fixture (which would migrate it
    at start-up anyway) it is a copy of :func:`postgres_template`, at head.
    """
    if request.param == "sqlite":
        yield None
        return
    admin = request.getfixturevalue("postgres_admin")
    template = (
        request.getfixturevalue("postgres_template") if "settings" in request.fixturenames else None
    )
    url = create_pg_database(admin, template)
    try:
        yield url
    finally:
        drop_pg_database(admin, url)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """``None`` (SQLite, the caller's choice of file) or an empty PostgreSQL database of this module's own.

    For module-scoped worlds (a corpus, an app, a populated archive) that every test of
    the module reads on both engines; dropped after the module.
    """
    if request.param == "sqlite":
        yield None
        return
    admin = request.getfixturevalue("postgres_admin")
    url = create_pg_database(admin)
    try:
        yield url
    finally:
        drop_pg_database(admin, url)


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None, request: pytest.FixtureRequest) -> Settings:
    """An app's settings on this test's database, migrated already (copied from a template)."""
    data_dir = tmp_path / "data"
    if database_url is None and not (data_dir / "zstack.db").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("sqlite_template"), data_dir / "zstack.db")
    return make_settings(data_dir, database_url=database_url)


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Factory: a started TestClient for ``create_app(settings)`` (closed at teardown)."""
    from zstack_analyzer.service.app import create_app

    test_client = _testclient_class()
    clients: list[TestClient] = []

    def factory(settings: Settings, **kwargs: Any) -> TestClient:
        client = test_client(create_app(settings), **kwargs)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(settings: Settings, make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(settings)


def upload(client: TestClient, path: Path, name: str | None = None, **kwargs: Any) -> Any:
    with path.open("rb") as fh:
        return client.post("/api/images/upload", files={"file": (name or path.name, fh)}, **kwargs)


def pool_busy(client: TestClient) -> bool:
    """Whether the app's worker pool still runs a job or a background job's follow-up.

    Each job (``WorkerPool._execute``) and each background job's follow-up (``spawn``'s
    ``_follow``, which hands the result to ``on_success``: the upload's thumbnail flag and
    quality rows) is a task of the app's task group, which anyio names after its function
    (module first). Once none is left, the pool will store nothing more.
    """
    from zstack_analyzer.service import workers

    prefix = f"{workers.__name__}."

    async def pending() -> list[str]:
        return [task.get_name() for task in asyncio.all_tasks() if not task.done()]

    return any(name.startswith(prefix) for name in client.portal.call(pending))  # type: ignore[union-attr]


def until_done(
    what: str, outcome: Callable[[], bool], client: TestClient, *, bound: float = 120
) -> None:
    """Wait for ``outcome()`` of a background job; fail with ``what`` once it cannot come.

    It cannot come when the pool has no job or follow-up left (the job failed, or stored
    something else); ``bound`` seconds is only for a very slow machine.
    """
    deadline = time.monotonic() + bound
    while not outcome():
        if not pool_busy(client):
            assert outcome(), what  # it may have come between the two looks
            return
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def pool_idle(client: TestClient, *, bound: float = 120) -> None:
    """Wait until the app's worker pool has no job or follow-up left (see :func:`pool_busy`)."""
    deadline = time.monotonic() + bound
    while pool_busy(client):
        assert time.monotonic() < deadline, "the worker pool never went idle"
        time.sleep(0.05)


def api_routes(app: Any) -> list[tuple[str, set[str]]]:
    """(path, methods) of every API route, through included routers.

    FastAPI >= 0.16x keeps included routers as lazy wrappers in ``app.routes``
    (``original_router``); older versions flatten them into ``APIRoute``s.
    """
    from fastapi.routing import APIRoute

    found: list[tuple[str, set[str]]] = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        if isinstance(route, APIRoute):
            if route.include_in_schema:
                found.append((route.path, set(route.methods)))
        elif getattr(route, "original_router", None) is not None:
            pending.extend(route.original_router.routes)
    return found
