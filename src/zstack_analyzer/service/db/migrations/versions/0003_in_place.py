"""In-place records and the source of ingested files.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(
            sa.Column("stored_in_place", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("source_path", sa.String(length=4096), nullable=True))
        batch.add_column(sa.Column("source_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("source_mtime_ns", sa.BigInteger(), nullable=True))
    op.create_index("ix_images_source_path", "images", ["source_path"])


def downgrade() -> None:
    op.drop_index("ix_images_source_path", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("source_mtime_ns")
        batch.drop_column("source_size")
        batch.drop_column("source_path")
        batch.drop_column("stored_in_place")
