"""``images`` is indexed by ``(created_at, id)``, the order of every page, instead of ``created_at`` alone.

Why: lists and searches are "newest first, then by id"; a search walks that order
and probes each id against its conditions until its page is full. With only
``created_at`` indexed, every step read the wide image row (JSON scenes, search
text) from the table for its id; with the id in the index the walk is an
index-only scan (a ``kv=`` search's page at 100,000 images: 8.3 ms -> 2.2 ms on
PostgreSQL). The old index is dropped: the new one's leading column answers
everything it did.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_images_created_at_id", "images", ["created_at", "id"])
    op.drop_index("ix_images_created_at", table_name="images")


def downgrade() -> None:
    op.create_index("ix_images_created_at", "images", ["created_at"])
    op.drop_index("ix_images_created_at_id", table_name="images")
