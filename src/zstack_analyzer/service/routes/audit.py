"""``GET /api/audit``: the audit trail, for admins only (service/auth/audit.py).

Why read-only: the trail is append-only (the database refuses UPDATE and
DELETE on it), so there is deliberately no route that changes a row; only
GET is routed, and other methods answer 405.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from zstack_analyzer.service.auth.audit import AuditQuery, as_utc, query_events
from zstack_analyzer.service.auth.principal import PrincipalDep
from zstack_analyzer.service.deps import DatabaseDep
from zstack_analyzer.service.routes import INDEX_MAX, problems

__all__ = ["AuditEventPublic", "AuditPublic", "router"]

router = APIRouter(prefix="/api/audit", tags=["admin"])


class AuditEventPublic(BaseModel):
    """One recorded action."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime = Field(description="When it happened (UTC)")
    action: str = Field(description="login, login_failed, upload, download, delete, ...")
    user_id: int | None = Field(description="Who acted (none: the CLI, or a failed login)")
    username: str | None = Field(description="Who acted; for a failed login, the name tried")
    client: str | None = Field(description="The client's address")
    request_id: str | None = Field(description="The request's X-Request-ID")
    target: str | None = Field(description="What it was done to: image id, token id, group...")
    details: dict[str, Any]

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        """SQLite gives the stored UTC time back without its zone."""
        return as_utc(value)


class AuditPublic(BaseModel):
    """One page of events, newest first, and how many match in all."""

    data: list[AuditEventPublic]
    count: int = Field(description="Total number of events matching the filters")


@router.get(
    "",
    response_model=AuditPublic,
    summary="The audit trail (admins only): filter by user, action and time, paged",
    responses=problems(401, 403, 422),
)
async def list_audit(
    request: Request,
    principal: PrincipalDep,
    database: DatabaseDep,
    user: Annotated[
        str | None,
        Query(max_length=150, description="Who acted (or the name a failed login tried)"),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z_.]+\*?$",
            description="An action, or a family ending in '*' (token_*, membership_*)",
        ),
    ] = None,
    since: Annotated[datetime | None, Query(description="From this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (exclusive)")] = None,
    skip: Annotated[int, Query(ge=0, le=INDEX_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPublic:
    """Events newest first; everything this process recorded before the call is included."""
    if not principal.is_admin:
        msg = "admins only"
        raise HTTPException(403, msg)
    writer = getattr(request.app.state, "audit", None)
    if writer is not None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(writer.flush)
    query = AuditQuery(
        username=user, action=action, since=since, until=until, skip=skip, limit=limit
    )
    rows, count = await database.run(query_events, query)
    return AuditPublic(data=[AuditEventPublic.model_validate(row) for row in rows], count=count)
