"""Organize and annotate: projects, datasets, their links, tags, key-value pairs, comments, attachments.

Only new tables (service/annotations/models.py): ``images`` is not touched,
so its full-text triggers and rowids stay as they are. Every annotation row
goes with its target (``ON DELETE CASCADE``); the owner and group foreign keys
have no ``ON DELETE`` (users are disabled, never deleted; a group is deleted
only when empty).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

#: Tables holding annotations of images, datasets and projects (one target each).
TARGETED = ("tag_links", "key_values", "comments", "attachments")


def _who() -> list[sa.Column[int]]:
    return [
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("groups.id"), nullable=True),
    ]


def _targets() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "image_id", sa.Uuid(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column(
            "dataset_id",
            sa.Integer(),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column(
            "project_id",
            sa.Integer(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=True,
        ),
    ]


def _created() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    for table in ("projects", "datasets"):
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(255), nullable=False),
            sa.Column("description", sa.Text(), nullable=False),
            *_who(),
            _created(),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        for column in ("name", "owner_id", "group_id"):
            op.create_index(f"ix_{table}_{column}", table, [column])
    op.create_table(
        "project_datasets",
        sa.Column(
            "project_id",
            sa.Integer(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "dataset_id",
            sa.Integer(),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        _created(),
    )
    op.create_index("ix_project_datasets_dataset_id", "project_datasets", ["dataset_id"])
    op.create_index("ix_project_datasets_owner_id", "project_datasets", ["owner_id"])
    op.create_table(
        "dataset_images",
        sa.Column(
            "dataset_id",
            sa.Integer(),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "image_id", sa.Uuid(), sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        _created(),
    )
    op.create_index("ix_dataset_images_image_id", "dataset_images", ["image_id"])
    op.create_index("ix_dataset_images_owner_id", "dataset_images", ["owner_id"])
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("groups.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("name_key", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        _created(),
        sa.UniqueConstraint("group_id", "name_key", name="uq_tags_group_name"),
    )
    op.create_index("ix_tags_name_key", "tags", ["name_key"])
    op.create_index("ix_tags_owner_id", "tags", ["owner_id"])
    op.create_table(
        "tag_links",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "tag_id", sa.Integer(), sa.ForeignKey("tags.id", ondelete="CASCADE"), nullable=False
        ),
        *_targets(),
        *_who(),
        _created(),
        sa.UniqueConstraint("tag_id", "image_id", name="uq_tag_links_image"),
        sa.UniqueConstraint("tag_id", "dataset_id", name="uq_tag_links_dataset"),
        sa.UniqueConstraint("tag_id", "project_id", name="uq_tag_links_project"),
    )
    op.create_table(
        "key_values",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        *_targets(),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=True),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("key_key", sa.String(200), nullable=False),
        sa.Column("value_key", sa.String(200), nullable=False),
        *_who(),
        _created(),
    )
    op.create_index("ix_key_values_search", "key_values", ["key_key", "value_key", "image_id"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        *_targets(),
        sa.Column("text", sa.Text(), nullable=False),
        *_who(),
        _created(),
    )
    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        *_targets(),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("stored_name", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(127), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        *_who(),
        _created(),
        sa.UniqueConstraint("stored_name"),
    )
    for table in TARGETED:
        for column in ("image_id", "dataset_id", "project_id", "owner_id", "group_id"):
            op.create_index(f"ix_{table}_{column}", table, [column])
    # Search by annotation yields image ids; visibility and order come from this index alone.
    op.create_index(
        "ix_images_id_visibility", "images", ["id", "created_at", "owner_id", "group_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_images_id_visibility", table_name="images")
    for table in reversed(TARGETED):
        op.drop_table(table)
    for table in ("tags", "dataset_images", "project_datasets", "datasets", "projects"):
        op.drop_table(table)
