"""Request and response bodies of the organize/annotate routes (the viewer builds on these)."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003  (pydantic needs it at runtime)
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

__all__ = [
    "AttachmentPublic",
    "BulkChange",
    "BulkError",
    "BulkRequest",
    "BulkResult",
    "CommentCreate",
    "CommentPublic",
    "ContainerCreate",
    "ContainerPublic",
    "ContainerUpdate",
    "ContainersPublic",
    "DatasetCreate",
    "DatasetLinkResult",
    "DeleteResult",
    "KeyValueItem",
    "LinkDatasets",
    "LinkImages",
    "LinkResult",
    "TagMerge",
    "TagPublic",
    "TagRef",
    "TagUpdate",
    "TagsPublic",
    "TemplatePublic",
]

#: Most items one request may name (image ids to link, tags, key-value pairs).
MAX_ITEMS = 10_000
MAX_NAME = 255
MAX_DESCRIPTION = 10_000
MAX_VALUE = 4096
MAX_COMMENT = 10_000
#: Largest bulk table accepted in one request (characters).
MAX_BULK_CHARS = 50 * 1024 * 1024


def clean_text(value: str, what: str, *, limit: int = MAX_NAME, empty_ok: bool = False) -> str:
    """``value`` stripped, without control characters (PostgreSQL text cannot hold NUL)."""
    cleaned = "".join(c for c in value if c >= " " or c in "\t\n").strip()
    if not cleaned and not empty_ok:
        msg = f"{what}: must not be empty"
        raise ValueError(msg)
    if len(cleaned) > limit:
        msg = f"{what}: at most {limit} characters"
        raise ValueError(msg)
    return cleaned


class ContainerCreate(BaseModel):
    """A new project: its name and description (goes to ``?group=`` or your default group)."""

    name: str = Field(min_length=1, max_length=MAX_NAME)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return clean_text(value, "name")

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return clean_text(value, "description", limit=MAX_DESCRIPTION, empty_ok=True)


class DatasetCreate(ContainerCreate):
    """A new dataset, optionally in a project (``project_id``)."""

    project_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class ContainerUpdate(BaseModel):
    """New name and/or description of a project or dataset."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else clean_text(value, "name")

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return clean_text(value, "description", limit=MAX_DESCRIPTION, empty_ok=True)


class ContainerPublic(BaseModel):
    """A project or dataset as the API shows it."""

    id: int
    kind: str = Field(description='"project" or "dataset"')
    name: str
    description: str
    owner_id: int | None
    group_id: int | None
    owner: str | None
    group: str | None
    created_at: datetime
    updated_at: datetime
    child_count: int = Field(
        description="Visible datasets of a project, or visible images of a dataset"
    )
    project_ids: list[int] = Field(
        default_factory=list, description="A dataset's projects (visible ones)"
    )
    can_change: bool = Field(
        description="Whether you may change it: rename, delete, link images (a dataset) or "
        "datasets (a project) into it. Another member's in a read-only or read-annotate "
        "group is visible but not yours to change"
    )
    owned_by_you: bool = Field(description="Whether you own it (you made it)")


class ContainersPublic(BaseModel):
    """One page of projects or datasets and the total count."""

    data: list[ContainerPublic]
    count: int


class LinkImages(BaseModel):
    """Images to link into a dataset."""

    image_ids: list[str] = Field(min_length=1, max_length=MAX_ITEMS)


class LinkResult(BaseModel):
    """What a link request did."""

    dataset_id: int
    linked: list[str] = Field(description="Image ids newly linked")
    already: list[str] = Field(description="Image ids that were linked before")


class LinkDatasets(BaseModel):
    """Datasets to link into a project."""

    dataset_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=MAX_ITEMS
    )


class DatasetLinkResult(BaseModel):
    """What linking datasets into a project did."""

    project_id: int
    linked: list[int] = Field(description="Dataset ids newly linked")
    already: list[int] = Field(description="Dataset ids that were linked before")


class DeleteResult(BaseModel):
    """What deleting a container did (images go only with ``?with_images=true``)."""

    deleted: str = Field(description='"project" or "dataset"')
    id: int
    images_deleted: list[str] = Field(default_factory=list)
    images_kept: list[str] = Field(
        default_factory=list, description="Asked for, but yours to see only, not to delete"
    )


class TagRef(BaseModel):
    """A tag on a target."""

    id: int
    name: str
    group_id: int
    owner_id: int | None


class TagPublic(TagRef):
    """A tag with its use counts (visible images, datasets and projects carrying it)."""

    description: str
    group: str | None
    owner: str | None
    count: int = Field(description="Visible images with this tag")
    dataset_count: int
    project_count: int


class TagsPublic(BaseModel):
    """Tags the caller can see, with counts."""

    data: list[TagPublic]
    count: int


class TagUpdate(BaseModel):
    """Rename a tag (or change its description); the tag's owner or a group owner."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else clean_text(value, "name")


class TagMerge(BaseModel):
    """Merge this tag into ``into`` (same group): its links move, then it is deleted."""

    into: int = Field(ge=1, le=2**31 - 1)


class KeyValueItem(BaseModel):
    """One key-value pair (order is kept; keys may repeat)."""

    key: str = Field(min_length=1, max_length=MAX_NAME)
    value: str = Field(default="", max_length=MAX_VALUE)
    namespace: str | None = Field(default=None, max_length=MAX_NAME)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return clean_text(value, "key")

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        return clean_text(value, "value", limit=MAX_VALUE, empty_ok=True)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return clean_text(value, "namespace", empty_ok=True) or None


class CommentCreate(BaseModel):
    """A new comment."""

    text: str = Field(min_length=1, max_length=MAX_COMMENT)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return clean_text(value, "text", limit=MAX_COMMENT)


class CommentPublic(BaseModel):
    """A comment: text, author, time."""

    id: int
    text: str
    owner_id: int | None
    owner: str | None
    created_at: datetime


class AttachmentPublic(BaseModel):
    """An attached file (download at ``GET /api/attachments/{id}``)."""

    id: int
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    owner_id: int | None
    owner: str | None
    created_at: datetime


class TemplatePublic(BaseModel):
    """A key-value template: the keys a form offers, grouped in sections."""

    name: str
    title: str
    description: str = ""
    namespace: str | None = None
    sections: list[dict[str, object]]


class BulkRequest(BaseModel):
    """A bulk annotation table (CSV text with a header row)."""

    csv: str = Field(min_length=1, max_length=MAX_BULK_CHARS)
    dry_run: bool = False
    dataset: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        description="Dataset id or name in which first-column filenames are looked up",
    )
    namespace: str | None = Field(default=None, max_length=MAX_NAME)


class BulkChange(BaseModel):
    """What one row changes (or would change, in a dry run)."""

    row: int
    image_id: str
    filename: str
    tags_added: list[str]
    key_values: dict[str, list[str]] = Field(description="Keys set, with their new values")


class BulkError(BaseModel):
    """A row that cannot be applied (nothing is applied while any row fails)."""

    row: int
    message: str


class BulkResult(BaseModel):
    """The outcome of a bulk table."""

    dry_run: bool
    applied: bool
    rows: int
    changes: list[BulkChange]
    errors: list[BulkError]
