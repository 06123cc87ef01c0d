"""Response bodies: the published field names (SEED.md) plus our additions.

Why separate from the DB model: the API is a contract; columns can change
(``stored_name`` is never exposed) without changing what clients see.
"""

from __future__ import annotations

import uuid  # noqa: TC003  (pydantic needs it at runtime)
from datetime import datetime  # noqa: TC003
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DecodeStatus",
    "FormatPublic",
    "FormatsPublic",
    "HealthPublic",
    "HistogramChannel",
    "HistogramPublic",
    "ImagePublic",
    "ImageSummary",
    "ImagesPublic",
    "Problem",
    "RegisterRequest",
    "SearchPublic",
    "UploadResponse",
]


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457) with a stable ``code``."""

    type: str = Field(description="URI naming the problem type")
    title: str
    status: int
    detail: str = Field(description="What went wrong, for a person")
    code: str = Field(description='Stable machine name, e.g. "corrupt_file", "out_of_range"')
    request_id: str | None = Field(default=None, description="On unexpected 500s: quote it")
    model_config = ConfigDict(extra="allow")


class ImageBase(BaseModel):
    """The published summary of an image (scene 0)."""

    filename: str = Field(description="Display name as uploaded (sanitised); never a path")
    width: int = Field(description="size_x of scene 0, pixels")
    height: int = Field(description="size_y of scene 0, pixels")
    depth: int = Field(description="size_z of scene 0 (Z planes)")
    channels: int = Field(description="size_c of scene 0")
    bit_depth: int = Field(description="Bits per sample of the stored dtype")
    pixel_size_x: float | None = Field(description="Pixel width in µm; null when unknown")
    pixel_size_y: float | None = Field(description="Pixel height in µm; null when unknown")
    pixel_size_z: float | None = Field(description="Z step in µm; null when unknown")


class ImageSummary(ImageBase):
    """An image as a list shows it: the summary columns, no metadata blocks.

    Why: one upload with a huge metadata block must not inflate every page of
    the list; the full record is ``GET /{id}``, the full metadata ``/metadata``.
    """

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    format: str = Field(description='Detected format: "TIFF", "OME-TIFF", "CZI", ...')
    format_variant: str | None = Field(
        default=None,
        description='The kind of a whole-slide file, as users name it: "SVS", "NDPI", "SCN", '
        '"BIF", "QPTIFF" (format TIFF) or "DICOM WSI" (format DICOM); null otherwise',
    )
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the uploaded bytes (hex)")
    created_at: datetime = Field(description="Upload time, always with its zone (UTC)")
    timepoints: int = Field(description="size_t of scene 0")
    samples_per_pixel: int = Field(description="RGB samples per pixel (1 for grey channels)")
    dtype: str = Field(description='numpy dtype name, e.g. "uint16"')
    thumbnail_ready: bool = Field(description="The default thumbnail is rendered and cached")
    scene_count: int = Field(description="Number of scenes (series, positions) in the file")
    stored_in_place: bool = Field(
        default=False,
        description="Registered in place: the server reads the original where it is, no copy",
    )
    source_path: str | None = Field(
        default=None, description="Where the in-place original lives on the server (else null)"
    )
    quality_flags: list[str] = Field(
        default_factory=list,
        description='Why the image looks suspect: "saturated" (1%+ of a plane), "focus at '
        'edge" (best focus at the first or last Z), "weak signal" (SNR 3 or less); empty '
        "when fine or not measured yet",
    )
    owner_id: int | None = Field(
        default=None, description="Id of the owning user; null: made before accounts existed"
    )
    group_id: int | None = Field(default=None, description="Id of the image's group")
    owner: str | None = Field(default=None, description="Username of the owner (when known)")
    group: str | None = Field(default=None, description="Name of the image's group (when known)")


class ImagePublic(ImageSummary):
    """An image as the API returns it (one record, or an upload's ``image_stack``)."""

    metadata: dict[str, Any] = Field(description="Full ImageMetadata JSON of scene 0")
    scenes: list[dict[str, Any]] = Field(description="SceneInfo JSON of every scene")


class RegisterRequest(BaseModel):
    """Body of ``POST /api/images/register``."""

    path: str = Field(
        min_length=1,
        max_length=4096,
        description="Absolute path on the server, inside one of ZSTACK_IMPORT_ROOTS",
    )


class ImagesPublic(BaseModel):
    """One page of images (summaries; full records at ``GET /{id}``) and the total count."""

    data: list[ImageSummary]
    count: int = Field(description="Total number of images matching the query")


class SearchPublic(ImagesPublic):
    """One page of search results: the list's shape, plus ``total`` (= ``count``, all matches)."""

    total: int = Field(description="Total number of images matching the search")


class UploadResponse(BaseModel):
    """Body of a successful upload (201)."""

    message: str
    id: uuid.UUID
    image_stack: ImagePublic


class FormatPublic(BaseModel):
    """One extension of the formats table."""

    name: str
    available: bool
    required_package: str
    reader: str | None = Field(
        default=None,
        description="The reader that opens it: ours (CziReader), or 'Bio-Formats <reader class>' "
        "for the formats the Bio-Formats fallback reads",
    )


class FormatsPublic(BaseModel):
    """Every extension we read and whether its reader package is installed."""

    formats: dict[str, FormatPublic]
    message: str


class DecodeStatus(BaseModel):
    """The server's decode budget now: bytes being decoded, of how many, by how many requests."""

    in_use_bytes: int
    budget_bytes: int
    active_requests: int


class HealthPublic(BaseModel):
    """Liveness, database reachability, object storage and the decode budget."""

    status: Literal["ok", "degraded"]
    database: Literal["ok", "error"]
    version: str
    storage: Literal["ok", "unavailable"] = Field(
        default="ok",
        description="unavailable: the bucket could not be reached (at start-up or since); "
        "listing, search and cached pictures keep working, originals answer 503",
    )
    decode: DecodeStatus | None = None


class HistogramChannel(BaseModel):
    """Intensity histogram of one channel (256 bins) and its auto window."""

    model_config = ConfigDict(extra="allow")

    index: int
    name: str | None = None
    color: str | None = None
    min: float
    max: float
    p_low: float = Field(description="1st percentile")
    p_high: float = Field(description="99th percentile")
    bins: list[int]
    bin_edges_lo: float
    bin_edges_hi: float


class HistogramPublic(BaseModel):
    """Histograms of every channel of one plane or stack sample."""

    channels: list[HistogramChannel]
