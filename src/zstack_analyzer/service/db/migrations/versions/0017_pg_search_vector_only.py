"""PostgreSQL keeps only the full-text vector, without positions: no search text in ``images``.

Why: a count reads every matching ``images`` row, so the row's width is what a
search costs (issue #22). On PostgreSQL the search text (about 150 bytes) was
stored only for its trigger to derive ``search_vector`` from it, and the vector
(about 320 bytes) carried every word's positions, which only phrase search and
ranking use; a search here is every word as a prefix (``search.tsquery``). With
the text consumed by the trigger and the vector stripped (``strip``: about 200
bytes) a row is about 530 bytes instead of 800, a third fewer heap pages for a
count to read (and fewer than the bench's bare table). Every writer stays as
it is: the ORM insert hook still sets ``search_text``; the new trigger turns it
into the vector and stores ``NULL`` in its place.

SQLite is unchanged: its FTS5 index is external content and reads the text from
``images`` (the delete trigger needs it).

Existing rows are converted by one ``UPDATE`` (the old row versions are left
for autovacuum). The downgrade derives the text again from each record's
metadata (``search_fields.derive_fields``, what the insert hook does) and
restores the old trigger, which rebuilds the vectors with positions.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None

#: The trigger function: the vector (lexemes only) from the text, then the text dropped.
#: A row whose ``search_text`` is not set (an update of other columns) is left alone.
FILL_FUNCTION = """
CREATE OR REPLACE FUNCTION images_search_vector_fill() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.search_text IS NOT NULL THEN
        NEW.search_vector := strip(to_tsvector('pg_catalog.simple', NEW.search_text));
        NEW.search_text := NULL;
    END IF;
    RETURN NEW;
END
$$"""
FILL_TRIGGER = """CREATE TRIGGER images_search_vector_fill BEFORE INSERT OR UPDATE OF search_text
    ON images FOR EACH ROW EXECUTE FUNCTION images_search_vector_fill()"""
#: Migration 0004's trigger (the vector with positions, the text kept).
OLD_TRIGGER = """CREATE TRIGGER images_search_vector_update BEFORE INSERT OR UPDATE OF search_text
    ON images FOR EACH ROW EXECUTE FUNCTION
    tsvector_update_trigger(search_vector, 'pg_catalog.simple', search_text)"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS images_search_vector_update ON images")
    op.execute(
        "UPDATE images SET search_vector = strip(search_vector), search_text = NULL"
        " WHERE search_text IS NOT NULL OR search_vector IS NOT NULL"
    )
    op.execute(FILL_FUNCTION)
    op.execute(FILL_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS images_search_vector_fill ON images")
    op.execute("DROP FUNCTION IF EXISTS images_search_vector_fill()")
    op.execute(OLD_TRIGGER)
    _derive_search_text()


def _derive_search_text() -> None:
    """Every record's search text again, as the insert hook derives it (the trigger indexes it)."""
    from zstack_analyzer.service.db.search_fields import derive_fields

    bind = op.get_bind()
    jsonb = postgresql.JSONB()
    images = sa.table(
        "images",
        sa.column("id", sa.Uuid()),
        sa.column("filename", sa.String()),
        sa.column("scenes", jsonb),
        sa.column("search_text", sa.Text()),
    )
    details = sa.table(
        "image_metadata", sa.column("image_id", sa.Uuid()), sa.column("metadata", jsonb)
    )
    rows = bind.execute(
        sa.select(images.c.id, images.c.filename, images.c.scenes, details.c.metadata).outerjoin(
            details, details.c.image_id == images.c.id
        )
    ).all()
    for image_id, filename, scenes, metadata in rows:
        derived = derive_fields({**(metadata or {}), "scenes": scenes or []}, filename or "")
        bind.execute(
            sa.update(images).where(images.c.id == image_id).values(search_text=derived.search_text)
        )
