"""Injected dependencies: everything a route needs comes from the app's state.

Who is calling and what they may do is decided in ``service/auth/`` (``principal.py``,
``guard.py``), not here.

Why not module globals: each ``create_app(settings)`` gets its own engine,
storage, cache and worker pool, so tests run several apps side by side and
nothing is built at import.
"""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from zstack_analyzer.cache import RenderCache
from zstack_analyzer.service.cluster import ClusterRenders
from zstack_analyzer.service.config import Settings
from zstack_analyzer.service.db.session import Database
from zstack_analyzer.service.images_service import RecordMemo
from zstack_analyzer.service.storage import Storage
from zstack_analyzer.service.workers import WorkerPool

__all__ = [
    "CacheDep",
    "ClusterDep",
    "DatabaseDep",
    "PoolDep",
    "RecordsDep",
    "SessionDep",
    "SettingsDep",
    "StorageDep",
]


async def get_settings(request: Request) -> Settings:
    """The app's settings.

    Why ``async def`` for these trivial getters: FastAPI runs a plain ``def``
    dependency in its thread pool, and a thread hop per dependency cost more than
    the whole cached-thumbnail response.
    """
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    """The app's database (engine + session factory)."""
    database: Database = request.app.state.database
    return database


def get_session(request: Request) -> Iterator[Session]:
    """A session for one request, closed afterwards (sync routes run in a thread)."""
    database: Database = request.app.state.database
    with database.sessions() as session:
        yield session


async def get_storage(request: Request) -> Storage:
    """The app's file storage."""
    storage: Storage = request.app.state.storage
    return storage


async def get_cache(request: Request) -> RenderCache:
    """The app's render cache."""
    cache: RenderCache = request.app.state.cache
    return cache


async def get_records(request: Request) -> RecordMemo:
    """The app's memo of image rows (picture routes)."""
    records: RecordMemo = request.app.state.records
    return records


async def get_cluster(request: Request) -> ClusterRenders | None:
    """The dask cluster for background renders (``None``: the worker threads do them)."""
    cluster: ClusterRenders | None = getattr(request.app.state, "cluster", None)
    return cluster


async def get_pool(request: Request) -> WorkerPool:
    """The app's worker pool."""
    pool: WorkerPool = request.app.state.pool
    return pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CacheDep = Annotated[RenderCache, Depends(get_cache)]
PoolDep = Annotated[WorkerPool, Depends(get_pool)]
RecordsDep = Annotated[RecordMemo, Depends(get_records)]
ClusterDep = Annotated[ClusterRenders | None, Depends(get_cluster)]
