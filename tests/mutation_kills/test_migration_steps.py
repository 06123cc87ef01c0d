"""Each Alembic revision alone: up one step from the revision below, then down again, with rows.

Why: ``test_migration_round_trip.py`` walks the whole chain (18-45 s), so a mutation run of one
revision paid for fourteen others per mutant. Here the database at the revision below is built
once per session by the revisions as written (built up to head, the chain matches the models,
as in the round trip), and copied for each test (a file on SQLite, ``CREATE DATABASE ... TEMPLATE`` on
PostgreSQL). A test then runs only the revision under test: the upgrade must give exactly the
schema the revisions as written give at that revision (tables, columns with type, nullability,
default and order, keys, foreign keys with ``ON DELETE``, constraints by name, indexes with their
options, SQLite's table, index and trigger SQL, PostgreSQL's triggers and functions), the rows put
in below must come out as the revision promises (search fields backfilled, duplicates folded,
metadata moved, images put in ``default``, key-value pairs counted, ...), and the revision's own
triggers must act on new rows; the downgrade must give back the schema below and keep the rows.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql

from tests.mutation_kills.test_migration_round_trip import _matches_the_models, _schema, _sql
from tests.needs import unavailable
from tests.service.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database
from zstack_analyzer.service.db.migrations import alembic_config, upgrade_database
from zstack_analyzer.service.db.session import make_engine

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from sqlalchemy.engine import Connection, Engine

REVISIONS = [
    "0001",
    "0003",
    "0004",
    "0005",
    "0006",
    "0007",
    "0008",
    "0009",
    "0010",
    "0011",
    "0014",
    "0015",
    "0016",
    "0017",
    "0018",
    "0019",
]
BELOW = dict(zip(REVISIONS, [None, *REVISIONS[:-1]], strict=True))
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


@contextmanager
def _as_written() -> Iterator[None]:
    """Run the revisions as written, whatever mutant a mutation runner has made active.

    Why: the databases below the revision under test are session fixtures, which a mutation
    runner keeps across mutants and, after a failed clean check, builds again while the next
    mutant is active (``scripts/mutate_session.py``; mutmut reads ``MUTANT_UNDER_TEST``). The
    starting point must be the revisions as written, or a mutant would be compared with itself.
    Outside a mutation run the variable is not set and this changes nothing.
    """
    saved = os.environ.get("MUTANT_UNDER_TEST")
    os.environ["MUTANT_UNDER_TEST"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MUTANT_UNDER_TEST"]
        else:
            os.environ["MUTANT_UNDER_TEST"] = saved


def _full_schema(engine: Engine) -> dict[Any, Any]:
    """The round trip's schema, plus what only a one-step comparison can ask for exactly.

    SQLite: each table's ``CREATE TABLE`` as stored (declared types, constraint names,
    ``WITHOUT ROWID``). PostgreSQL: every constraint's definition under its name and each
    table's column order (0017 rebuilds ``images`` with the search columns first) and each
    column's type as the catalog names it (``timestamp with time zone``).
    """
    found = _schema(engine)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
                " AND name <> 'alembic_version' AND sql IS NOT NULL"
            )
            for name, sql in rows:
                # A batch rebuild renames its copy: SQLite then quotes the name, the same table.
                found[("table", name)] = re.sub(
                    r'^CREATE TABLE "(\w+)"', r"CREATE TABLE \1", _sql(sql) or ""
                )
        else:
            for table, name, definition in connection.exec_driver_sql(
                "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
                " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
                " WHERE n.nspname = 'public' AND c.conrelid::regclass::text <> 'alembic_version'"
            ):
                found[(table, "constraint", name)] = definition
            for table, columns in connection.exec_driver_sql(
                "SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a"
                " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0"
                " AND NOT a.attisdropped AND c.relname <> 'alembic_version' GROUP BY c.relname"
            ):
                found[(table, "column order")] = tuple(columns)
            # The reflected type's name leaves out "with time zone": the catalog's own name.
            for table, column, type_ in connection.exec_driver_sql(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)"
                " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0"
                " AND NOT a.attisdropped AND c.relname <> 'alembic_version'"
            ):
                found[(table, column, "type on PostgreSQL")] = type_
    return found


def _differences(expected: dict[Any, Any], found: dict[Any, Any]) -> dict[Any, Any]:
    return {
        key: {"found": found.get(key), "expected": expected.get(key)}
        for key in expected.keys() | found.keys()
        if expected.get(key) != found.get(key)
    }


# -- the databases below each revision, built once per session -------------------------------


@dataclass
class _Clean:
    """One dialect's databases at each revision, built by the revisions as written."""

    dialect: str
    folder: Path
    admin: str | None
    databases: dict[str | None, str] = field(default_factory=dict)  # revision: file or db name
    schemas: dict[str | None, dict[Any, Any]] = field(default_factory=dict)

    def copy(self, revision: str | None, target: Path) -> str:
        """The URL of a new database holding what the clean one at ``revision`` holds."""
        self._build(revision)
        if self.dialect == "sqlite":
            if revision is not None:
                shutil.copyfile(self.databases[revision], target)
            return f"sqlite:///{target}"
        assert self.admin is not None
        template = None if revision is None else self.databases[revision]
        return create_pg_database(self.admin, template)

    def schema(self, revision: str | None) -> dict[Any, Any]:
        self._build(revision)
        return self.schemas[revision]

    def _build(self, revision: str | None) -> None:
        if revision in self.schemas:
            return
        below = BELOW[revision] if revision is not None else None
        if revision is None:
            self.schemas[None] = {}
            return
        self._build(below)
        with _as_written():
            if self.dialect == "sqlite":
                path = self.folder / f"{revision}.db"
                url = self.copy(below, path)
                self.databases[revision] = str(path)
            else:
                url = self.copy(below, self.folder)
                self.databases[revision] = url.rsplit("/", 1)[1]
            engine = make_engine(url)
            try:
                upgrade_database(engine, revision)
                self.schemas[revision] = _full_schema(engine)
                if revision == REVISIONS[-1]:
                    _matches_the_models(engine)  # the chain as written ends at the models
            finally:
                engine.dispose()

    def drop(self) -> None:
        if self.admin is not None:
            for name in self.databases.values():
                drop_pg_database(self.admin, _pg_url(self.admin, name))


def _pg_url(admin: str, name: str) -> str:
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def clean_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, _Clean]]:
    """Per dialect, the databases at each revision (built when first asked for)."""
    made: dict[str, _Clean] = {}
    yield made
    for clean in made.values():
        clean.drop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def clean(
    request: pytest.FixtureRequest,
    clean_databases: dict[str, _Clean],
    tmp_path_factory: pytest.TempPathFactory,
) -> _Clean:
    if request.param not in clean_databases:
        admin = None
        if request.param == "postgres":
            import psycopg

            try:
                with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
            admin = PG_ADMIN_URL
        clean_databases[request.param] = _Clean(
            "sqlite" if admin is None else "postgresql",
            tmp_path_factory.mktemp(f"migration-steps-{request.param}"),
            admin,
        )
    return clean_databases[request.param]


@dataclass
class Step:
    """A test's own database at the revision below the one under test."""

    clean: _Clean
    revision: str
    engine: Engine

    @property
    def below(self) -> str | None:
        return BELOW[self.revision]

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def up(self, *, enforce_foreign_keys: bool = True) -> None:
        """One step up; without foreign keys enforced as Alembic's command line runs it.

        (``alembic upgrade`` with only the URL: env.py makes a plain engine, and SQLite then
        enforces no foreign key, so no ``ON DELETE CASCADE`` tidies up after the revision.)
        """
        if enforce_foreign_keys:
            upgrade_database(self.engine, self.revision)
        else:
            plain = sa.create_engine(self.engine.url)
            try:
                upgrade_database(plain, self.revision)
            finally:
                plain.dispose()
        found = _full_schema(self.engine)
        assert _differences(self.clean.schema(self.revision), found) == {}, "upgrade"
        assert self._version() == self.revision

    def down(self, known: dict[Any, Any] | None = None) -> None:
        command.downgrade(alembic_config(self.engine), self.below or "base")
        found = _full_schema(self.engine)
        differences = _differences(self.clean.schema(self.below), found)
        assert differences == (known or {}), "downgrade"
        assert self._version() == self.below

    def _version(self) -> str | None:
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


@pytest.fixture
def step(request: pytest.FixtureRequest, clean: _Clean, tmp_path: Path) -> Iterator[Step]:
    revision = request.node.callspec.params["revision"]
    url = clean.copy(BELOW[revision], tmp_path / "step.db")
    engine = make_engine(url)
    try:
        yield Step(clean, revision, engine)
    finally:
        engine.dispose()
        if clean.admin is not None:
            drop_pg_database(clean.admin, url)


# -- rows ---------------------------------------------------------------------------------------

#: The images columns' types (those a revision below may not have yet are left out per database).
IMAGE_TYPES: dict[str, Any] = {
    "id": sa.Uuid(),
    "metadata": JSON,
    "scenes": JSON,
    "thumbnail_ready": sa.Boolean(),
    "stored_in_place": sa.Boolean(),
    "created_at": sa.DateTime(timezone=True),
    "acquired_at": sa.DateTime(timezone=True),
    "pixel_size_x": sa.Float(),
    "magnification": sa.Float(),
    **{
        name: sa.Integer()
        for name in (
            "size_bytes",
            "width",
            "height",
            "depth",
            "channels",
            "timepoints",
            "samples_per_pixel",
            "bit_depth",
            "owner_id",
            "group_id",
            "source_size",
            "source_mtime_ns",
            "source_dev",
            "source_ino",
        )
    },
}
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _images(connection: Connection) -> sa.TableClause:
    names = [c["name"] for c in sa.inspect(connection).get_columns("images")]
    return sa.table(
        "images",
        *(sa.column(n, IMAGE_TYPES.get(n, sa.String())) for n in names if n != "search_vector"),
    )


def _add_image(connection: Connection, **values: Any) -> uuid.UUID:
    """One images row with every NOT NULL column the database has at its revision."""
    images = _images(connection)
    image_id = values.pop("id", None) or uuid.uuid4()
    row: dict[str, Any] = {
        "id": image_id,
        "filename": "a.tif",
        "stored_name": image_id.hex,
        "format": "tiff",
        "size_bytes": 1,
        "sha256": "0" * 64,
        "width": 4,
        "height": 4,
        "depth": 1,
        "channels": 1,
        "timepoints": 1,
        "samples_per_pixel": 1,
        "bit_depth": 8,
        "dtype": "uint8",
        "metadata": {},
        "scenes": [],
        "thumbnail_ready": False,
        "created_at": T0,
        **values,
    }
    connection.execute(sa.insert(images).values({k: v for k, v in row.items() if k in images.c}))
    return image_id


def _column(engine: Engine, column: str, *, order: str = "filename") -> list[Any]:
    with engine.connect() as connection:
        images = _images(connection)
        return list(
            connection.execute(sa.select(images.c[column]).order_by(images.c[order])).scalars()
        )


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())  # noqa: S608


# -- one test per revision and database -------------------------------------------------------


def test_the_revisions_are_the_chain() -> None:
    engine = sa.create_engine("sqlite://")
    script = ScriptDirectory.from_config(alembic_config(engine))
    assert [r.revision for r in reversed(list(script.walk_revisions()))] == REVISIONS
    engine.dispose()


STEPS: dict[str, Callable[[Step], None]] = {}


def _steps(*revisions: str) -> Callable[[Callable[[Step], None]], Callable[[Step], None]]:
    def register(check: Callable[[Step], None]) -> Callable[[Step], None]:
        for revision in revisions:
            STEPS[revision] = check
        return check

    return register


@pytest.mark.parametrize("revision", REVISIONS)
def test_one_revision_up_and_down(step: Step, revision: str) -> None:
    STEPS.get(revision, _schema_only)(step)


def _schema_only(step: Step) -> None:
    """Revisions that only add tables and indexes: the schema says it all (no rows to move)."""
    step.up()
    step.down()


@_steps("0001")
def _images_table(step: Step) -> None:
    step.up()
    with step.engine.begin() as connection:
        _add_image(connection, metadata={"objective": {"name": "Plan"}}, scenes=[{"name": "s"}])
    assert _column(step.engine, "metadata") == [{"objective": {"name": "Plan"}}]
    assert _column(step.engine, "scenes") == [[{"name": "s"}]]
    step.down()


@_steps("0003")
def _in_place_columns(step: Step) -> None:
    with step.engine.begin() as connection:
        kept = _add_image(connection, filename="old.tif", metadata={"k": "v"})
    step.up()
    # The row stored before is a stored copy, of no source.
    assert _column(step.engine, "stored_in_place") == [False]
    assert _column(step.engine, "source_path") == [None]
    step.down()  # the batch rebuild keeps the rows
    assert _column(step.engine, "id") == [kept]
    assert _column(step.engine, "metadata") == [{"k": "v"}]


#: Metadata of a record stored before 0004: what its search fields come from.
OLD_METADATA = {
    "file_format": "CZI",
    "channels": [
        {"name": "Hoechst 33342", "fluorophore": "DAPI"},
        "not a channel",
        {"name": "GFP"},
    ],
    "objective": {"name": "Plan-Apochromat 63x/1.40 Oil", "magnification": 63, "immersion": "Oil"},
    "acquired_at": "2024-05-06T07:08:09+02:00",
}


def _fts_rowids(connection: Connection, word: str) -> set[int]:
    return set(
        connection.exec_driver_sql(
            "SELECT rowid FROM images_fts WHERE images_fts MATCH ?", (word,)
        ).scalars()
    )


def _vector_ids(connection: Connection, word: str) -> set[str]:
    return {
        str(i)
        for i in connection.exec_driver_sql(
            "SELECT id FROM images WHERE search_vector @@ to_tsquery('simple', %(w)s)", {"w": word}
        ).scalars()
    }


def _found(step: Step, word: str) -> set[str]:
    """Ids of the images the full-text index finds ``word`` in (the index, not the text)."""
    with step.engine.connect() as connection:
        if step.postgres:
            return _vector_ids(connection, word)
        rowids = _fts_rowids(connection, word)
        if not rowids:
            return set()
        ids = connection.exec_driver_sql(
            f"SELECT id FROM images WHERE rowid IN ({','.join(map(str, rowids))})"  # noqa: S608
        ).scalars()
        return {str(uuid.UUID(i)) for i in ids}


@_steps("0004")
def _search_fields(step: Step) -> None:
    with step.engine.begin() as connection:
        old = _add_image(connection, filename="old.czi", metadata=OLD_METADATA)
        bare = _add_image(connection, filename="zzz.tif", metadata={})
    step.up()
    with step.engine.connect() as connection:
        images = _images(connection)
        row = connection.execute(
            sa.select(
                images.c.search_text,
                images.c.objective,
                images.c.magnification,
                images.c.immersion,
                images.c.acquired_at,
            ).where(images.c.id == old)
        ).one()
        channels = connection.exec_driver_sql(
            "SELECT image_id, position, name_key, fluorophore_key FROM image_channels"
            " ORDER BY position"
        ).all()
    words = row.search_text.split()
    assert {"old", "czi", "hoechst", "33342", "dapi", "gfp", "oil"} <= set(words)
    assert row.objective == "plan-apochromat 63x/1.40 oil"
    assert (row.magnification, row.immersion) == (63.0, "oil")
    assert row.acquired_at.astimezone(UTC) == datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)
    if not step.postgres:  # stored as the models store it: date filters compare this text
        with step.engine.connect() as connection:
            stored = connection.exec_driver_sql("SELECT acquired_at FROM images").scalars()
            assert set(stored) == {"2024-05-06 05:08:09.000000", None}
    as_hex = old.hex if not step.postgres else old
    assert [tuple(c) for c in channels] == [
        (as_hex, 0, "hoechst 33342", "dapi"),
        (as_hex, 2, "gfp", None),
    ]
    # The index holds the backfilled rows, and its triggers keep it in step from now on.
    assert _found(step, "hoechst") == {str(old)}
    assert _found(step, "zzz") == {str(bare)}
    with step.engine.begin() as connection:
        new = _add_image(connection, filename="new.tif", search_text="zebrafish embryo")
    assert _found(step, "zebrafish") == {str(new)}
    with step.engine.begin() as connection:
        connection.execute(
            sa.update(images).where(images.c.id == new).values(search_text="medaka larva")
        )
    assert (_found(step, "zebrafish"), _found(step, "medaka")) == (set(), {str(new)})
    with step.engine.begin() as connection:
        connection.execute(sa.delete(images).where(images.c.id == new))
    assert _found(step, "medaka") == set()
    step.down()
    assert _column(step.engine, "filename") == ["old.czi", "zzz.tif"]
    assert _column(step.engine, "metadata") == [OLD_METADATA, {}]


@_steps("0005")
def _duplicates_folded(step: Step) -> None:
    def at(n: int) -> uuid.UUID:
        return uuid.UUID(int=n)

    in_place = {"stored_in_place": True, "source_path": "/archive/x.tif"}
    with step.engine.begin() as connection:
        # Three records of one original: the oldest stays; of two equally old, the lower id.
        _add_image(
            connection, id=at(1), filename="x1", created_at=T0 + timedelta(hours=2), **in_place
        )
        _add_image(connection, id=at(9), filename="x2", created_at=T0, **in_place)
        _add_image(connection, id=at(5), filename="x3", created_at=T0, **in_place)
        _add_image(
            connection, id=at(2), filename="y", source_path="/archive/y.tif", stored_in_place=True
        )
        _add_image(connection, id=at(3), filename="z", source_path="/archive/x.tif")  # a copy
        connection.exec_driver_sql(
            "INSERT INTO image_channels (image_id, position, name_key) VALUES "  # noqa: S608 (our constants)
            + ", ".join(
                f"('{i.hex if not step.postgres else i}', 0, '{n}')"
                for i, n in ((at(1), "a"), (at(9), "b"), (at(5), "c"))
            )
        )
    step.up(enforce_foreign_keys=False)  # the revision deletes the channels itself
    assert _column(step.engine, "filename") == ["x3", "y", "z"]
    assert _column(step.engine, "source_dev") == [None, None, None]
    with step.engine.connect() as connection:
        left = connection.exec_driver_sql("SELECT name_key FROM image_channels").scalars().all()
    assert left == ["c"]
    # The database refuses a second in-place record of one original, not a copy of it.
    with step.engine.begin() as connection:
        _add_image(connection, filename="z2", source_path="/archive/x.tif", stored_in_place=False)
    with pytest.raises(sa.exc.IntegrityError), step.engine.begin() as connection:
        _add_image(connection, filename="x4", **in_place)
    step.down()
    with step.engine.begin() as connection:  # no index any more
        _add_image(connection, filename="x5", **in_place)
    assert _column(step.engine, "filename") == ["x3", "x5", "y", "z", "z2"]


@_steps("0006")
def _metadata_table(step: Step) -> None:
    with step.engine.begin() as connection:
        _add_image(connection, filename="a", metadata={"objective": {"name": "Plan"}})
    step.up()
    with step.engine.begin() as connection:
        rows = connection.exec_driver_sql("SELECT metadata FROM image_metadata").scalars().all()
        _add_image(connection, filename="b")  # no metadata row
    assert [r if isinstance(r, dict) else __import__("json").loads(r) for r in rows] == [
        {"objective": {"name": "Plan"}}
    ]
    # SQLite's native ADD COLUMN needs a default for a NOT NULL column; it stays.
    known: dict[Any, Any] = {}
    if step.postgres:  # ADD COLUMN puts the column last
        order = step.clean.schema(step.below)[("images", "column order")]
        moved_order = (*(c for c in order if c != "metadata"), "metadata")
        known[("images", "column order")] = {"found": moved_order, "expected": order}
    else:
        key = ("images", "metadata", "default")
        known = {key: {"found": "'{}'", "expected": None}}
        table = step.clean.schema(step.below)[("table", "images")]
        moved = table.replace(" metadata JSON NOT NULL,", "").replace(
            ", PRIMARY KEY", ", metadata JSON NOT NULL DEFAULT '{}', PRIMARY KEY"
        )
        known[("table", "images")] = {"found": moved, "expected": table}
    step.down(known)
    assert _column(step.engine, "metadata") == [{"objective": {"name": "Plan"}}, {}]


@_steps("0007")
def _accounts(step: Step) -> None:
    with step.engine.begin() as connection:
        image = _add_image(connection, filename="before accounts")
        connection.execute(
            sa.text("INSERT INTO image_metadata (image_id, metadata) VALUES (:i, :m)").bindparams(
                sa.bindparam("i", type_=sa.Uuid()), sa.bindparam("m", type_=JSON)
            ),
            {"i": image, "m": {"kept": True}},
        )
    before = datetime.now(UTC)
    step.up()
    with step.engine.connect() as connection:
        groups = connection.exec_driver_sql(
            "SELECT id, name, permissions, created_at FROM groups"
        ).all()
        users = _count(step.engine, "users")
    assert [(name, level) for _, name, level, _ in groups] == [("default", "read-only")]
    created = groups[0][3]
    created = created if isinstance(created, datetime) else datetime.fromisoformat(created)
    assert created.replace(tzinfo=created.tzinfo or UTC) >= before - timedelta(seconds=1)
    assert users == 0
    assert (_column(step.engine, "owner_id"), _column(step.engine, "group_id")) == (
        [None],
        [groups[0][0]],
    )
    step.down()
    # The image and its metadata row stay (a batch rebuild would have cascaded the delete).
    assert _column(step.engine, "id") == [image]
    assert _count(step.engine, "image_metadata") == 1


@_steps("0008")
def _audit(step: Step) -> None:
    step.up()
    with step.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO audit_events (at, action, details) VALUES ('2026-12-01', 'login', '{}')"
        )
    statements = ["UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"]
    if step.postgres:
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with (
            pytest.raises(sa.exc.DatabaseError, match="audit_events is append-only"),
            step.engine.begin() as connection,
        ):
            connection.exec_driver_sql(statement)
    assert _count(step.engine, "audit_events") == 1
    step.down()


def _pending_pages(step: Step) -> int:
    with step.engine.begin() as connection:
        # pgstattuple's functions in a schema of their own: "public" is what the schema compares.
        connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS stats")
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple SCHEMA stats")
        return int(
            connection.exec_driver_sql(
                "SELECT pending_pages FROM stats.pgstatginindex('ix_images_search_vector')"
            ).scalar_one()
        )


@_steps("0014")
def _no_pending_list(step: Step) -> None:
    if step.postgres:
        with step.engine.begin() as connection:
            for n in range(40):
                _add_image(connection, filename=f"f{n}", search_text=f"liver section {n}")
        assert _pending_pages(step) > 0
    step.up()
    if step.postgres:
        assert _pending_pages(step) == 0
    step.down()


LONG_FORMAT = "Gatan Digital Micrograph (Bio-Formats)"


@_steps("0015")
def _format_length(step: Step) -> None:
    step.up()
    with step.engine.begin() as connection:
        _add_image(connection, filename="a", format=LONG_FORMAT)
        _add_image(connection, filename="b", format="TIFF")
    step.down()
    cut = LONG_FORMAT[:32] if step.postgres else LONG_FORMAT  # SQLite keeps what it was given
    assert _column(step.engine, "format") == [cut, "TIFF"]


def _analyzed(step: Step, table: str) -> bool:
    """Whether the planner has column statistics of ``table`` (only ANALYZE makes them)."""
    with step.engine.connect() as connection:
        found = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = %(t)s",
            {"t": table},
        ).scalar_one()
    return int(found) > 0


def _vectors(step: Step) -> list[tuple[Any, ...]]:
    with step.engine.connect() as connection:
        return [
            tuple(r)
            for r in connection.exec_driver_sql(
                "SELECT filename, search_text, search_vector::text FROM images ORDER BY filename"
            )
        ]


def _order_below(step: Step) -> Any:
    return step.clean.schema(step.below)[("images", "column order")]


@_steps("0017")
def _vector_only(step: Step) -> None:
    metadata = {"channels": [{"name": "Hoechst"}], "objective": {"name": "Plan"}}
    with step.engine.begin() as connection:
        first = _add_image(
            connection,
            filename="a.czi",
            search_text="zebrafish embryo zebrafish",
            scenes=[{"name": "well b2"}],
            created_at=T0 + timedelta(hours=1),
        )
        _add_image(connection, filename="b.czi", search_text="medaka", created_at=T0)
        connection.execute(
            sa.text("INSERT INTO image_metadata (image_id, metadata) VALUES (:i, :m)").bindparams(
                sa.bindparam("i", type_=sa.Uuid()), sa.bindparam("m", type_=JSON)
            ),
            {"i": first, "m": metadata},
        )
    if step.postgres:
        assert _vectors(step)[0][2] == "'embryo':2 'zebrafish':1,3"
        assert not _analyzed(step, "images")
    step.up()
    if not step.postgres:
        step.down()
        return
    assert _analyzed(step, "images")  # the rebuilt table's statistics, at once
    # The text consumed, the vector without positions; rows, their metadata and links kept.
    assert _vectors(step) == [("a.czi", None, "'embryo' 'zebrafish'"), ("b.czi", None, "'medaka'")]
    assert _count(step.engine, "image_metadata") == 1
    with step.engine.begin() as connection:
        _add_image(connection, filename="c.czi", search_text="nematode worm")
        connection.exec_driver_sql("UPDATE images SET thumbnail_ready = true")
    assert _vectors(step)[2] == ("c.czi", None, "'nematode' 'worm'")
    assert _vectors(step)[0] == ("a.czi", None, "'embryo' 'zebrafish'")
    # The rebuilt row's column order stays (it changes no answer; a second rebuild would
    # cost a copy of the table for nothing).
    order = step.clean.schema(step.revision)[("images", "column order")]
    step.down({("images", "column order"): {"found": order, "expected": _order_below(step)}})
    # The text derived again from each record's metadata and scenes, the vector with positions.
    rows = _vectors(step)
    assert rows[0][1] == "a czi hoechst plan well b2"
    assert rows[0][2] == "'a':1 'b2':6 'czi':2 'hoechst':3 'plan':4 'well':5"
    assert rows[1][1:] == ("b czi", "'b':1 'czi':2")
    assert rows[2][1] == "c czi"
    assert _count(step.engine, "image_metadata") == 1


@_steps("0018")
def _key_value_images(step: Step) -> None:
    with step.engine.begin() as connection:
        first = _add_image(connection, filename="i0")
        second = _add_image(connection, filename="i1")
        connection.exec_driver_sql(
            "INSERT INTO datasets (name, description, created_at, updated_at)"
            " VALUES ('D', '', '2026-12-01', '2026-12-01')"
        )
        dataset = connection.exec_driver_sql("SELECT id FROM datasets").scalar_one()
        _add_pairs(
            connection,
            [
                (first, None, "strain", "n2"),
                (first, None, "strain", "n2"),
                (first, None, "treatment", "dmso"),
                (second, None, "strain", "n2"),
                (None, dataset, "strain", "n2"),
            ],
        )
    step.up()
    assert _kept(step) == {
        ("strain", "n2", first, 2),
        ("treatment", "dmso", first, 1),
        ("strain", "n2", second, 1),
    }
    # From now on the triggers keep it: an insert counts, an update moves, a delete uncounts.
    with step.engine.begin() as connection:
        _add_pairs(connection, [(second, None, "strain", "n2"), (None, dataset, "x", "y")])
    assert ("strain", "n2", second, 2) in _kept(step)
    with step.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE key_values SET value_key = 'cb' WHERE key_key = 'treatment'"
        )
        connection.exec_driver_sql(
            "DELETE FROM key_values WHERE id = (SELECT min(id) FROM key_values WHERE key_key = 'strain')"
        )
    assert _kept(step) == {
        ("strain", "n2", first, 1),
        ("treatment", "cb", first, 1),
        ("strain", "n2", second, 2),
    }
    with step.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM key_values WHERE key_key = 'treatment'")
    assert ("treatment", "cb", first, 1) not in _kept(step)
    if step.postgres:  # the planner knows the filled table at once (ANALYZE)
        assert _analyzed(step, "key_value_images")
    step.down()
    assert _count(step.engine, "key_values") == 5


def _add_pairs(connection: Connection, pairs: list[tuple[Any, ...]]) -> None:
    table = sa.table(
        "key_values",
        sa.column("image_id", sa.Uuid()),
        sa.column("dataset_id", sa.Integer()),
        sa.column("position", sa.Integer()),
        sa.column("key", sa.String()),
        sa.column("value", sa.String()),
        sa.column("key_key", sa.String()),
        sa.column("value_key", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    connection.execute(
        sa.insert(table),
        [
            {
                "image_id": image,
                "dataset_id": dataset,
                "position": n,
                "key": key,
                "value": value,
                "key_key": key,
                "value_key": value,
                "created_at": T0,
            }
            for n, (image, dataset, key, value) in enumerate(pairs)
        ],
    )


def _kept(step: Step) -> set[tuple[Any, ...]]:
    table = sa.table(
        "key_value_images",
        sa.column("key_key", sa.String()),
        sa.column("value_key", sa.String()),
        sa.column("image_id", sa.Uuid()),
        sa.column("pairs", sa.Integer()),
    )
    with step.engine.connect() as connection:
        return {tuple(r) for r in connection.execute(sa.select(table))}


# -- 0019: the search text of records 0004 filled in without their scene names (fix-searchtext) --

#: A plate stored before 0004: its scene names are in ``images.scenes``, not in the metadata.
PLATE_METADATA = {"file_format": "CZI", "channels": [{"name": "DAPI"}]}
PLATE_SCENES = [{"name": "Well B2"}, {"name": "Well C3"}, {"name": "Overview"}]


def _first_0004_text(metadata: dict[str, Any], filename: str) -> str:
    """The search text 0004 wrote before it was corrected: file name and metadata, no scene names."""
    from zstack_analyzer.service.db.search_fields import derive_fields

    return derive_fields(metadata, filename).search_text


def _add_record(
    connection: Connection,
    filename: str,
    metadata: dict[str, Any],
    scenes: list[Any],
    search_text: str,
    **values: Any,
) -> uuid.UUID:
    """An image with its metadata row (0006 on) and the search text given (indexed by the triggers)."""
    image = _add_image(
        connection, filename=filename, scenes=scenes, search_text=search_text, **values
    )
    connection.execute(
        sa.text("INSERT INTO image_metadata (image_id, metadata) VALUES (:i, :m)").bindparams(
            sa.bindparam("i", type_=sa.Uuid()), sa.bindparam("m", type_=JSON)
        ),
        {"i": image, "m": metadata},
    )
    return image


def _indexed(step: Step) -> list[tuple[str, str]]:
    """Each record's indexed text by file name: SQLite's stored text, PostgreSQL's vector."""
    column = "search_vector::text" if step.postgres else "search_text"
    with step.engine.connect() as connection:
        return [
            tuple(r)
            for r in connection.exec_driver_sql(
                f"SELECT filename, {column} FROM images ORDER BY filename"  # noqa: S608 (constant)
            )
        ]


def _row_versions(step: Step) -> dict[str, str]:
    """PostgreSQL's row version of each record (``xmin``: a write makes a new one)."""
    with step.engine.connect() as connection:
        return dict(connection.exec_driver_sql("SELECT filename, xmin::text FROM images").all())


def _fts_intact(step: Step) -> None:
    """SQLite's FTS5 index agrees with the texts in ``images`` (raises if not)."""
    with step.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO images_fts (images_fts, rank) VALUES ('integrity-check', 1)"
        )


@_steps("0019")
def _search_text_with_scenes(step: Step) -> None:
    from zstack_analyzer.service.db.search_fields import derive_record_fields

    right_metadata, right_scenes = {"channels": [{"name": "GFP"}]}, [{"name": "Well D4"}]
    with step.engine.begin() as connection:
        plate = _add_record(
            connection,
            "plate.czi",
            PLATE_METADATA,
            PLATE_SCENES,
            _first_0004_text(PLATE_METADATA, "plate.czi"),
        )
        _add_record(
            connection,
            "right.czi",
            right_metadata,
            right_scenes,
            derive_record_fields(right_metadata, right_scenes, "right.czi").search_text,
        )
        # No metadata row, no file name: its text derives to nothing.
        _add_image(connection, filename="", search_text="stale words")
    assert (_found(step, "c3"), _found(step, "stale")) == (
        set(),
        {str(_column(step.engine, "id")[0])},
    )
    if step.postgres:
        versions = _row_versions(step)
    step.up()
    assert _found(step, "c3") == _found(step, "overview") == {str(plate)}
    assert _found(step, "stale") == set()
    if step.postgres:
        expected = [
            ("", ""),
            ("plate.czi", "'b2' 'c3' 'czi' 'dapi' 'overview' 'plate' 'well'"),
            ("right.czi", "'czi' 'd4' 'gfp' 'right' 'well'"),
        ]
        # Only the records whose index held another text were written.
        assert _row_versions(step)["right.czi"] == versions["right.czi"]
        assert _row_versions(step)["plate.czi"] != versions["plate.czi"]
        assert _column(step.engine, "search_text") == [None, None, None]
    else:
        expected = [
            ("", ""),
            ("plate.czi", "plate czi dapi czi well b2 well c3 overview"),
            ("right.czi", "right czi gfp well d4"),
        ]
        _fts_intact(step)
    assert _indexed(step) == expected
    step.down()  # nothing to undo: the schema of 0018, the texts valid there
    assert _indexed(step) == expected
    assert _found(step, "c3") == {str(plate)}
    # Idempotent: up again derives the same texts and writes no record.
    written = _row_versions(step) if step.postgres else None
    step.up()
    assert _indexed(step) == expected
    if step.postgres:
        assert _row_versions(step) == written
    else:
        _fts_intact(step)


@pytest.fixture
def at_0018(clean: _Clean, tmp_path: Path) -> Iterator[Engine]:
    """A database of this test's own at revision 0018 (a copy of the session's template)."""
    url = clean.copy("0018", tmp_path / "at-0018.db")
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        if clean.admin is not None:
            drop_pg_database(clean.admin, url)


def test_a_plate_0004_indexed_without_its_scenes_is_found_by_a_scene_name_at_head(
    at_0018: Engine,
) -> None:
    """A database that ran the first 0004 finds a multi-scene image by a scene name after the upgrade.

    Through the search the service answers with (``search_rows``, as ``GET /api/images/search``).
    """
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.db.search import SearchFilters, search_rows
    from zstack_analyzer.service.db.session import Database

    with at_0018.begin() as connection:
        _add_record(
            connection,
            "plate.czi",
            PLATE_METADATA,
            PLATE_SCENES,
            _first_0004_text(PLATE_METADATA, "plate.czi"),
        )
    database = Database(at_0018)

    def search(q: str) -> tuple[list[tuple[Any, ...]], int]:
        rows, total = database.call(search_rows, SearchFilters(q=q), [Image.filename])
        return [tuple(r[:-1]) for r in rows], total

    assert search("well c3") == ([], 0)  # what such a database answered
    assert search("dapi") == ([("plate.czi",)], 1)
    upgrade_database(at_0018)
    assert search("well c3") == ([("plate.czi",)], 1)
    assert search("overview") == ([("plate.czi",)], 1)
    assert search("dapi") == ([("plate.czi",)], 1)


def test_0019_reads_and_writes_the_records_in_batches(clean: _Clean, at_0018: Engine) -> None:
    """Batches of two over five records (keyset pages of ids): every record gets its scene names."""
    import importlib

    revision = importlib.import_module(
        "zstack_analyzer.service.db.migrations.versions.0019_search_text_with_scenes"
    )
    with at_0018.begin() as connection:
        for n in (5, 1, 4, 2, 3):
            _add_record(
                connection,
                f"p{n}.czi",
                {},
                [{"name": f"Scene S{n}"}],
                f"p{n} czi",
                id=uuid.UUID(int=n),
            )
    with at_0018.begin() as connection:
        revision.rederive_search_text(connection, batch=2)
    step = Step(clean, "0019", at_0018)
    for n in range(1, 6):
        assert _found(step, f"s{n}") == {str(uuid.UUID(int=n))}
    assert len(_found(step, "czi")) == 5


# -- ninth round (helper mut-mig10): 0004's backfill beside its step test -------------------------


@pytest.mark.parametrize("revision", ["0004"])
def test_0004_backfill_derives_what_the_insert_hook_derives(step: Step, revision: str) -> None:
    """Records stored before 0004 get the search text a new record gets from the insert hook.

    The hook (``models._fill_search_columns``) derives it from the file name, the metadata
    and the scene names (the scene list is its own column, not in the metadata JSON); an
    empty file name adds no word.
    """
    with step.engine.begin() as connection:
        blank = _add_image(connection, filename="", metadata={"channels": [{"name": "GFP"}]})
        wells = _add_image(
            connection,
            filename="plate.czi",
            metadata={"file_format": "CZI"},
            scenes=[{"name": "Well B2"}, {"name": "Well C3"}, "not a scene"],
        )
    step.up()
    with step.engine.connect() as connection:
        images = _images(connection)
        texts = dict(connection.execute(sa.select(images.c.id, images.c.search_text)).all())
    assert texts == {blank: "gfp", wells: "plate czi czi well b2 well c3"}
    assert (_found(step, "c3"), _found(step, "gfp")) == ({str(wells)}, {str(blank)})
    step.down()


@pytest.mark.parametrize("revision", ["0017"])
def test_0017_downgrade_derives_no_word_from_an_empty_file_name(step: Step, revision: str) -> None:
    """The downgrade's text of a record with an empty file name is its metadata's and scenes' words."""
    with step.engine.begin() as connection:
        blank = _add_image(connection, filename="", search_text="gfp", scenes=[{"name": "B2"}])
        connection.execute(
            sa.text("INSERT INTO image_metadata (image_id, metadata) VALUES (:i, :m)").bindparams(
                sa.bindparam("i", type_=sa.Uuid()), sa.bindparam("m", type_=JSON)
            ),
            {"i": blank, "m": {"channels": [{"name": "GFP"}]}},
        )
    step.up()
    if not step.postgres:  # 0017 changes nothing on SQLite
        step.down()
        assert _column(step.engine, "search_text") == ["gfp"]
        return
    order = step.clean.schema(step.revision)[("images", "column order")]
    step.down({("images", "column order"): {"found": order, "expected": _order_below(step)}})
    assert _vectors(step) == [("", "gfp b2", "'b2':2 'gfp':1")]


# ---- Revision 0007: when the group `default` it makes was created (helper mut-mig7)
#
# Revision 0007 (accounts) beyond its schema: when the group ``default`` it makes was created.
#
# Why: the one-step test (``test_migration_steps.py``) compares the schema 0007 builds and the rows
# it moves, and checks that ``default``'s ``created_at`` is not older than the upgrade. On a
# machine whose local zone is UTC that cannot tell the upgrade's instant (``datetime.now(UTC)``,
# as the models' ``utcnow`` stamps a group the service makes) from the local wall clock taken for
# UTC (``datetime.now()``): on SQLite both are stored as the same text. Elsewhere the second is
# hours off, on SQLite (wall-clock text) and on PostgreSQL (a naive value is read in the server's
# zone), so the upgrade is run here with the process in Tokyo (UTC+9).


@pytest.mark.usefixtures("tokyo")
@pytest.mark.parametrize("revision", ["0007"])
def test_the_default_group_is_dated_at_the_upgrade_whatever_the_local_zone(
    step: Step,
    revision: str,
) -> None:
    assert datetime.now().utcoffset() is None  # a naive local clock, nine hours ahead of UTC
    assert abs(datetime.now() - datetime.now(UTC).replace(tzinfo=None)) > timedelta(hours=8)
    with step.engine.begin() as connection:
        _add_image(connection, filename="before accounts")
    before = datetime.now(UTC)
    step.up()
    after = datetime.now(UTC)
    groups = sa.table(
        "groups", sa.column("name", sa.String()), sa.column("created_at", sa.DateTime(True))
    )
    with step.engine.connect() as connection:
        rows = connection.execute(sa.select(groups.c.name, groups.c.created_at)).all()
    assert [name for name, _ in rows] == ["default"]
    created = rows[0][1]
    # SQLite keeps the UTC wall clock without an offset (as the models' columns do).
    created = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
    step.down()
