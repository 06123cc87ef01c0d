"""Every Alembic revision, up and down, on an empty SQLite and PostgreSQL database.

Why: ``tests/service/test_schema.py`` checks that head matches the models; a revision's
downgrade, and what each revision leaves for the next, are seen by no such comparison.
Here the schema (tables, columns with type, nullability and default, keys, foreign keys
with their ``ON DELETE``, indexes with their options, triggers, PostgreSQL functions) is
recorded after each upgrade; going down one revision at a time must give back exactly
the schema recorded at the revision below, down to an empty database, and going up again
must give head's schema again. The data-moving revisions' rows are checked by the tests
named in ``scripts/mutate.toml`` (metadata table, key-value images, search backfill,
PostgreSQL vector only) and below (accounts' ``default`` group, duplicates folded).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from tests.needs import unavailable
from tests.service.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database
from zstack_analyzer.service.db.migrations import MIGRATIONS_DIR, alembic_config, upgrade_database
from zstack_analyzer.service.db.session import make_engine

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy.engine import Engine

#: What a downgrade cannot give back exactly: SQLite's native ADD COLUMN needs a default for
#: a NOT NULL column (0006's downgrade), which then stays below 0006.
KNOWN = {
    ("sqlite", below): {("images", "metadata", "default"): ("'{}'", None)}
    for below in ("0001", "0003", "0004", "0005")
}
#: Revisions that change no schema on a dialect (0019 only derives the search texts again).
NO_CHANGE = {
    ("sqlite", "0014"),
    ("sqlite", "0015"),
    ("sqlite", "0017"),
    ("sqlite", "0019"),
    ("postgresql", "0019"),
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of this test's own."""
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield made
        made.dispose()
        return
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = create_pg_database(PG_ADMIN_URL)
    made = make_engine(url)
    try:
        yield made
    finally:
        made.dispose()
        drop_pg_database(PG_ADMIN_URL, url)


def _revisions(engine: Engine) -> list[str]:
    """Revision ids from the first to head."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _sql(text: str | None) -> str | None:
    return None if text is None else re.sub(r"\s+", " ", text).strip()


def _schema(engine: Engine) -> dict[Any, Any]:
    """Everything a migration may change, in a form that does not depend on column order."""
    found: dict[Any, Any] = {}
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        for table in inspector.get_table_names():
            if table == "alembic_version":
                continue
            for column in inspector.get_columns(table):
                key = (table, column["name"])
                found[(*key, "type")] = str(column["type"])
                found[(*key, "nullable")] = column["nullable"]
                found[(*key, "default")] = _sql(column.get("default"))
            found[(table, "primary key")] = tuple(
                inspector.get_pk_constraint(table)["constrained_columns"]
            )
            found[(table, "foreign keys")] = sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    (fk.get("options") or {}).get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(table)
            )
            found[(table, "unique")] = sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
            )
            for index in inspector.get_indexes(table):
                options = {k: _sql(str(v)) for k, v in (index.get("dialect_options") or {}).items()}
                found[(table, "index", index["name"])] = (
                    tuple(index["column_names"]),
                    bool(index["unique"]),
                    sorted(options.items()),
                )
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(
                "SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'index')"
                " AND sql IS NOT NULL"
            )
            for kind, name, sql in rows:
                found[(kind, name)] = _sql(sql)
        else:
            rows = connection.exec_driver_sql(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal"
            )
            for name, definition in rows:
                found[("trigger", name)] = definition
            for name, definition in connection.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            ):
                found[("index", name)] = definition
            for name, source in connection.exec_driver_sql(
                "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n"
                " ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            ):
                found[("function", name)] = _sql(source)
    return found


def _differences(before: dict[Any, Any], after: dict[Any, Any]) -> dict[Any, Any]:
    return {
        key: (after.get(key), before.get(key))
        for key in before.keys() | after.keys()
        if before.get(key) != after.get(key)
    }


def _matches_the_models(engine: Engine) -> None:
    """Head is what the models declare (as tests/service/test_schema.py compares them)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from zstack_analyzer.service.db.models import Base
    from zstack_analyzer.service.db.search import compare_schema_types, include_in_schema_compare

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": compare_schema_types, "include_name": include_in_schema_compare},
        )
        assert compare_metadata(context, Base.metadata) == []
        # Alembic's comparison leaves out keys and ON DELETE: compared here.
        inspector = sa.inspect(connection)
        for table in Base.metadata.sorted_tables:
            declared_pk = tuple(c.name for c in table.primary_key.columns)
            found_pk = tuple(inspector.get_pk_constraint(table.name)["constrained_columns"])
            assert found_pk == declared_pk, table.name
            declared_fks = sorted(
                (
                    tuple(fk.parent.name for fk in constraint.elements),
                    constraint.referred_table.name,
                    tuple(fk.column.name for fk in constraint.elements),
                    constraint.ondelete,
                )
                for constraint in table.foreign_key_constraints
            )
            found_fks = sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    (fk.get("options") or {}).get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(table.name)
            )
            assert found_fks == declared_fks, table.name
            # Nullability of key columns too (Alembic skips it; SQLite allows a NULL key).
            found_null = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
            assert found_null == {c.name: c.nullable for c in table.columns}, table.name


def test_each_downgrade_gives_back_the_schema_below_it(engine: Engine) -> None:
    revisions = _revisions(engine)
    assert len(revisions) == 16
    schemas: dict[str | None, dict[Any, Any]] = {None: _schema(engine)}
    assert schemas[None] == {}
    for position, revision in enumerate(revisions):
        upgrade_database(engine, revision)
        schemas[revision] = _schema(engine)
        below = revisions[position - 1] if position else None
        changed = schemas[revision] != schemas[below]
        # 0014, 0015 and 0017 are PostgreSQL's only (index option, widening, vector only);
        # 0019 rewrites rows only.
        assert changed or (engine.dialect.name, revision) in NO_CHANGE, revision
    _matches_the_models(engine)
    config = alembic_config(engine)
    for position in range(len(revisions) - 1, -1, -1):
        below = revisions[position - 1] if position else None
        command.downgrade(config, below or "base")
        known = KNOWN.get((engine.dialect.name, below or "base"), {})
        assert _differences(schemas[below], _schema(engine)) == known, (
            f"downgrade of {revisions[position]}"
        )
    upgrade_database(engine)
    assert _differences(schemas[revisions[-1]], _schema(engine)) == {}


#: The NOT NULL columns of ``images`` from 0006 on (typed: SQLite keeps a UUID as hex text).
IMAGES = sa.table(
    "images",
    sa.column("id", sa.Uuid()),
    *(sa.column(n, sa.String()) for n in ("filename", "stored_name", "format", "sha256", "dtype")),
    *(
        sa.column(n, sa.Integer())
        for n in ("size_bytes", "width", "height", "depth", "channels", "timepoints")
    ),
    *(sa.column(n, sa.Integer()) for n in ("samples_per_pixel", "bit_depth")),
    sa.column("scenes", sa.JSON()),
    sa.column("thumbnail_ready", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _insert_image(connection: Any) -> uuid.UUID:
    image_id = uuid.uuid4()
    connection.execute(
        sa.insert(IMAGES).values(
            id=image_id,
            filename="a.tif",
            stored_name=image_id.hex,
            format="tiff",
            sha256="0" * 64,
            dtype="uint8",
            size_bytes=1,
            width=1,
            height=1,
            depth=1,
            channels=1,
            timepoints=1,
            samples_per_pixel=1,
            bit_depth=8,
            scenes=[],
            thumbnail_ready=False,
            created_at=datetime.now(UTC),
        )
    )
    return image_id


def test_accounts_put_existing_images_in_the_default_group(engine: Engine) -> None:
    """0007: an image stored before accounts is in ``default`` (read-only), with no owner."""
    upgrade_database(engine, "0006")
    with engine.begin() as connection:
        image = _insert_image(connection)
    upgrade_database(engine, "0007")
    owned = sa.table(
        "images",
        sa.column("id", sa.Uuid()),
        sa.column("owner_id", sa.Integer()),
        sa.column("group_id", sa.Integer()),
    )
    with engine.connect() as connection:
        groups = connection.exec_driver_sql("SELECT id, name, permissions FROM groups").all()
        row = connection.execute(
            sa.select(owned.c.owner_id, owned.c.group_id).where(owned.c.id == image)
        ).one()
    assert [(name, level) for _, name, level in groups] == [("default", "read-only")]
    assert tuple(row) == (None, groups[0][0])


@pytest.mark.parametrize(
    ("url", "dialect_type"),
    [
        ("sqlite:///unused.db", "JSON"),
        ("postgresql+psycopg://nobody:p%40ss@127.0.0.1/unused", "JSONB"),
    ],
)
def test_offline_sql_is_written_for_the_engines_dialect(url: str, dialect_type: str) -> None:
    """``alembic upgrade --sql`` (no connection): the config's URL names the dialect."""
    import io

    engine = sa.create_engine(url)
    config = alembic_config(engine)
    # The password as given ("p%40ss": an escaped "@"), not hidden.
    assert config.get_main_option("sqlalchemy.url") == url
    assert config.get_main_option("script_location") == str(MIGRATIONS_DIR)
    config.output_buffer = io.StringIO()
    command.upgrade(config, "0001", sql=True)
    script = config.output_buffer.getvalue()
    assert "CREATE TABLE images (" in script
    assert f"metadata {dialect_type} NOT NULL" in script
    assert "UPDATE alembic_version SET version_num='0001'" in script or (
        "INSERT INTO alembic_version (version_num) VALUES ('0001')" in script
    )
    engine.dispose()


def test_a_percent_sign_in_the_database_path_is_no_obstacle(tmp_path: Path) -> None:
    """``configparser`` interpolation must not see the URL's ``%`` (the service would not start)."""
    folder = tmp_path / "50% done"
    folder.mkdir()
    engine = make_engine(f"sqlite:///{folder / 'm.db'}")
    try:
        upgrade_database(engine)
        with engine.connect() as connection:
            version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert version.scalar_one() == _revisions(engine)[-1]
    finally:
        engine.dispose()


def test_a_percent_sign_in_the_install_folder_is_no_obstacle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scripts' folder goes through the same interpolation (a venv under ``50%``)."""
    import shutil

    from zstack_analyzer.service.db import migrations

    copy = tmp_path / "50%" / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", copy)
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        assert alembic_config(engine).get_main_option("script_location") == str(copy)
        upgrade_database(engine, "0001")
    finally:
        engine.dispose()


def test_the_callers_engine_is_the_one_migrated() -> None:
    """An in-memory database exists only in its engine: env.py must use the one passed."""
    from sqlalchemy.pool import StaticPool

    engine = sa.create_engine("sqlite://", poolclass=StaticPool)
    try:
        upgrade_database(engine, "0001")
        assert sa.inspect(engine).get_table_names() == ["alembic_version", "images"]
    finally:
        engine.dispose()
