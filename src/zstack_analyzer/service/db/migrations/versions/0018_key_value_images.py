"""``key_value_images``: each (key, value, image) of the images' key-value pairs once, kept by triggers.

Why: a ``kv=KEY:VALUE`` search's total counts images, and an image may carry
the same pair twice, so the count over ``key_values`` had to group its index
entries by image (5,000 of them for one value at 100,000 images: a fifth of
the search on PostgreSQL). In this table the ids are distinct by the primary
key, so the total is an index-only ``count(*)``, and the page's per-image
probe reads the same key.

Why triggers and not the service: every writer of pairs keeps the table right
without knowing of it (the editor's PUT, the bulk table, a template's form,
the cascade from a deleted image, a script's raw SQL), on both engines. Each
row counts its pairs (``pairs``): an insert adds one (or the row), a delete
takes one off (and the row at zero), an update of the triple's columns does
both. A counter, not an ``EXISTS`` check on delete: two transactions adding
and removing pairs of the same image at once stay right on PostgreSQL (the
row lock orders them; a check would not see the other's uncommitted pair).

Note for later SQLite migrations: a batch ("move and copy") rebuild of
``key_values`` drops these triggers; recreate them (``SQLITE_TRIGGERS``) and
refill the table (``FILL``) in that migration.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None

#: The triple of a pair in its table (``{row}``: ``new`` or ``old``).
_MATCH = "key_key = {row}.key_key AND value_key = {row}.value_key AND image_id = {row}.image_id"

FILL = """INSERT INTO key_value_images (key_key, value_key, image_id, pairs)
    SELECT key_key, value_key, image_id, count(*) FROM key_values
    WHERE image_id IS NOT NULL GROUP BY key_key, value_key, image_id"""

_SQLITE_ADD = """INSERT INTO key_value_images (key_key, value_key, image_id, pairs)
        SELECT new.key_key, new.value_key, new.image_id, 1 WHERE new.image_id IS NOT NULL
        ON CONFLICT (key_key, value_key, image_id) DO UPDATE SET pairs = pairs + 1;"""
_SQLITE_REMOVE = f"""DELETE FROM key_value_images WHERE {_MATCH.format(row="old")} AND pairs = 1;
        UPDATE key_value_images SET pairs = pairs - 1 WHERE {_MATCH.format(row="old")};"""  # noqa: S608  (constant SQL)

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS key_value_images_insert AFTER INSERT ON key_values
    BEGIN
        {_SQLITE_ADD}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS key_value_images_delete AFTER DELETE ON key_values
    BEGIN
        {_SQLITE_REMOVE}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS key_value_images_update
    AFTER UPDATE OF key_key, value_key, image_id ON key_values
    BEGIN
        {_SQLITE_REMOVE}
        {_SQLITE_ADD}
    END""",
)

POSTGRES_FUNCTION = f"""CREATE OR REPLACE FUNCTION key_value_images_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.image_id IS NOT NULL THEN
        -- The last pair of its triple takes the row along; else one pair fewer.
        DELETE FROM key_value_images WHERE {_MATCH.format(row="OLD")} AND pairs = 1;
        IF NOT FOUND THEN
            UPDATE key_value_images SET pairs = pairs - 1 WHERE {_MATCH.format(row="OLD")};
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.image_id IS NOT NULL THEN
        INSERT INTO key_value_images AS k (key_key, value_key, image_id, pairs)
        VALUES (NEW.key_key, NEW.value_key, NEW.image_id, 1)
        ON CONFLICT (key_key, value_key, image_id) DO UPDATE SET pairs = k.pairs + 1;
    END IF;
    RETURN NULL;
END
$$"""  # noqa: S608  (constant SQL)
POSTGRES_TRIGGER = """CREATE TRIGGER key_value_images_sync
    AFTER INSERT OR DELETE OR UPDATE OF key_key, value_key, image_id ON key_values
    FOR EACH ROW EXECUTE FUNCTION key_value_images_sync()"""


def upgrade() -> None:
    op.create_table(
        "key_value_images",
        sa.Column("key_key", sa.String(200), nullable=False),
        sa.Column("value_key", sa.String(200), nullable=False),
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key_key", "value_key", "image_id"),
        sqlite_with_rowid=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    # After the triggers: in one transaction with them, no pair is missed or counted twice.
    op.execute(FILL)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE key_value_images")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS key_value_images_sync ON key_values")
        op.execute("DROP FUNCTION IF EXISTS key_value_images_sync()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS key_value_images_{name}")
    op.drop_table("key_value_images")
