"""Alembic environment: online migrations on the engine the caller passed in."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import String, create_engine

from zstack_analyzer.service.db.models import Base
from zstack_analyzer.service.db.search import include_in_schema_compare

config = context.config
target_metadata = Base.metadata


def compare_type(
    migration: Any, _inspected: Any, _declared: Any, inspected_type: Any, declared_type: Any
) -> bool | None:
    """Alembic's type comparison, except VARCHAR lengths on SQLite, which SQLite ignores.

    Why: widening a column there means rebuilding the table, which drops ``images``' FTS
    triggers, so revisions widen columns on PostgreSQL only (0015). Without this,
    ``alembic revision --autogenerate`` on SQLite proposed rebuilding ``images`` to widen
    ``format``. ``None`` leaves the decision to Alembic's own comparison.
    """
    both_text = isinstance(inspected_type, String) and isinstance(declared_type, String)
    if migration.dialect.name == "sqlite" and both_text and type(declared_type) is String:
        return False
    return None


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=compare_type,
            include_name=include_in_schema_compare,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
