"""``/api/admin/quality/backfill``: measure the images that have no quality yet, from the server.

Why an admin route besides ``zstack quality --missing``: a lab whose server
runs where nobody has a shell (a container, another machine) can still
measure the images stored before quality existed. Admins only (the one
admin check of the account routes, on the caller's
:class:`~zstack_analyzer.service.auth.permissions.Principal`). The work runs
in the background worker pool (:class:`~..quality_backfill.BackfillJob`);
``POST`` starts it (or reports the run already going), ``GET`` reports.
"""

from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from zstack_analyzer.service.db.quality import images_without_quality
from zstack_analyzer.service.deps import DatabaseDep, PoolDep, SettingsDep, StorageDep
from zstack_analyzer.service.quality_backfill import BackfillJob
from zstack_analyzer.service.routes import problems
from zstack_analyzer.service.routes.accounts import AdminDep

__all__ = ["BackfillStatus", "router"]

router = APIRouter(prefix="/api/admin/quality", tags=["admin"])

#: How many images without quality a status counts at most (the count is a query).
COUNT_CAP = 10_000


class BackfillStatus(BaseModel):
    """Where the backfill stands."""

    running: bool = Field(description="A run is measuring images now")
    started: bool = Field(default=False, description="This request started the run")
    measured: int = Field(description="Images measured by the current (or last) run")
    failed: int = Field(description="Images the current (or last) run could not read")
    remaining: int = Field(description=f"Images without quality now (counted up to {COUNT_CAP:,})")
    last_error: str | None = None


def _job(request: Request) -> BackfillJob:
    """The app's one backfill job (made on first use)."""
    job = getattr(request.app.state, "quality_backfill", None)
    if job is None:
        job = BackfillJob()
        request.app.state.quality_backfill = job
    return job


def _remaining(session: Any) -> int:
    return len(images_without_quality(session, limit=COUNT_CAP))


async def _status(job: BackfillJob, database: Any, *, started: bool = False) -> BackfillStatus:
    remaining = await database.run(_remaining)
    return BackfillStatus(
        running=job.running,
        started=started,
        measured=job.summary.measured,
        failed=job.summary.failed,
        remaining=remaining,
        last_error=job.summary.last_error,
    )


@router.post(
    "/backfill",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BackfillStatus,
    dependencies=AdminDep,
    summary="Measure every image without quality, in the background (resumable)",
    responses=problems(401, 403),
)
async def start_backfill(
    request: Request,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    settings: SettingsDep,
) -> BackfillStatus:
    """Starts the run unless one is going; either way the status (``started`` says which)."""
    job = _job(request)
    started = job.start(pool, database, storage, settings.limits.read_limits())
    return await _status(job, database, started=started)


@router.get(
    "/backfill",
    response_model=BackfillStatus,
    dependencies=AdminDep,
    summary="How far the quality backfill is",
    responses=problems(401, 403),
)
async def backfill_status(request: Request, database: DatabaseDep) -> BackfillStatus:
    """Counts of the current (or last) run and the images still without quality."""
    return await _status(_job(request), database)
