"""``alembic revision --autogenerate`` through env.py, against a database at head.

Why: env.py's ``context.configure`` options (``target_metadata``, ``include_name``,
``compare_type``, ``render_as_batch``) are read only by autogenerate, which the service
never runs; a developer writing the next revision does. At head the comparison must find
nothing (the FTS5 tables, not in the models on purpose, left out by ``include_name``); a
column whose type differs from the model must be found, and on SQLite the revision must
be rendered as batch operations (SQLite has no ALTER COLUMN). The revision is captured
through ``process_revision_directives`` and never written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import render_python_code
from alembic.migration import MigrationContext
from alembic.operations import Operations

from zstack_analyzer.service.db.migrations import alembic_config, upgrade_database
from zstack_analyzer.service.db.session import make_engine

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Engine


def _autogenerate(engine: Engine) -> tuple[Any, dict[str, Any]]:
    """The upgrade operations autogenerate finds, and the options env.py configured."""
    seen: dict[str, Any] = {}

    def capture(context: Any, _revision: Any, directives: list[Any]) -> None:
        seen["ops"] = directives[0].upgrade_ops
        seen["opts"] = dict(context.opts)
        directives[:] = []  # nothing written into the package's versions folder

    command.revision(alembic_config(engine), autogenerate=True, process_revision_directives=capture)
    return seen["ops"], seen["opts"]


def test_autogenerate_at_head_finds_nothing_then_a_changed_type_in_batch(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        upgrade_database(engine)
        ops, opts = _autogenerate(engine)
        assert ops.as_diffs() == []
        assert opts["render_as_batch"] is True

        with engine.begin() as connection:
            op = Operations(MigrationContext.configure(connection))
            with op.batch_alter_table("image_channels") as batch:
                batch.alter_column("position", type_=sa.String(20))
                batch.alter_column("name_key", type_=sa.Integer())
        ops, opts = _autogenerate(engine)
        diffs = [d for group in ops.as_diffs() for d in group]
        assert sorted((d[0], d[2], d[3]) for d in diffs) == [
            ("modify_type", "image_channels", "name_key"),
            ("modify_type", "image_channels", "position"),
        ]
        code = render_python_code(ops, render_as_batch=opts["render_as_batch"])
        assert "batch_alter_table('image_channels'" in code
    finally:
        engine.dispose()


def test_without_the_callers_engine_env_migrates_the_configured_url(tmp_path: Path) -> None:
    """A config with only ``sqlalchemy.url`` (Alembic's own command line) still migrates."""
    path = tmp_path / "u.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        config = alembic_config(engine)
        del config.attributes["engine"]
        command.upgrade(config, "0001")
        assert sorted(sa.inspect(engine).get_table_names()) == ["alembic_version", "images"]
    finally:
        engine.dispose()
