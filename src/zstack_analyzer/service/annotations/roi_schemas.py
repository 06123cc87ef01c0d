"""The JSON bodies of the ROI routes: shapes in (checked for type, finiteness, counts), ROIs and stats out.

Why here and not in the routes: the routes stay thin, and the viewer's
drawing tools and the Python client read these shapes from the OpenAPI
document. Ranges that need the image (z, t, c, on the plane) are the
library's (``zstack_analyzer.roi.shapes``), checked after these.
"""

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from zstack_analyzer.roi.shapes import MAX_POINTS, MAX_SHAPES

__all__ = [
    "INDEX_MAX",
    "EllipseIn",
    "LineIn",
    "PlaneIndex",
    "PointIn",
    "PolygonIn",
    "RectangleIn",
    "RoiCreate",
    "RoiCreated",
    "RoiPublic",
    "RoiStatsPublic",
    "RoisDeleted",
    "RoisImported",
    "RoisPublic",
    "ShapeIn",
]

#: Bound of an index (scene, z, t, c): a 32-bit signed int, as ``service.routes.INDEX_MAX``.
INDEX_MAX = 2**31 - 1

Coordinate = Annotated[
    float, Field(allow_inf_nan=False, ge=-(2**31), le=2**31, description="Pixels (full resolution)")
]
Extent = Annotated[float, Field(allow_inf_nan=False, gt=0, le=2**31)]
PlaneIndex = Annotated[int, Field(ge=0, le=INDEX_MAX)]


class _ShapeIn(BaseModel):
    """Fields every shape has: its plane and how it is shown."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    z: PlaneIndex = 0
    t: PlaneIndex = 0
    c: PlaneIndex | None = Field(None, description="Channel; omitted: every channel")
    name: str | None = Field(None, max_length=255)
    colour: str | None = Field(
        None,
        pattern=r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$",
        validation_alias=AliasChoices("colour", "color"),
        description="#RRGGBB or #RRGGBBAA",
    )


class RectangleIn(_ShapeIn):
    """A rectangle: top-left corner and size."""

    type: Literal["rectangle"]
    x: Coordinate
    y: Coordinate
    width: Extent
    height: Extent


class EllipseIn(_ShapeIn):
    """An ellipse: centre and radii."""

    type: Literal["ellipse"]
    x: Coordinate
    y: Coordinate
    radius_x: Extent
    radius_y: Extent


class PolygonIn(_ShapeIn):
    """A closed polygon (at least 3 points) or an open polyline (at least 2)."""

    type: Literal["polygon", "polyline"]
    points: list[tuple[Coordinate, Coordinate]] = Field(min_length=2, max_length=MAX_POINTS)


class LineIn(_ShapeIn):
    """A straight line."""

    type: Literal["line"]
    x1: Coordinate
    y1: Coordinate
    x2: Coordinate
    y2: Coordinate


class PointIn(_ShapeIn):
    """A point."""

    type: Literal["point"]
    x: Coordinate
    y: Coordinate


ShapeIn = Annotated[
    RectangleIn | EllipseIn | PolygonIn | LineIn | PointIn, Field(discriminator="type")
]


class RoiCreate(BaseModel):
    """A new ROI: a name and its shapes, in full-resolution pixel coordinates."""

    name: str | None = Field(None, max_length=255)
    scene: PlaneIndex = 0
    shapes: list[ShapeIn] = Field(min_length=1, max_length=MAX_SHAPES)


class RoiPublic(BaseModel):
    """One ROI as stored."""

    id: int
    image_id: str
    scene: int
    name: str | None
    owner_id: int | None
    owner: str | None
    group_id: int | None
    created: str
    shapes: list[dict[str, Any]]


class RoisPublic(BaseModel):
    """The ROIs of an image."""

    data: list[RoiPublic]
    count: int


class RoiCreated(RoiPublic):
    """The stored ROI (its ``id`` names it from now on)."""


class RoisDeleted(BaseModel):
    """What ``DELETE /rois`` did: the caller's deletable ROIs went, others' stayed."""

    deleted: int
    kept: int


class RoisImported(BaseModel):
    """The ROIs an import created."""

    ids: list[int]
    count: int


class RoiStatsPublic(BaseModel):
    """Per-channel statistics of an ROI at full resolution (see ``zstack_analyzer.roi.stats``)."""

    roi_id: int
    image_id: str
    calibrated: bool = Field(description="False: areas and lengths are in pixels (px2, px)")
    pixel_size_um: dict[str, float | None] | None
    channels: list[dict[str, Any]]
    shapes: list[dict[str, Any]] | None = None
    planes: list[dict[str, Any]] | None = Field(None, description="With z=all: one entry per Z")
