"""The audit trail: ``audit_events``, append-only (service/auth/audit.py).

Append-only is enforced by the database, not only by the application having
no UPDATE or DELETE path: on both engines a trigger aborts any UPDATE or
DELETE of a row (and on PostgreSQL a TRUNCATE), whoever sends it. An operator
who must prune old rows (retention) drops the trigger deliberately, in a
maintenance window, and recreates it (the statements are below); that step is
visible in the database's own log, unlike a quiet DELETE.

Note for later SQLite migrations: a batch ("move and copy") rebuild of
``audit_events`` drops its triggers; such a migration must call
``create_append_only_guard()`` again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

MESSAGE = "audit_events is append-only"

SQLITE_GUARD = [
    f"""CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
]
SQLITE_UNGUARD = [
    "DROP TRIGGER IF EXISTS audit_events_no_update",
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
]
POSTGRES_GUARD = [
    f"""CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
]
POSTGRES_UNGUARD = [
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events",
    "DROP FUNCTION IF EXISTS audit_events_append_only()",
]


def create_append_only_guard() -> None:
    dialect = op.get_bind().dialect.name
    for statement in POSTGRES_GUARD if dialect == "postgresql" else SQLITE_GUARD:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=150), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_action_at", "audit_events", ["action", "at"])
    op.create_index("ix_audit_events_username_at", "audit_events", ["username", "at"])
    create_append_only_guard()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in POSTGRES_UNGUARD if dialect == "postgresql" else SQLITE_UNGUARD:
        op.execute(statement)
    op.drop_index("ix_audit_events_username_at", table_name="audit_events")
    op.drop_index("ix_audit_events_action_at", table_name="audit_events")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
