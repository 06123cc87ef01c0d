"""Metadata search: typed columns, channel rows, full-text index (FTS5 / tsvector + GIN).

The database keeps the full-text index in step by itself: FTS5 triggers on
SQLite (insert, delete, update of ``search_text``), ``tsvector_update_trigger``
on PostgreSQL. The typed columns and ``search_text`` are derived from the
metadata JSON by the ORM insert hook (models.py); existing rows are backfilled
here with the same function.

Note for later SQLite migrations: a batch ("move and copy") rebuild of
``images`` drops its triggers and renumbers its rowids; the service's start-up
check (``search.ensure_search_index``) recreates the triggers and rebuilds the
index when it finds it out of step (``create_sqlite_fts`` is idempotent too).

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

SearchVector = sa.Text().with_variant(postgresql.TSVECTOR(), "postgresql")

SQLITE_FTS = [
    # External content: the index holds only tokens; the text stays in images.search_text.
    # Rows are matched by rowid (an integer join, several times cheaper than an id column
    # in the index). Rowids can change when a table is rebuilt (batch migration, VACUUM);
    # the service checks the index at start-up and rebuilds it then (search.py).
    """CREATE VIRTUAL TABLE IF NOT EXISTS images_fts USING fts5(
        search_text, content = 'images', content_rowid = 'rowid',
        tokenize = 'unicode61 remove_diacritics 0')""",
    """CREATE TRIGGER IF NOT EXISTS images_fts_insert AFTER INSERT ON images BEGIN
        INSERT INTO images_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS images_fts_delete AFTER DELETE ON images BEGIN
        INSERT INTO images_fts (images_fts, rowid, search_text)
        VALUES ('delete', old.rowid, old.search_text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS images_fts_update AFTER UPDATE OF search_text ON images
    BEGIN
        INSERT INTO images_fts (images_fts, rowid, search_text)
        VALUES ('delete', old.rowid, old.search_text);
        INSERT INTO images_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
    END""",
]
POSTGRES_TRIGGER = [
    """CREATE TRIGGER images_search_vector_update BEFORE INSERT OR UPDATE OF search_text
    ON images FOR EACH ROW EXECUTE FUNCTION
    tsvector_update_trigger(search_vector, 'pg_catalog.simple', search_text)""",
]


def create_sqlite_fts(*, triggers: bool) -> None:
    for statement in SQLITE_FTS if triggers else SQLITE_FTS[:1]:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("search_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("search_vector", SearchVector, nullable=True))
        batch.add_column(sa.Column("objective", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("magnification", sa.Float(), nullable=True))
        batch.add_column(sa.Column("immersion", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_images_format", "images", ["format"])
    op.create_index("ix_images_depth", "images", ["depth"])
    op.create_index("ix_images_pixel_size_x", "images", ["pixel_size_x"])
    op.create_index("ix_images_magnification", "images", ["magnification"])
    op.create_index("ix_images_immersion", "images", ["immersion"])
    op.create_index("ix_images_acquired_at", "images", ["acquired_at"])
    op.create_table(
        "image_channels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name_key", sa.String(length=255), nullable=True),
        sa.Column("fluorophore_key", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_image_channels_image_id", "image_channels", ["image_id"])
    op.create_index("ix_image_channels_name_key", "image_channels", ["name_key"])
    op.create_index("ix_image_channels_fluorophore_key", "image_channels", ["fluorophore_key"])
    op.create_index("ix_images_search_vector", "images", ["search_vector"], postgresql_using="gin")
    if dialect == "postgresql":
        for statement in POSTGRES_TRIGGER:
            op.execute(statement)
    elif dialect == "sqlite":
        create_sqlite_fts(triggers=False)
    _backfill()
    if dialect == "sqlite":
        # Index the backfilled rows in one pass, then keep it in step from now on.
        op.execute("INSERT INTO images_fts (images_fts) VALUES ('rebuild')")
        create_sqlite_fts(triggers=True)


def _backfill() -> None:
    """Derive the search fields of rows stored before this migration (triggers index them)."""
    from zstack_analyzer.service.db.search_fields import derive_fields

    bind = op.get_bind()
    images = sa.table(
        "images",
        sa.column("id", sa.Uuid()),
        sa.column("filename", sa.String()),
        sa.column("metadata", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        sa.column("scenes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        sa.column("search_text", sa.Text()),
        sa.column("objective", sa.String()),
        sa.column("magnification", sa.Float()),
        sa.column("immersion", sa.String()),
        sa.column("acquired_at", sa.DateTime(timezone=True)),
    )
    channels = sa.table(
        "image_channels",
        sa.column("image_id", sa.Uuid()),
        sa.column("position", sa.Integer()),
        sa.column("name_key", sa.String()),
        sa.column("fluorophore_key", sa.String()),
    )
    rows = bind.execute(
        sa.select(images.c.id, images.c.filename, images.c.metadata, images.c.scenes)
    ).all()
    for image_id, filename, metadata, scenes in rows:
        # As the insert hook: the scene names come from their own column, not the metadata.
        derived = derive_fields({**(metadata or {}), "scenes": scenes or []}, filename or "")
        bind.execute(
            sa.update(images)
            .where(images.c.id == image_id)
            .values(
                search_text=derived.search_text,
                objective=derived.objective,
                magnification=derived.magnification,
                immersion=derived.immersion,
                acquired_at=derived.acquired_at,
            )
        )
        if derived.channels:
            bind.execute(
                sa.insert(channels),
                [
                    {"image_id": image_id, "position": p, "name_key": n, "fluorophore_key": f}
                    for p, n, f in derived.channels
                ],
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS images_search_vector_update ON images")
    elif dialect == "sqlite":
        for name in ("images_fts_insert", "images_fts_delete", "images_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS images_fts")
    op.drop_table("image_channels")
    for name in (
        "ix_images_search_vector",
        "ix_images_acquired_at",
        "ix_images_immersion",
        "ix_images_magnification",
        "ix_images_pixel_size_x",
        "ix_images_depth",
        "ix_images_format",
    ):
        op.drop_index(name, table_name="images")
    with op.batch_alter_table("images") as batch:
        for column in (
            "acquired_at",
            "immersion",
            "magnification",
            "objective",
            "search_vector",
            "search_text",
        ):
            batch.drop_column(column)
