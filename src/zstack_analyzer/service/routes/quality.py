"""``GET /api/images/{image_id}/quality``: the stored quality of one scene.

Why only stored values: measuring reads every plane, which belongs in the
background job after an upload or registration (or ``zstack quality
--missing``), never in a request. A scene not measured yet answers
``status: "pending"``; one whose read failed, ``"failed"`` with the reason.
The permission check is the guard's (service/auth/guard.py), as for every
route with ``{image_id}``.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from zstack_analyzer.errors import SceneNotFoundError
from zstack_analyzer.service.db.quality import get_quality
from zstack_analyzer.service.deps import DatabaseDep
from zstack_analyzer.service.images_service import require_image
from zstack_analyzer.service.routes import problems

__all__ = ["ChannelQualityPublic", "QualityPublic", "router"]

router = APIRouter(prefix="/api/images", tags=["quality"])


class ChannelQualityPublic(BaseModel):
    """One channel's quality summary (formulas: the README's "Image quality").

    ``null`` in a list is a value that float data made undefined (NaN).
    """

    channel: int
    name: str | None = None
    best_focus_z: int = Field(description="Plane of the highest focus score (0-based)")
    focus_edge: bool = Field(description="Best focus at the first or last plane (3+ planes)")
    saturated_fraction: float | None = Field(
        description="Largest per-plane share of values at the saturation value (0-1)"
    )
    min_fraction: float | None = Field(
        description="Largest per-plane share of values at the minimum"
    )
    snr: float | None = Field(description="Smallest per-plane foreground mean / background std")
    focus: list[float | None] = Field(
        description="Focus score (normalised variance) per Z, mean over T"
    )
    brenner: list[float | None] = Field(description="Brenner gradient per Z, mean over T")
    intensity_z: list[float | None] = Field(description="Mean intensity per Z")
    intensity_t: list[float | None] = Field(description="Mean intensity per time point")
    z_falloff_rate: float | None = Field(description="Exponential fall-off per plane along Z")
    bleaching_rate: float | None = Field(description="Exponential decay per time point")
    bleaching_rate_per_s: float | None = None


class QualityPublic(BaseModel):
    """The quality of one scene of an image."""

    scene: int
    status: Literal["ready", "pending", "failed"]
    error: str | None = None
    max_saturated_fraction: float | None = None
    focus_edge: bool = False
    min_snr: float | None = None
    channels: list[ChannelQualityPublic] = Field(default_factory=list)


def _named(error: str, image: Any) -> str:
    """The stored reason, naming the user's file where it names our stored copy.

    The upload's own job (and a cluster's) measures the stored copy, whose name the
    reader's message carries; never shown (as every route's errors).
    """
    if not image.stored_name:
        return error
    return error.replace(image.stored_name, image.filename)


def _read(session: Any, image_id: str, scene: int) -> QualityPublic:
    image = require_image(session, image_id)
    if not 0 <= scene < max(1, len(image.scenes or [])):
        msg = f"{image.filename}: scene {scene} is out of range (0..{len(image.scenes) - 1})"
        raise SceneNotFoundError(msg)
    row = get_quality(session, image.id, scene)
    if row is None:
        failed = get_quality(session, image.id, 0)
        if failed is not None and failed.error:
            return QualityPublic(scene=scene, status="failed", error=_named(failed.error, image))
        return QualityPublic(scene=scene, status="pending")
    if row.error:
        return QualityPublic(scene=scene, status="failed", error=_named(row.error, image))
    data = row.data
    return QualityPublic(
        scene=scene,
        status="ready",
        max_saturated_fraction=row.max_saturated_fraction,
        focus_edge=row.focus_edge,
        min_snr=row.min_snr,
        channels=[ChannelQualityPublic.model_validate(c) for c in data.get("channels", [])],
    )


@router.get(
    "/{image_id}/quality",
    response_model=QualityPublic,
    summary="Focus, exposure and signal of one scene, per channel",
    responses=problems(401, 403, 404, 422),
)
async def get_image_quality(
    image_id: str,
    database: DatabaseDep,
    scene: Annotated[int, Query(ge=0, le=1_000_000, description="Scene index")] = 0,
) -> QualityPublic:
    """The stored measures; ``status`` says whether they are there yet."""
    return await database.run(_read, image_id, scene)
