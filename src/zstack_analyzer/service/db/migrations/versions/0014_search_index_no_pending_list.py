"""The PostgreSQL full-text index without a pending list (``fastupdate = off``).

Why: with GIN's default ``fastupdate``, rows inserted one by one (upload,
register, ingest) go to a pending list that every search scans linearly
until a VACUUM merges it. After an ingest of 100,000 records a search cost
1.3-1.4x the same query on a bare table whose index was built in one go
(issue 22; ``EXPLAIN`` priced the index scan at 1340 against 57). With
``fastupdate`` off each insert updates the index itself: inserts cost a
little more, searches stay at the bare table's cost. The pending entries
of an existing index are merged here. SQLite has no such index (FTS5).

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision: str = "0014"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER INDEX ix_images_search_vector SET (fastupdate = off)")
    op.execute("SELECT gin_clean_pending_list('ix_images_search_vector'::regclass)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER INDEX ix_images_search_vector RESET (fastupdate)")
