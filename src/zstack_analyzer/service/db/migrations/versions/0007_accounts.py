"""Accounts: users, groups, memberships, API tokens, sessions, group import roots; owner and group on images.

Existing images lose nothing: each goes to the group ``default`` (created
here, level read-only) with no owner (no user exists yet). The first admin
created (``zstack user add NAME --admin``) adopts the ownerless images and
becomes an owner of ``default`` (service/auth/accounts.py).

Users are disabled, never deleted, and a group with images cannot be deleted
(accounts.py checks both), so the two foreign keys need no ``ON DELETE``
(SQLite's reflection cannot read one from an added column anyway).

SQLite: the two columns are added with plain ``ALTER TABLE ADD COLUMN`` (a
``REFERENCES`` clause is allowed there for a NULL default), so ``images`` is
not rebuilt and its full-text triggers and rowids stay as they are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("auth_source", sa.String(32), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("username"),
    )
    groups = op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(150), nullable=False),
        sa.Column("permissions", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "memberships",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("is_owner", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_memberships_group_id", "memberships", ["group_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(64), nullable=True),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "group_import_roots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("groups.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.UniqueConstraint("path", name="uq_group_import_roots_path"),
    )
    op.create_index("ix_group_import_roots_group_id", "group_import_roots", ["group_id"])

    if op.get_bind().dialect.name == "sqlite":
        # Alembic refuses a foreign key in SQLite's ADD COLUMN; SQLite itself accepts it.
        op.execute("ALTER TABLE images ADD COLUMN owner_id INTEGER REFERENCES users (id)")
        op.execute("ALTER TABLE images ADD COLUMN group_id INTEGER REFERENCES groups (id)")
    else:
        op.add_column("images", sa.Column("owner_id", sa.Integer(), nullable=True))
        op.add_column("images", sa.Column("group_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_images_owner_id_users", "images", "users", ["owner_id"], ["id"])
        op.create_foreign_key("fk_images_group_id_groups", "images", "groups", ["group_id"], ["id"])
    op.create_index("ix_images_owner_id", "images", ["owner_id"])
    op.create_index("ix_images_group_id", "images", ["group_id"])

    # Every existing image goes to the group "default"; owners come with the first admin.
    op.bulk_insert(
        groups,
        [{"name": "default", "permissions": "read-only", "created_at": datetime.now(UTC)}],
    )
    op.execute(
        "UPDATE images SET group_id = (SELECT id FROM groups WHERE name = 'default') "
        "WHERE group_id IS NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_images_group_id", table_name="images")
    op.drop_index("ix_images_owner_id", table_name="images")
    # Plain DROP COLUMN, on SQLite too (3.35+; it drops the columns' REFERENCES clauses with
    # them): a batch rebuild of ``images`` would cascade-delete its metadata rows and drop the
    # FTS triggers.
    op.drop_column("images", "group_id")
    op.drop_column("images", "owner_id")
    op.drop_table("group_import_roots")
    op.drop_table("sessions")
    op.drop_table("api_tokens")
    op.drop_table("memberships")
    op.drop_table("groups")
    op.drop_table("users")
