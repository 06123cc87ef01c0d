"""Every record's search text derived again as the insert hook derives it: with its scene names.

Why: migration 0004 filled in the search text of the records stored before
search existed from their file name and metadata only, while the insert hook
also takes the scene names (a record's scene list is a column of its own,
``images.scenes``, not part of the metadata JSON). 0004 was corrected later,
but a database that had already run it kept those texts, so a multi-scene
image stored before 0004 could not be found by a scene name (in SQLite's FTS5
index nor in PostgreSQL's ``search_vector``). Here every record's text is
derived again by the hook's own function (``search_fields.derive_record_fields``),
so the two cannot differ.

How: the records are read in batches of :data:`BATCH` in id order, each
batch starting after the last id of the one before (keyset pages), so memory
stays bounded whatever the number of records (a record's metadata JSON can
carry many kilobytes of vendor metadata). A record whose index already holds
its derived text is not written: on SQLite the stored text is compared, on
PostgreSQL (no stored text since 0017) the vector 0017's trigger would make of
it. Running this again writes nothing, and a PostgreSQL table of correct
records gets no dead row versions. The written text is indexed by the
database's triggers: FTS5's update trigger (0004) on SQLite, on PostgreSQL
0017's fill trigger, which stores the vector and ``NULL`` for the text.

The downgrade has nothing to undo: the text is what the insert path writes at
0018 as well (0018 changed no search column), so the records stay valid below.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None

#: Records read and written per batch (with their metadata JSON, a few MB at most).
BATCH = 500


def upgrade() -> None:
    rederive_search_text(op.get_bind())


def rederive_search_text(bind: Connection, batch: int = BATCH) -> None:
    """Derive every record's search text again and write those whose index holds another."""
    from zstack_analyzer.service.db.search_fields import derive_record_fields

    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    images = sa.table(
        "images",
        sa.column("id", sa.Uuid()),
        sa.column("filename", sa.String()),
        sa.column("scenes", json),
        sa.column("search_text", sa.Text()),
        sa.column("search_vector", postgresql.TSVECTOR()),
    )
    details = sa.table(
        "image_metadata", sa.column("image_id", sa.Uuid()), sa.column("metadata", json)
    )
    derived_text = sa.bindparam("derived_text", type_=sa.Text())
    if bind.dialect.name == "postgresql":
        # What 0017's trigger stores for the text (images_search_vector_fill).
        vector = sa.func.strip(
            sa.func.to_tsvector(sa.literal_column("'pg_catalog.simple'"), derived_text)
        )
        stale = images.c.search_vector.is_distinct_from(vector)
    else:
        stale = images.c.search_text.is_distinct_from(derived_text)
    update = (
        sa.update(images)
        .where(images.c.id == sa.bindparam("record_id", type_=sa.Uuid()), stale)
        .values(search_text=derived_text)
    )
    page = (
        sa.select(images.c.id, images.c.filename, images.c.scenes, details.c.metadata)
        .outerjoin(details, details.c.image_id == images.c.id)
        .order_by(images.c.id)
        .limit(batch)
    )
    after = None
    while True:
        rows = bind.execute(page if after is None else page.where(images.c.id > after)).all()
        if not rows:
            return
        bind.execute(
            update,
            [
                {
                    "record_id": image_id,
                    "derived_text": derive_record_fields(metadata, scenes, filename).search_text,
                }
                for image_id, filename, scenes, metadata in rows
            ],
        )
        after = rows[-1][0]


def downgrade() -> None:
    """Nothing to undo: the derived text is what the insert path writes at 0018 too."""
