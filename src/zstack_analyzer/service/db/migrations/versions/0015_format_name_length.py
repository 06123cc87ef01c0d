"""``images.format`` holds up to 128 characters (it held 32).

Why: a file read through the Bio-Formats fallback is recorded under Bio-Formats'
own format name plus " (Bio-Formats)", for example "Gatan Digital Micrograph
(Bio-Formats)" (38 characters); PostgreSQL refused such a row and the upload
answered 500. SQLite does not enforce VARCHAR lengths, and altering a column's
type there means rebuilding ``images``, which would drop its full-text triggers
(see 0006), so SQLite's declared type is left as it is.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column("images", "format", type_=sa.String(128), existing_type=sa.String(32))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("UPDATE images SET format = left(format, 32)")
    op.alter_column("images", "format", type_=sa.String(32), existing_type=sa.String(128))
