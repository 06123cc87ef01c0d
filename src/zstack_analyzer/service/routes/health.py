"""Liveness: the process answers and the database responds."""

import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from zstack_analyzer.service.deps import SessionDep
from zstack_analyzer.service.routes import problems
from zstack_analyzer.service.schemas import DecodeStatus, HealthPublic

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["health"])


@router.get(
    "/health",
    response_model=HealthPublic,
    summary="Service and database status",
    responses={
        503: {"model": HealthPublic, "description": "Database unreachable"},
        **problems(401),
    },
)
def health(session: SessionDep, request: Request, response: Response) -> HealthPublic:
    """``ok`` when a trivial query succeeds; 503 with ``database: error`` otherwise.

    A bucket unreachable since start-up is ``storage: unavailable`` and
    ``status: degraded`` with 200: the server serves what needs no original.
    ``decode`` is the decode budget now (bytes being decoded, by how many requests).
    """
    from zstack_analyzer.service.app import service_version

    # Both are set when the service starts (the lifespan), before any request is served.
    state = request.app.state
    storage = state.storage_status
    budget = state.decode_budget
    decode = DecodeStatus(
        in_use_bytes=budget.in_use,
        budget_bytes=budget.total_bytes,
        active_requests=budget.active,
    )
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        logger.exception("health check: database unreachable")
        response.status_code = 503
        return HealthPublic(
            status="degraded",
            database="error",
            version=service_version(),
            storage=storage,
            decode=decode,
        )
    return HealthPublic(
        status="ok" if storage == "ok" else "degraded",
        database="ok",
        version=service_version(),
        storage=storage,
        decode=decode,
    )
