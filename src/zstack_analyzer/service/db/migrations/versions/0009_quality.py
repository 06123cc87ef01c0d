"""Image quality: ``image_quality``, one row per image and scene (service/db/quality.py).

The columns that search filters on are indexed (worst saturated fraction,
best focus at a stack edge, weakest signal-to-background); the per-channel
summaries are JSON. Rows go with their image (``ON DELETE CASCADE``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

JSONVariant = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "image_quality",
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("scene", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_saturated_fraction", sa.Float(), nullable=True),
        sa.Column("focus_edge", sa.Boolean(), nullable=False),
        sa.Column("min_snr", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("data", JSONVariant, nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "scene"),
    )
    for column in ("max_saturated_fraction", "focus_edge", "min_snr"):
        op.create_index(f"ix_image_quality_{column}", "image_quality", [column])


def downgrade() -> None:
    for column in ("max_saturated_fraction", "focus_edge", "min_snr"):
        op.drop_index(f"ix_image_quality_{column}", table_name="image_quality")
    op.drop_table("image_quality")
