"""Liveness: the process answers and the database responds."""

import logging

from fastapi import APIRouter, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from zstack_analyzer.service.deps import SessionDep
from zstack_analyzer.service.routes import problems
from zstack_analyzer.service.schemas import HealthPublic

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
def health(session: SessionDep, response: Response) -> HealthPublic:
    """``ok`` when a trivial query succeeds; 503 with ``database: error`` otherwise."""
    from zstack_analyzer.service.app import service_version

    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        logger.exception("health check: database unreachable")
        response.status_code = 503
        return HealthPublic(status="degraded", database="error", version=service_version())
    return HealthPublic(status="ok", database="ok", version=service_version())
