"""Tables of the organize/annotate room (migration 0010): containers, tags, key-value pairs, comments, attachments.

Why these shapes:

- **Containers** (projects, datasets) carry an owner and a group like images,
  so :func:`~zstack_analyzer.service.auth.permissions.allows` decides about
  them with the same table. Links are their own rows (OMERO's
  ProjectDatasetLink and DatasetImageLink): an image may be in several
  datasets, a dataset in several projects, and a link records who made it.
- **Annotations** (tag links, key-value pairs, comments, attachments) point
  at exactly one target through one of three nullable foreign keys
  (``image_id``, ``dataset_id``, ``project_id``), so one code path serves the
  three kinds and every row goes with its target (``ON DELETE CASCADE``).
  Each row has its author (``owner_id``) and the target's group
  (``group_id``), as the design asks of every record a person makes.
- **Search** reads tag links by ``(tag_id, image_id)`` and key-value pairs by
  ``(key_key, value_key, image_id)``: lower-cased, length-capped copies of
  key and value that a B-tree indexes on SQLite and PostgreSQL alike.
  ``key_value_images`` holds each such triple of an image once (kept by
  triggers, migration 0018), so a ``kv=KEY:VALUE`` total is a plain count.
"""

from __future__ import annotations

import uuid  # noqa: TC003  (SQLAlchemy resolves Mapped[...] at run time)
from datetime import datetime  # noqa: TC003

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from zstack_analyzer.service.db.models import Base, utcnow

__all__ = [
    "KEY_INDEX_CHARS",
    "Attachment",
    "Comment",
    "Dataset",
    "DatasetImage",
    "KeyValue",
    "KeyValueImage",
    "Project",
    "ProjectDataset",
    "Tag",
    "TagLink",
    "index_key",
]

#: Characters of a key or value kept in its indexed, lower-cased copy.
KEY_INDEX_CHARS = 200


def index_key(text: str) -> str:
    """The indexed form of a tag name, key or value: lower-cased, capped, without NUL.

    Examples
    --------
    >>> index_key("  DAPI ")
    'dapi'
    """
    return text.replace("\x00", "").strip().lower()[:KEY_INDEX_CHARS]


def _owner() -> Mapped[int | None]:
    return mapped_column(Integer, ForeignKey("users.id"), index=True)


def _group() -> Mapped[int | None]:
    return mapped_column(Integer, ForeignKey("groups.id"), index=True)


class Project(Base):
    """A project: a named set of datasets (OMERO's Project)."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = _owner()
    group_id: Mapped[int | None] = _group()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    """A dataset: a named set of images (OMERO's Dataset)."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = _owner()
    group_id: Mapped[int | None] = _group()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProjectDataset(Base):
    """A dataset in a project (a dataset may be in several)."""

    __tablename__ = "project_datasets"

    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    owner_id: Mapped[int | None] = _owner()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetImage(Base):
    """An image in a dataset (an image may be in several)."""

    __tablename__ = "dataset_images"

    dataset_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    owner_id: Mapped[int | None] = _owner()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Tag(Base):
    """A tag of one group: names are unique per group, case-insensitively (``name_key``)."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("group_id", "name_key", name="uq_tags_group_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(Integer, ForeignKey("groups.id"))
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = _owner()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TagLink(Base):
    """A tag on an image, a dataset or a project (exactly one of the three ids is set)."""

    __tablename__ = "tag_links"
    __table_args__ = (
        UniqueConstraint("tag_id", "image_id", name="uq_tag_links_image"),
        UniqueConstraint("tag_id", "dataset_id", name="uq_tag_links_dataset"),
        UniqueConstraint("tag_id", "project_id", name="uq_tag_links_project"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tag_id: Mapped[int] = mapped_column(Integer, ForeignKey("tags.id", ondelete="CASCADE"))
    image_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[int | None] = _owner()
    group_id: Mapped[int | None] = _group()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KeyValue(Base):
    """One key-value pair of a target, in its place (keys may repeat; namespace optional)."""

    __tablename__ = "key_values"
    __table_args__ = (
        # kv=KEY:VALUE search: the matching images straight from the index.
        Index("ix_key_values_search", "key_key", "value_key", "image_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    namespace: Mapped[str | None] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    key_key: Mapped[str] = mapped_column(String(KEY_INDEX_CHARS))
    value_key: Mapped[str] = mapped_column(String(KEY_INDEX_CHARS))
    owner_id: Mapped[int | None] = _owner()
    group_id: Mapped[int | None] = _group()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KeyValueImage(Base):
    """Each ``(key_key, value_key, image_id)`` of the images' pairs once, with how many pairs have it.

    Why: ``kv=KEY:VALUE`` must count an image once even when it carries the
    same pair twice (keys may repeat), and counting distinct ids from
    ``key_values`` grouped 5,000 index entries per search (a fifth of a
    search's time on PostgreSQL at 100,000 images). Here the ids are distinct
    by the primary key, so the total is an index-only ``count(*)``.

    Nothing in the service writes this table: the database's triggers on
    ``key_values`` (migration 0018, both engines) add a triple or count one
    more pair on every insert, count one fewer (and drop the triple at zero)
    on every delete, cascades from a deleted image included, and both on an
    update of the triple's columns. So every writer (the editor's PUT, the
    bulk table, a template's form, raw SQL) keeps it right.
    """

    __tablename__ = "key_value_images"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012  (SQLAlchemy's own attribute)

    key_key: Mapped[str] = mapped_column(String(KEY_INDEX_CHARS), primary_key=True)
    value_key: Mapped[str] = mapped_column(String(KEY_INDEX_CHARS), primary_key=True)
    #: No foreign key of its own: a deleted image's pairs go by ``key_values``' cascade,
    #: whose delete trigger takes them off here (a second check per inserted pair
    #: would only slow a bulk table down).
    image_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    #: How many of the image's pairs have this triple (the row goes when it reaches 0).
    pairs: Mapped[int] = mapped_column(Integer)


class Comment(Base):
    """A comment (text, author, time) on a target."""

    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[int | None] = _owner()
    group_id: Mapped[int | None] = _group()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Attachment(Base):
    """A small file (a protocol PDF) on a target, stored like originals under ``stored_name``."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid(), ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    media_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int | None] = _owner()
    group_id: Mapped[int | None] = _group()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
