"""ROIs and their shapes: ``rois`` and ``roi_shapes`` (service/annotations/roi_models.py).

An ROI belongs to an image (scene), its author and the image's group; its
shapes (ordered by ``position``) carry the kind, the plane (z, t, optional c)
and the geometry as JSON. Both go with their image (``ON DELETE CASCADE``).

Revision ID: 0011
Revises: 0009 (re-chained after 0010 at merge)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

JSONVariant = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rois",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("scene", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("image_id", "owner_id", "group_id"):
        op.create_index(f"ix_rois_{column}", "rois", [column])
    op.create_table(
        "roi_shapes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("roi_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("z", sa.Integer(), nullable=False),
        sa.Column("t", sa.Integer(), nullable=False),
        sa.Column("c", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("colour", sa.String(length=9), nullable=True),
        sa.Column("geometry", JSONVariant, nullable=False),
        sa.ForeignKeyConstraint(["roi_id"], ["rois.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_roi_shapes_roi_id", "roi_shapes", ["roi_id"])


def downgrade() -> None:
    op.drop_index("ix_roi_shapes_roi_id", table_name="roi_shapes")
    op.drop_table("roi_shapes")
    for column in ("image_id", "owner_id", "group_id"):
        op.drop_index(f"ix_rois_{column}", table_name="rois")
    op.drop_table("rois")
