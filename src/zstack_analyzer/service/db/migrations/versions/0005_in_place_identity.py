"""In-place records: one per original (a unique index), and the original's identity.

Why: registration checked for an existing record, then inserted; two requests
for one path at once both inserted (50 concurrent registrations of 5 paths gave
7 rows on PostgreSQL). A partial unique index on ``source_path`` over in-place
records makes the database refuse the second row, on SQLite and PostgreSQL
alike; ``save_in_place`` then refreshes the row that won. Duplicates made
before this revision are folded into the oldest record (what reads already
used) before the index is built.

``source_dev`` and ``source_ino`` record which file was registered: a file
swapped for another with the same size and mtime (``touch -r``) is told apart.
Rows registered earlier keep NULL there, meaning "size and mtime only", until
they are registered again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

INDEX = "ux_images_in_place_source_path"


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): SQLite keeps the search triggers and rowids.
    op.add_column("images", sa.Column("source_dev", sa.BigInteger(), nullable=True))
    op.add_column("images", sa.Column("source_ino", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    images = sa.table(
        "images",
        sa.column("id", sa.Uuid()),
        sa.column("source_path", sa.String()),
        sa.column("stored_in_place", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    channels = sa.table("image_channels", sa.column("image_id", sa.Uuid()))
    rows = bind.execute(
        sa.select(images.c.id, images.c.source_path)
        .where(images.c.stored_in_place == sa.true())
        .order_by(images.c.source_path, images.c.created_at, images.c.id)
    ).all()
    seen: set[str] = set()
    extra = []
    for image_id, source_path in rows:
        if source_path in seen:
            extra.append(image_id)
        seen.add(source_path)
    for image_id in extra:
        bind.execute(sa.delete(channels).where(channels.c.image_id == image_id))
        bind.execute(sa.delete(images).where(images.c.id == image_id))
    op.create_index(
        INDEX,
        "images",
        ["source_path"],
        unique=True,
        sqlite_where=sa.text("stored_in_place"),
        postgresql_where=sa.text("stored_in_place"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="images")
    op.drop_column("images", "source_ino")
    op.drop_column("images", "source_dev")
