"""The metadata JSON moves out of ``images`` into its own table, ``image_metadata``.

Why: every list, search and count reads the ``images`` rows it matches, and
about 860 bytes of inline JSONB per row made a search on PostgreSQL cost twice
a bare indexed table at 100,000 records. Existing rows are moved in one
``INSERT ... SELECT``; the downgrade moves them back.

SQLite drops the column with its native ``ALTER TABLE ... DROP COLUMN``
(SQLite 3.35+), not a batch "move and copy" rebuild: a rebuild would drop the
FTS5 triggers and renumber rowids, and dropping the old table with foreign keys
on would cascade-delete the channel and metadata rows.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

JSONVariant = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "image_metadata",
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("metadata", JSONVariant, nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id"),
    )
    op.execute("INSERT INTO image_metadata (image_id, metadata) SELECT id, metadata FROM images")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE images DROP COLUMN metadata")
    else:
        op.drop_column("images", "metadata")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # Native ADD COLUMN (no rebuild, see above); NOT NULL needs a default there.
        op.execute("ALTER TABLE images ADD COLUMN metadata JSON NOT NULL DEFAULT '{}'")
    else:
        op.add_column("images", sa.Column("metadata", JSONVariant, nullable=True))
    op.execute(
        "UPDATE images SET metadata = (SELECT m.metadata FROM image_metadata m"
        " WHERE m.image_id = images.id)"
        " WHERE EXISTS (SELECT 1 FROM image_metadata m WHERE m.image_id = images.id)"
    )
    if not sqlite:
        op.execute("UPDATE images SET metadata = '{}'::jsonb WHERE metadata IS NULL")
        op.alter_column("images", "metadata", nullable=False)
    op.drop_table("image_metadata")
