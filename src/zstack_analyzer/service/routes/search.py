"""``GET /api/images/search``: free text and typed filters over image metadata.

Why its own router, included before ``images``: ``/api/images/search`` must
not be taken for an image id by ``/api/images/{image_id}``.
"""

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query

from zstack_analyzer.service.annotations.search import parse_kv
from zstack_analyzer.service.auth.permissions import visible_in_group
from zstack_analyzer.service.auth.principal import PrincipalDep
from zstack_analyzer.service.db.search import SearchFilters
from zstack_analyzer.service.deps import SessionDep
from zstack_analyzer.service.errors import BadParameterError
from zstack_analyzer.service.image_summaries import search_summaries
from zstack_analyzer.service.routes import problems
from zstack_analyzer.service.schemas import SearchPublic

__all__ = ["router"]

router = APIRouter(prefix="/api/images", tags=["images"])

_Bound = TypeVar("_Bound", float, datetime)
#: Largest integer a query parameter may carry (every engine binds it as a 32/64-bit int).
MAX_INT = 2**31 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(value: str | None) -> str | None:
    """A filter's text without control characters (PostgreSQL refuses NUL); ``None`` if empty."""
    if value is None:
        return None
    cleaned = _CONTROL.sub("", value).strip()
    return cleaned or None


def canonical_format(value: str) -> str:
    """The registry's spelling of a format name (case-insensitive), or 422 naming ``format``."""
    from zstack_analyzer.registry import supported_formats

    names = sorted({info.name for info in supported_formats()})
    for name in names:
        if name.lower() == value.strip().lower():
            return name
    msg = f"format: unknown format {value[:64]!r} (known: {', '.join(names)})"
    raise BadParameterError(msg)


def parse_when(value: str, name: str, *, end_of_day: bool) -> datetime:
    """An ISO date or datetime as UTC; a bare date means its start (or, for ``*_before``, the next day's)."""
    text = value.strip()
    try:
        if len(text) <= 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day and day < date.max else start
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        msg = f"{name}: expected an ISO date or datetime such as 2024-03-31 or 2024-03-31T14:00:00Z, got {value[:64]!r}"
        raise BadParameterError(msg) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _check_order(low: _Bound | None, high: _Bound | None, names: str) -> None:
    if low is not None and high is not None and low > high:
        msg = f"{names}: the minimum is greater than the maximum"
        raise BadParameterError(msg)


@router.get(
    "/search",
    response_model=SearchPublic,
    summary="Search images by metadata: free text and typed filters",
    responses=problems(401, 422),
)
def search(
    session: SessionDep,
    principal: PrincipalDep,
    q: Annotated[
        str | None,
        Query(
            max_length=500,
            description="Words to find (all must match, each as a prefix) in the filename, "
            "channel names, fluorophores, objective, microscope and software, scene names "
            "and vendor metadata values",
        ),
    ] = None,
    format: Annotated[  # the query's name; no alias (see routes/_path_id.py for why)
        str | None, Query(max_length=64, description='e.g. "CZI", "OME-TIFF"')
    ] = None,
    channel: Annotated[
        str | None,
        Query(max_length=255, description="A channel name or fluorophore (case-insensitive)"),
    ] = None,
    objective: Annotated[
        str | None,
        Query(max_length=255, description="Part of the objective's name (case-insensitive)"),
    ] = None,
    magnification: Annotated[
        float | None,
        Query(gt=0, le=10000, allow_inf_nan=False, description="Objective magnification, e.g. 63"),
    ] = None,
    immersion: Annotated[
        str | None, Query(max_length=64, description='e.g. "oil", "water", "air"')
    ] = None,
    min_size_z: Annotated[
        int | None, Query(ge=0, le=MAX_INT, description="At least this many Z planes")
    ] = None,
    max_size_z: Annotated[
        int | None, Query(ge=0, le=MAX_INT, description="At most this many Z planes")
    ] = None,
    pixel_size_min_um: Annotated[
        float | None,
        Query(ge=0, allow_inf_nan=False, description="Pixel width at least this, µm"),
    ] = None,
    pixel_size_max_um: Annotated[
        float | None,
        Query(ge=0, allow_inf_nan=False, description="Pixel width at most this, µm"),
    ] = None,
    acquired_after: Annotated[
        str | None,
        Query(max_length=64, description="ISO date or datetime (UTC unless a zone is given)"),
    ] = None,
    acquired_before: Annotated[
        str | None,
        Query(max_length=64, description="ISO date (that whole day included) or datetime"),
    ] = None,
    saturated_min: Annotated[
        float | None,
        Query(
            ge=0,
            le=1,
            allow_inf_nan=False,
            description="Quality: some channel has at least this share (0-1) of saturated "
            "pixels in some plane",
        ),
    ] = None,
    focus_edge: Annotated[
        bool | None,
        Query(
            description="Quality: best focus at the first or last Z plane (true), or not (false)"
        ),
    ] = None,
    snr_max: Annotated[
        float | None,
        Query(
            ge=0,
            allow_inf_nan=False,
            description="Quality: some channel's signal-to-background is at most this",
        ),
    ] = None,
    group: Annotated[
        str | None, Query(max_length=150, description="Only images of this group (by name)")
    ] = None,
    tag: Annotated[
        list[str] | None,
        Query(max_length=64, description="A tag the image carries (repeatable: all of them)"),
    ] = None,
    kv: Annotated[
        list[str] | None,
        Query(
            max_length=64,
            description="KEY:VALUE pair the image carries, case-insensitive (KEY alone: any "
            "value); repeatable: all of them",
        ),
    ] = None,
    project: Annotated[
        str | None, Query(max_length=255, description="In a dataset of this project (name or id)")
    ] = None,
    dataset: Annotated[
        str | None, Query(max_length=255, description="In this dataset (name or id)")
    ] = None,
    skip: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SearchPublic:
    """Matching images, newest first, in the list's item shape, with the total count."""
    after = (
        parse_when(acquired_after, "acquired_after", end_of_day=False) if acquired_after else None
    )
    before = (
        parse_when(acquired_before, "acquired_before", end_of_day=True) if acquired_before else None
    )
    _check_order(min_size_z, max_size_z, "min_size_z/max_size_z")
    _check_order(pixel_size_min_um, pixel_size_max_um, "pixel_size_min_um/pixel_size_max_um")
    _check_order(after, before, "acquired_after/acquired_before")
    filters = SearchFilters(
        q=q or None,
        format=canonical_format(format) if format else None,
        channel=_text(channel),
        objective=_text(objective),
        magnification=magnification,
        immersion=_text(immersion),
        min_size_z=min_size_z,
        max_size_z=max_size_z,
        pixel_size_min_um=pixel_size_min_um,
        pixel_size_max_um=pixel_size_max_um,
        acquired_after=after,
        acquired_before=before,
        saturated_min=saturated_min,
        focus_edge=focus_edge,
        snr_max=snr_max,
        tags=tuple(t for t in (_text(t) for t in tag or ()) if t is not None),
        kvs=tuple(parse_kv(_text(item) or "") for item in kv or ()),
        project=_text(project),
        dataset=_text(dataset),
    )
    summaries, total = search_summaries(
        session,
        filters,
        skip=skip,
        limit=limit,
        visible=visible_in_group(principal, group),
        principal=principal,
    )
    return SearchPublic(data=summaries, count=total, total=total)
