"""The FastAPI application: ``create_app(settings)`` and its lifespan.

Why a factory and a lifespan: nothing (engine, directories, migrations,
worker pool) exists at import; each app builds its own from the settings it
is given, so tests run isolated apps and entry points choose the settings.
Start-up order: directories, migrations, crash sweep, cache, worker pool.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import asynccontextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from zstack_analyzer.service.config import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["WEB_DIR", "create_app", "service_version"]

logger = logging.getLogger(__name__)

#: The static viewer, served at "/".
WEB_DIR = Path(__file__).resolve().parent / "web"


def service_version() -> str:
    """The installed package version."""
    try:
        return importlib_metadata.version("zstack-analyzer")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


class RequestIdMiddleware:
    """Give every request an id (``X-Request-ID``) that 500 bodies and logs quote."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # A bug: the client gets a problem body with the id, the log gets the traceback.
            if started:
                raise
            from zstack_analyzer.service.errors import problem_response

            logger.error("request %s failed with an unexpected error", request_id, exc_info=exc)
            response = problem_response(
                500,
                code="internal_error",
                detail=f"unexpected server error; quote request id {request_id} when reporting it",
                request_id=request_id,
            )
            await response(scope, receive, send_with_id)


def _startup(app: FastAPI, settings: Settings) -> None:
    """Blocking start-up work (run in a thread): dirs, migrations, sweep, cache."""
    from zstack_analyzer.cache import RenderCache
    from zstack_analyzer.confine import confine_reads
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.search import ensure_search_index
    from zstack_analyzer.service.db.session import Database, make_engine
    from zstack_analyzer.service.images_service import RecordMemo, prune_tombstones
    from zstack_analyzer.service.storage import make_storage

    # Before anything is read: every open beneath an import root must land inside one.
    confine_reads(settings.import_roots)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.accounts.apply_password_cost()
    storage = make_storage(settings)
    storage.ensure_dirs()
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade_database(engine)
        ensure_search_index(engine)
        database = Database(engine)
    except BaseException:
        engine.dispose()
        raise
    app.state.database = database
    # Every commit that changes accounts touches the marker all principal caches stat.
    from zstack_analyzer.service.auth.account_changes import AccountChanges

    # One instance for the hook and the principal cache: this process honours its own
    # changes at once even when the marker cannot be written.
    app.state.account_changes = AccountChanges(settings.accounts_marker)
    app.state.account_changes.watch(database.sessions)
    # The groups' import roots (users mode) are confined like ZSTACK_IMPORT_ROOTS.
    from zstack_analyzer.service.auth.accounts import group_roots

    confine_reads(info.path for info in database.call(group_roots))
    app.state.storage = storage
    app.state.storage_status = "ok"
    app.state.sweep_pending = False
    if settings.storage.sweep_on_startup and not _sweep(app, settings):
        app.state.sweep_pending = True
    from zstack_analyzer.service.auth.audit_writer import AuditWriter

    app.state.audit = AuditWriter(database)
    settings.deleted_dir.mkdir(parents=True, exist_ok=True)
    prune_tombstones(settings.deleted_dir)
    app.state.records = RecordMemo(deleted_dir=settings.deleted_dir)
    app.state.cache = RenderCache(settings.cache_dir, max_bytes=settings.render.cache_max_bytes)


def _sweep(app: FastAPI, settings: Settings) -> bool:
    """The start-up sweep; ``False`` (logged, storage marked unavailable) when the bucket is down.

    Why not fail start-up: listing, search and cached pictures need only the
    database and the local cache, and must keep working through an S3 outage,
    restarts included.
    """
    from zstack_analyzer.service.db import crud
    from zstack_analyzer.service.errors import storage_failures

    try:
        keep = app.state.database.call(crud.stored_names)
        app.state.storage.sweep(keep, grace_seconds=settings.storage.sweep_grace_seconds)
    except storage_failures() as exc:
        logger.warning(
            "object storage unreachable (%s): serving degraded (originals answer 503 "
            "storage_unavailable); the start-up sweep is retried every %.0f s",
            exc,
            settings.storage.sweep_retry_seconds,
        )
        app.state.storage_status = "unavailable"
        return False
    app.state.storage_status = "ok"
    return True


async def _retry_sweep(app: FastAPI, settings: Settings) -> None:
    """Retry the start-up sweep in the background until the bucket answers."""
    while True:
        await anyio.sleep(settings.storage.sweep_retry_seconds)
        if await anyio.to_thread.run_sync(_sweep, app, settings, abandon_on_cancel=True):
            logger.warning("object storage reachable again: start-up sweep done")
            app.state.sweep_pending = False
            return


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build engine, storage, cache and worker pool; tear them down on shutdown."""
    from zstack_analyzer import budget
    from zstack_analyzer.readers.bioformats import pool as bioformats
    from zstack_analyzer.service.workers import WorkerPool

    settings: Settings = app.state.settings
    decode_budget = settings.limits.decode_budget()
    # Process-wide: decodes outside a request's scope (threads a decoder starts) count too.
    previous_budget = budget.configure(decode_budget)
    app.state.decode_budget = decode_budget
    # Process-wide too: the Bio-Formats worker pool (started lazily, on the first such file).
    previous_bioformats = bioformats.configure(settings.bioformats.pool_options())
    await anyio.to_thread.run_sync(_startup, app, settings)
    logger.info(
        "zstack-analyzer %s: data in %s, database %s, auth %s",
        service_version(),
        settings.data_dir.resolve(),
        app.state.database.engine.url.render_as_string(hide_password=True),
        settings.auth_mode(),
    )
    try:
        async with anyio.create_task_group() as task_group:
            processes = None
            if settings.render.background_processes > 0:
                from zstack_analyzer.service.children import ChildProcesses

                processes = ChildProcesses(
                    workers=settings.render.background_processes,
                    idle_seconds=settings.render.background_idle_seconds,
                    limits=settings.limits,
                    bioformats=settings.bioformats,
                )
            app.state.pool = WorkerPool(
                task_group,
                workers=settings.render.workers,
                budget=decode_budget,
                processes=processes,
            )
            app.state.cluster = None
            if app.state.sweep_pending:
                task_group.start_soon(_retry_sweep, app, settings)
            if settings.dask_scheduler:
                from zstack_analyzer.service.cluster import ClusterRenders

                app.state.cluster = await ClusterRenders.connect(
                    settings.dask_scheduler,
                    task_group,
                    cache_dir=settings.cache_dir,
                    cache_max_bytes=settings.render.cache_max_bytes,
                )
            try:
                yield
            finally:
                # Renders still running stop at their next decode, so shutdown is bounded.
                decode_budget.closing.set()
                if processes is not None:
                    # Ends a background job's child too; its waiting thread then returns.
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(processes.close)
                task_group.cancel_scope.cancel()
                if app.state.cluster is not None:
                    with anyio.CancelScope(shield=True):
                        await app.state.cluster.close()
    finally:
        budget.configure(previous_budget)
        await anyio.to_thread.run_sync(bioformats.configure, previous_bioformats)
        stores = getattr(app.state, "zarr_stores", None)
        if stores is not None:
            stores.close()
        await anyio.to_thread.run_sync(app.state.audit.close)  # writes what is queued
        app.state.database.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service as an ASGI app; nothing touches disk until the lifespan starts.

    Parameters
    ----------
    settings
        Configuration; ``None`` means defaults (not the environment: entry
        points pass ``get_settings()``).

    Examples
    --------
    >>> from zstack_analyzer.service.config import Settings
    >>> app = create_app(Settings(data_dir="/tmp/zstack-data"))  # doctest: +SKIP
    """
    from fastapi import Depends, FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    from zstack_analyzer.service.auth.guard import authorize
    from zstack_analyzer.service.auth.principal import token_unless_users
    from zstack_analyzer.service.errors import install_error_handlers
    from zstack_analyzer.service.guard import HttpGuardMiddleware
    from zstack_analyzer.service.routes import (
        accounts,
        annotations,
        archive,
        audit,
        containers,
        formats,
        health,
        images,
        quality,
        quality_admin,
        render,
        rois,
        search,
        zarr_store,
    )
    from zstack_analyzer.service.upload import UploadSlots
    from zstack_analyzer.service.viewer_files import ViewerFiles

    settings = settings or Settings()
    app = FastAPI(
        title="zstack-analyzer",
        version=service_version(),
        summary="Microscopy z-stacks: metadata, thumbnails, projections and downloads",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.upload_slots = UploadSlots(settings.uploads)
    install_error_handlers(app)
    # One enforcement point (service/auth/guard.py): the caller, and the image in the path.
    auth = [Depends(authorize)]
    # formats before images: "/formats/supported" must not match "/{image_id}".
    app.include_router(formats.router, dependencies=auth)
    app.include_router(health.router, dependencies=auth)
    # Accounts: login needs no credentials; the rest goes through the guard.
    app.include_router(accounts.auth_router, dependencies=[Depends(token_unless_users)])
    app.include_router(accounts.tokens_router, dependencies=auth)
    app.include_router(accounts.admin_router, dependencies=auth)
    app.include_router(accounts.move_router, dependencies=auth)
    app.include_router(audit.router, dependencies=auth)
    if settings.ldap.enabled():
        from zstack_analyzer.service.auth.ldap_login import install_ldap

        install_ldap(app, settings.ldap)
    # search before images: "/search" must not match "/{image_id}".
    app.include_router(search.router, dependencies=auth)
    # archive before images: "/lookup" must not match "/{image_id}".
    app.include_router(archive.router, dependencies=auth)
    app.include_router(images.router, dependencies=auth)
    app.include_router(quality.router, dependencies=auth)
    app.include_router(rois.router, dependencies=auth)
    app.include_router(quality_admin.router, dependencies=auth)
    app.include_router(render.router, dependencies=auth)
    app.include_router(zarr_store.router, dependencies=auth)
    # Organize and annotate (service/annotations/): projects, datasets, tags, pairs, ...
    app.include_router(containers.router, dependencies=auth)
    app.include_router(annotations.router, dependencies=auth)
    # Innermost of the three: CORS answers preflights first; request ids wrap everything.
    app.add_middleware(HttpGuardMiddleware, max_headers=settings.http.max_headers)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-None-Match",
                "Range",
                "X-CSRF-Token",
            ],
            expose_headers=[
                "ETag",
                "X-Duplicate-Of",
                "X-Request-ID",
                "Content-Disposition",
                "Content-Range",
                "Location",
            ],
        )
    app.add_middleware(RequestIdMiddleware)
    if WEB_DIR.is_dir():
        # Mounted last: the API routes win; "/" serves the viewer's index.html without auth.
        app.mount("/", ViewerFiles(directory=WEB_DIR, html=True), name="web")
    return app
