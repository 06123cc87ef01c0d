"""Issue 17: metadata search over 100,000 records, and the 500 MB upload to S3.

Records:
- ``search/100k/sqlite`` and ``search/100k/postgres``: p50 latency of five typical
  searches (one page of 50 summaries plus the total) through ``search_summaries``,
  what the search route answers with, against the same five queries as hand-written SQL on a bare table
  with the same indexes (and the same full-text index) in the same engine. 100,000
  generated rows are inserted through the ORM path every record takes (so the insert
  hook and the triggers fill the indexes), then copied into the bare tables.
- ``upload-s3/b``: upload of b (503 MB) through our server with its originals in an S3
  server on loopback, against a plain multipart PUT of the same bytes to the same S3
  server with obstore (16 MiB parts, 4 in flight, as the server is configured); plus
  the server's peak RSS while the upload runs.
- ``s3-ranged-thumb/b``: the 256 px thumbnail of one plane of b read in place from the
  bucket by ranged GETs (open, IFDs, the plane), no local copy, in a fresh process,
  against one ranged GET of exactly that plane's bytes (offset known beforehand) and
  the same PNG steps; plus GETs and bytes fetched against the object's size.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import (
    NotMeasuredError,
    Record,
    Series,
    Side,
    compare,
    fmt_s,
    log,
    ratio,
    wait_quiet,
    warm,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
ROWS = 100_000
BATCH = 2_000
PAGE = 50
RUNS_PER_QUERY = 40  # per side, alternating in blocks of 5
PG_ADMIN = os.environ.get("ZSTACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

CHANNELS = ["DAPI", "Hoechst", "GFP", "AF488", "mCherry", "AF568", "Cy5", "AF647", "Brightfield"]
OBJECTIVES = [
    ("Plan-Apochromat 63x/1.40 Oil DIC", 63.0, "Oil"),
    ("Plan-Apochromat 40x/1.3 Oil", 40.0, "Oil"),
    ("C-Apochromat 40x/1.2 W Korr", 40.0, "Water"),
    ("EC Plan-Neofluar 10x/0.30", 10.0, "Air"),
    ("Plan Apo VC 100x/1.40 Oil", 100.0, "Oil"),
    ("HC PL APO 20x/0.75 CS2", 20.0, "Air"),
]
MICROSCOPES = [("Zeiss", "LSM 980", "ZEN blue"), ("Nikon", "Ti2", "NIS-Elements AR")]
MICROSCOPES += [("Leica", "Stellaris 8", "LAS X"), ("Olympus", "FV3000", "FluoView")]
FORMATS = ["CZI", "ND2", "LIF", "OME-TIFF", "TIFF", "ImageJ TIFF"]
WORDS = [
    "nuclei",
    "embryo",
    "heart",
    "liver",
    "organoid",
    "spheroid",
    "neuron",
    "retina",
    "zebrafish",
    "mouse",
    "drosophila",
]

# The five typical searches: filters for search_summaries, and the same query as bare SQL.
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("q=dapi", {"q": "dapi"}),
    ("63x oil + DAPI channel", {"magnification": 63.0, "immersion": "oil", "channel": "dapi"}),
    (
        "q='zeiss embryo' + March 2025",
        {"q": "zeiss embryo", "after": (2025, 3, 1), "before": (2025, 4, 1)},
    ),
    (
        "CZI, 10..100 Z, 0.05..0.2 µm",
        {"format": "CZI", "zmin": 10, "zmax": 100, "pmin": 0.05, "pmax": 0.2},
    ),
    ("objective~apochromat + after 2025-06", {"objective": "apochromat", "after": (2025, 6, 1)}),
]


def generate_metadata(rng: random.Random, i: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """One generated record: filename, ImageMetadata-like JSON, and summary columns."""
    fmt = rng.choice(FORMATS)
    objective, magnification, immersion = rng.choice(OBJECTIVES)
    maker, model, software = rng.choice(MICROSCOPES)
    channels = rng.sample(CHANNELS, rng.randint(1, 4))
    depth = rng.choice([1, 1, 5, 12, 30, 60, 120, 200])
    pixel = round(rng.uniform(0.03, 1.5), 4)
    acquired = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
        minutes=rng.randrange(0, 2 * 365 * 1440)
    )
    word = rng.choice(WORDS)
    filename = f"{word}_{i:06d}.{fmt.lower().replace(' ', '')}"
    metadata = {
        "filename": filename,
        "file_format": fmt,
        "size_x": 1024,
        "size_y": 1024,
        "size_z": depth,
        "size_c": len(channels),
        "dtype": "uint16",
        "bit_depth": 16,
        "physical_size": {"x_um": pixel, "y_um": pixel, "z_um": 0.5},
        "channels": [
            {"index": c, "name": name, "fluorophore": name} for c, name in enumerate(channels)
        ],
        "objective": {"name": objective, "magnification": magnification, "immersion": immersion},
        "microscope": {"manufacturer": maker, "model": model, "software": software},
        "acquired_at": acquired.isoformat(),
        "scene_name": f"Position {rng.randint(1, 96)}",
        "vendor_metadata": {
            "Experiment": {
                "Operator": rng.choice(["ana", "ben", "chen", "dev"]),
                "Plate": f"PX-{rng.randint(1000, 9999)}",
            }
        },
    }
    summary = {"format": fmt, "depth": depth, "pixel": pixel, "channels": len(channels)}
    return filename, metadata, summary


def populate(url: str) -> float:
    """Migrate a fresh database and insert ROWS records through the ORM; seconds taken."""
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.db.session import Database, make_engine

    engine = make_engine(url)
    upgrade_database(engine)
    database = Database(engine)
    rng = random.Random(17)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    texts: list[tuple[uuid.UUID, str]] = []  # each record's search text, for the bare table
    for start in range(0, ROWS, BATCH):
        with database.sessions() as session:
            added = []
            for i in range(start, min(ROWS, start + BATCH)):
                filename, metadata, summary = generate_metadata(rng, i)
                added.append(
                    Image(
                        id=uuid.UUID(int=rng.getrandbits(128)),
                        filename=filename,
                        stored_name=f"{i:032x}.bin",
                        format=summary["format"],
                        size_bytes=1000,
                        sha256=f"{i:064x}",
                        width=1024,
                        height=1024,
                        depth=summary["depth"],
                        channels=summary["channels"],
                        timepoints=1,
                        samples_per_pixel=1,
                        bit_depth=16,
                        dtype="uint16",
                        pixel_size_x=summary["pixel"],
                        pixel_size_y=summary["pixel"],
                        pixel_size_z=0.5,
                        image_metadata=metadata,
                        scenes=[],
                        thumbnail_ready=False,
                        created_at=base + timedelta(seconds=i),
                    )
                )
            session.add_all(added)
            session.commit()
            # The insert hook derived it; PostgreSQL keeps only its vector (migration 0017).
            for image in added:
                if image.search_text is None:  # pragma: no cover - the hook always sets it
                    msg = f"{image.filename}: no search text after the insert hook"
                    raise RuntimeError(msg)
                texts.append((image.id, image.search_text))
    seconds = time.perf_counter() - t0
    make_bare(engine, texts)
    vacuum(engine)
    engine.dispose()
    return seconds


def vacuum(engine: Any) -> None:
    """On PostgreSQL, ``VACUUM ANALYZE`` the database: what autovacuum does on a server.

    Why: this machine's PostgreSQL runs with autovacuum off, so freshly filled
    tables never get a visibility map and no index-only scan can skip the
    heap, on either side. A server keeps its default (autovacuum on) and is
    vacuumed after a bulk load; that steady state is what is measured.
    """
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def make_bare(engine: Any, texts: list[tuple[uuid.UUID, str]]) -> None:
    """The baseline: the same columns and indexes in plain tables, filled by INSERT ... SELECT.

    ``texts``: each record's search text as the insert hook derived it (the
    bare table stores it, and indexes it with positions, as ``images`` did up
    to migration 0017; PostgreSQL's ``images`` no longer keeps the text).
    """
    import sqlalchemy as sa
    from sqlalchemy import text

    pg = engine.dialect.name == "postgresql"
    bare_texts = sa.Table(
        "bare_texts",
        sa.MetaData(),
        sa.Column("image_id", sa.Uuid(), primary_key=True),
        sa.Column("search_text", sa.Text()),
    )
    with engine.begin() as connection:
        bare_texts.create(connection)
        for start in range(0, len(texts), 10_000):
            connection.execute(
                bare_texts.insert(),
                [{"image_id": i, "search_text": t} for i, t in texts[start : start + 10_000]],
            )
    statements = [
        "CREATE TABLE bare (id INTEGER PRIMARY KEY, filename TEXT, format TEXT, depth INTEGER,"
        " pixel_size_x FLOAT, objective TEXT, magnification FLOAT, immersion TEXT,"
        f" acquired_at {'TIMESTAMPTZ' if pg else 'TIMESTAMP'}, created_at {'TIMESTAMPTZ' if pg else 'TIMESTAMP'},"
        f" search_text TEXT{', search_vector TSVECTOR' if pg else ''}, image_id TEXT)",
        "INSERT INTO bare (id, filename, format, depth, pixel_size_x, objective, magnification,"  # noqa: S608  (constant SQL)
        " immersion, acquired_at, created_at, search_text, image_id)"
        " SELECT row_number() OVER (ORDER BY created_at), filename, format, depth, pixel_size_x,"
        " objective, magnification, immersion, acquired_at, created_at, t.search_text,"
        f" {'id::text' if pg else 'id'} FROM images JOIN bare_texts t ON t.image_id = images.id",
        "DROP TABLE bare_texts",
        "CREATE TABLE bare_channels (bare_id INTEGER, name_key TEXT)",
        "INSERT INTO bare_channels SELECT b.id, c.name_key FROM image_channels c JOIN bare b"  # noqa: S608
        f" ON b.image_id = {'c.image_id::text' if pg else 'c.image_id'}",
        "CREATE INDEX bare_channels_name ON bare_channels (name_key)",
        "CREATE INDEX bare_channels_id ON bare_channels (bare_id)",
    ]
    for column in (
        "format",
        "depth",
        "pixel_size_x",
        "magnification",
        "immersion",
        "acquired_at",
    ):
        statements.append(f"CREATE INDEX bare_{column} ON bare ({column})")
    # The pages' order, as ours is indexed (migration 0016).
    statements.append("CREATE INDEX bare_created_at ON bare (created_at, id)")
    if pg:
        statements += [
            "UPDATE bare SET search_vector = to_tsvector('simple', search_text)",
            "CREATE INDEX bare_search ON bare USING gin (search_vector)",
            "ANALYZE",
        ]
    else:
        statements += [
            "CREATE VIRTUAL TABLE bare_fts USING fts5(search_text, content='bare', content_rowid='id',"
            " tokenize='unicode61 remove_diacritics 0')",
            "INSERT INTO bare_fts (rowid, search_text) SELECT id, search_text FROM bare",
            "ANALYZE",
        ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def bare_sql(pg: bool, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of the baseline query and its parameters."""
    from zstack_analyzer.service.db.search import fts5_query, tsquery

    where, params = [], {}
    if "q" in spec:
        if pg:
            where.append("search_vector @@ to_tsquery('simple', :q)")
            params["q"] = tsquery(spec["q"])
        else:
            where.append("id IN (SELECT rowid FROM bare_fts WHERE bare_fts MATCH :q)")
            params["q"] = fts5_query(spec["q"])
    if "format" in spec:
        where.append("format = :format")
        params["format"] = spec["format"]
    if "channel" in spec:
        where.append(
            "EXISTS (SELECT 1 FROM bare_channels c WHERE c.bare_id = bare.id AND c.name_key = :channel)"
        )
        params["channel"] = spec["channel"]
    if "objective" in spec:
        where.append("objective LIKE :objective")
        params["objective"] = f"%{spec['objective']}%"
    if "magnification" in spec:
        where.append("magnification = :magnification")
        params["magnification"] = spec["magnification"]
    if "immersion" in spec:
        where.append("immersion = :immersion")
        params["immersion"] = spec["immersion"]
    for key, clause in (
        ("zmin", "depth >= :zmin"),
        ("zmax", "depth <= :zmax"),
        ("pmin", "pixel_size_x >= :pmin"),
        ("pmax", "pixel_size_x <= :pmax"),
    ):
        if key in spec:
            where.append(clause)
            params[key] = spec[key]
    for key, clause in (("after", "acquired_at >= :after"), ("before", "acquired_at < :before")):
        if key in spec:
            where.append(clause)
            value = datetime(*spec[key], tzinfo=UTC)
            params[key] = value if pg else value.isoformat(sep=" ").replace("+00:00", "")
    return " AND ".join(where) or "1=1", params


def our_filters(spec: dict[str, Any]) -> Any:
    from zstack_analyzer.service.db.search import SearchFilters

    return SearchFilters(
        q=spec.get("q"),
        format=spec.get("format"),
        channel=spec.get("channel"),
        objective=spec.get("objective"),
        magnification=spec.get("magnification"),
        immersion=spec.get("immersion"),
        min_size_z=spec.get("zmin"),
        max_size_z=spec.get("zmax"),
        pixel_size_min_um=spec.get("pmin"),
        pixel_size_max_um=spec.get("pmax"),
        acquired_after=datetime(*spec["after"], tzinfo=UTC) if "after" in spec else None,
        acquired_before=datetime(*spec["before"], tzinfo=UTC) if "before" in spec else None,
    )


def measure_engine(
    url: str, engine_name: str, *, quick: bool, insert_s: float | None = None
) -> Record:
    """Ours against the bare table on a database :func:`populate` filled (now, or ``insert_s`` ago).

    Ours is what ``GET /api/images/search`` does (routes/search.py):
    ``search_summaries`` with the caller's permission filter (the default
    single-user mode's): the page's summaries with their quality flags and
    owner names, and the total.
    """
    from sqlalchemy import text

    from zstack_analyzer.service.auth.permissions import SINGLE_USER, visible_images_filter
    from zstack_analyzer.service.db.session import Database, make_engine
    from zstack_analyzer.service.image_summaries import search_summaries

    rid = f"search/100k/{engine_name}"
    if insert_s is None:
        log(f"{rid}: inserting {ROWS:,} records through the ORM ...")
        insert_s = populate(url)
        log(f"  inserted in {insert_s:.0f} s")
    else:
        log(f"{rid}: {ROWS:,} records from the populated template ({insert_s:.0f} s to insert)")
    visible = visible_images_filter(SINGLE_USER)
    engine = make_engine(url)
    database = Database(engine)
    pg = engine.dialect.name == "postgresql"
    runs = 3 if quick else RUNS_PER_QUERY
    ours_lat: dict[str, list[float]] = {}
    base_lat: dict[str, list[float]] = {}
    matches: dict[str, list[int]] = {}
    busy = wait_quiet()
    try:
        with database.sessions() as session, engine.connect() as connection:
            for label, spec in QUERIES:
                filters = our_filters(spec)
                where, params = bare_sql(pg, spec)
                page_sql = text(
                    f"SELECT * FROM bare WHERE {where} ORDER BY created_at DESC, id LIMIT {PAGE}"  # noqa: S608
                )
                count_sql = text(f"SELECT count(*) FROM bare WHERE {where}")  # noqa: S608  (clauses are ours; values are bound)

                def ours(filters: Any = filters) -> int:
                    _summaries, total = search_summaries(
                        session, filters, skip=0, limit=PAGE, visible=visible
                    )
                    return total

                def bare(
                    page_sql: Any = page_sql,
                    count_sql: Any = count_sql,
                    params: dict[str, Any] = params,
                ) -> int:
                    connection.execute(page_sql, params).all()
                    return int(connection.execute(count_sql, params).scalar() or 0)

                totals = (ours(), bare())  # warm-up, and the same answer on both sides
                if totals[0] != totals[1]:
                    msg = f"{label}: ours found {totals[0]} rows, the bare query {totals[1]}"
                    raise NotMeasuredError(msg)
                matches[label] = list(totals)
                ours_lat[label], base_lat[label] = [], []
                for _ in range(max(1, runs // 5)):
                    for side, out in ((ours, ours_lat[label]), (bare, base_lat[label])):
                        for _ in range(5):
                            t0 = time.perf_counter()
                            side()
                            out.append(time.perf_counter() - t0)
    finally:
        engine.dispose()
    ours_all = [x for v in ours_lat.values() for x in v]
    base_all = [x for v in base_lat.values() for x in v]
    p50_o, p50_b = statistics.median(ours_all), statistics.median(base_all)
    per_query = {
        label: {
            "ours_p50_s": statistics.median(ours_lat[label]),
            "bare_p50_s": statistics.median(base_lat[label]),
            "ratio": statistics.median(ours_lat[label]) / statistics.median(base_lat[label]),
            "matches": matches[label][0],
        }
        for label, _ in QUERIES
    }
    log(f"  -> p50 ours {fmt_s(p50_o)}, bare {fmt_s(p50_b)}, ratio {p50_o / p50_b:.2f}")
    for label, row in per_query.items():
        log(
            f"     {label}: {fmt_s(row['ours_p50_s'])} vs {fmt_s(row['bare_p50_s'])} ({row['matches']} matches)"
        )
    return Record(
        id=rid,
        ours_s=p50_o,
        baseline=f"same 5 queries, hand-written SQL on a bare indexed table ({engine_name})",
        baseline_s=p50_b,
        ratio=ratio(p50_o, p50_b),
        peak_rss_mib=None,
        target="ratio <= 1.2",
        passed=p50_o / p50_b <= 1.2,
        note=(
            f"p50 over 5 queries x {len(ours_all) // len(QUERIES)} runs per side (alternating blocks "
            f"of 5), page of {PAGE} + total, {ROWS:,} generated rows; ours = what GET "
            "/api/images/search does without HTTP: search_summaries with the permission "
            f"filter (summaries with quality flags, owner names); {ROWS:,} ORM inserts took "
            f"{insert_s:.0f} s (a populated template is reused while the schema is the same)"
        ),
        extra={"per_query": per_query, "cpu_busy_before": busy, "insert_s": insert_s},
    )


#: Bumped when populate() or generate_metadata() change what a template holds.
TEMPLATE_VERSION = 2  # 2: bare pages indexed (created_at, id); VACUUM ANALYZE after the fill


def template_key() -> str:
    """What a populated database depends on: the schema, the row count, the generator.

    The schema is named by its head and a digest of every migration file: a merge that
    re-chains migrations keeps the head's id but changes what the database holds.
    """
    import hashlib

    from alembic.script import ScriptDirectory

    from zstack_analyzer.service.db.migrations import MIGRATIONS_DIR

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    heads = "_".join(sorted(script.get_heads()))
    digest = hashlib.sha256()
    for migration in sorted(Path(MIGRATIONS_DIR, "versions").glob("*.py")):
        digest.update(migration.name.encode() + b"\0" + migration.read_bytes())
    return f"{heads}_{digest.hexdigest()[:10]}_{ROWS}_v{TEMPLATE_VERSION}"


def search_records(
    *, quick: bool, wants: Callable[[str], bool], cache_dir: Path | None = None
) -> list[Record]:
    """Both engines' records; a database populated once per schema is copied for each run.

    Why templates: 100,000 ORM inserts take minutes (20 on a busy 2-core
    machine for PostgreSQL) and are setup, not the figure; a copy of a
    database populated by the same :func:`populate` at the same schema head
    (``template_key``) is the same database.
    """
    records = []
    key = template_key()
    if wants("search/100k/sqlite"):
        with populated_sqlite_database(cache_dir) as (url, insert_s):
            records.append(measure_engine(url, "sqlite", quick=quick, insert_s=insert_s))
    if not wants("search/100k/postgres"):
        return records
    try:
        with populated_pg_database(f"zstack_bench_tpl_{key}") as (url, insert_s):
            records.append(measure_engine(url, "postgres", quick=quick, insert_s=insert_s))
    except Exception as exc:  # PostgreSQL missing: the record says so
        records.append(
            Record(
                id="search/100k/postgres",
                ours_s=None,
                baseline="bare indexed table (postgres)",
                baseline_s=None,
                ratio=None,
                peak_rss_mib=None,
                note=f"not measured: {exc}",
            )
        )
    return records


@contextlib.contextmanager
def populated_sqlite_database(cache_dir: Path | None) -> Iterator[tuple[str, float]]:
    """A fresh copy of the populated SQLite template in ``cache_dir`` (populated first if missing).

    Yields the copy's URL and how long populating the template took; without a
    ``cache_dir`` the database is populated in a temporary folder and not kept.
    """
    import shutil

    with tempfile.TemporaryDirectory(prefix="zstack-search-bench-") as tmp:
        db = Path(tmp) / "search.db"
        template = (cache_dir or Path(tmp)) / f"search-template-{template_key()}.db"
        seconds_file = template.with_suffix(".seconds")
        if template.exists() and seconds_file.exists():
            shutil.copyfile(template, db)
            insert_s = float(seconds_file.read_text() or 0)
        else:
            log(f"populating a SQLite template of {ROWS:,} records through the ORM ...")
            insert_s = populate(f"sqlite:///{db}")
            log(f"  inserted in {insert_s:.0f} s")
            if cache_dir is not None:
                shutil.copyfile(db, template)
                seconds_file.write_text(str(insert_s))
        yield f"sqlite:///{db}", insert_s


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh, empty database (dropped afterwards)."""
    import psycopg

    name = f"zstack_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def populated_pg_database(template: str) -> Iterator[tuple[str, float]]:
    """A fresh copy of the populated database ``template`` (populated first if missing).

    Yields the copy's URL and how long populating the template took.
    """
    import psycopg

    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (template,),
        ).fetchone()
        if row is None or not row[0]:
            conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{template}"')
            seconds = populate(f"{base}/{template}")
            conn.execute(f"COMMENT ON DATABASE \"{template}\" IS '{seconds:.1f}'")
        else:
            seconds = float(row[0])
        name = f"zstack_bench_{uuid.uuid4().hex[:12]}"
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"{base}/{name}", seconds
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- upload to S3
PUT_CODE = """
import sys, time
from pathlib import Path
import obstore
from obstore.store import S3Store
endpoint, bucket, path = sys.argv[1:4]
store = S3Store(bucket, prefix="baseline", config={"endpoint": endpoint, "access_key_id": "k",
    "secret_access_key": "s", "region": "us-east-1"}, client_options={"allow_http": True})
t0 = time.perf_counter()
obstore.put(store, "b.bin", Path(path), chunk_size=16 * 1024 * 1024, max_concurrency=4)
print(time.perf_counter() - t0)
obstore.delete(store, "b.bin")
"""


def upload_s3_record(path_b: str, *, quick: bool) -> Record:
    import service_bench

    sys.path.insert(0, str(REPO))
    from tests.s3server import running_s3_server

    rid = "upload-s3/b"
    repeats = 1 if quick else 3
    size = os.path.getsize(path_b)
    ours, base = Series(), Series()
    with (
        tempfile.TemporaryDirectory(prefix="zstack-s3-bench-") as tmp,
        running_s3_server(Path(tmp) / "s3") as s3,
    ):
        bucket = s3.create_bucket()
        env = s3.env(bucket, "bench")
        log(
            f"{rid}: {repeats}x upload through our server / plain multipart PUT ({s3.kind} S3 server) ..."
        )
        with service_bench.running_server(extra_env=env) as server:
            for _ in range(repeats):
                busy = wait_quiet()
                if busy is not None:
                    ours.busy.append(busy)
                warm([path_b])
                try:
                    seconds, rss, response = service_bench.curl_upload(
                        server, path_b, sample_rss=True
                    )
                    ours.seconds.append(seconds)
                    if rss is not None:
                        ours.rss_mib.append(rss)
                    server.settle()
                    service_bench.delete_image(server, str(response.get("id")))
                    server.settle()
                except NotMeasuredError as exc:
                    ours.error = str(exc)
                    break
                warm([path_b])
                done = subprocess.run(
                    [sys.executable, "-c", PUT_CODE, s3.endpoint, bucket, path_b],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    base.error = done.stderr.strip()[-300:]
                    break
                base.seconds.append(float(done.stdout.strip().splitlines()[-1]))
        kind = s3.kind
    r = ratio(ours.median_s, base.median_s)
    mb = size / 1e6
    notes = [
        f"{mb:.0f} MB via curl -F to our server (ZSTACK_STORAGE_URL=s3://...), {kind} S3 server on "
        "loopback; baseline obstore.put of the file, 16 MiB parts, 4 in flight; server peak RSS "
        "sampled every 10 ms"
    ]
    if ours.error:
        notes.append(f"not measured: {ours.error}")
    if base.error:
        notes.append(f"baseline not measured: {base.error}")
    log(
        f"  -> ours {fmt_s(ours.median_s)}, PUT {fmt_s(base.median_s)}, ratio {r}, server RSS {ours.peak_rss} MiB"
    )
    return Record(
        id=rid,
        ours_s=ours.median_s,
        baseline=f"plain multipart PUT to the same {kind} S3 server (obstore)",
        baseline_s=base.median_s,
        ratio=r,
        peak_rss_mib=ours.peak_rss,
        note="; ".join(notes),
        extra={
            "runs": [len(ours.seconds), len(base.seconds)],
            "ours_runs_s": [round(x, 3) for x in ours.seconds],
            "baseline_runs_s": [round(x, 3) for x in base.seconds],
            "server_peak_rss_mib": ours.peak_rss,
            "s3_server": kind,
        },
    )


RANGED_Z, RANGED_C = 10, 0


def _plane_extent(path: str, z: int, c: int) -> tuple[int, int, list[int], str]:
    """Offset and length of plane (z, c) of an uncompressed TIFF, its shape and dtype."""
    import numpy as np
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        outer = [(axis, size) for axis, size in zip(series.axes, series.shape, strict=True)]
        outer = [(axis, size) for axis, size in outer if axis not in "YX"]
        where = {"Z": z, "C": c}
        index = int(
            np.ravel_multi_index([where.get(a, 0) for a, _ in outer], [n for _, n in outer])
        )
        page = series.pages[index]
        if not page.is_contiguous:
            msg = f"{path}: plane z={z} c={c} is not stored in one piece"
            raise NotMeasuredError(msg)
        offset, length = int(page.dataoffsets[0]), int(sum(page.databytecounts))
        return offset, length, list(page.shape), str(page.dtype)


def s3_ranged_record(path_b: str, *, quick: bool) -> Record:
    import obstore
    from obstore.store import S3Store

    sys.path.insert(0, str(REPO))
    from tests.s3server import running_s3_server

    rid = "s3-ranged-thumb/b"
    repeats = 1 if quick else 5
    size = os.path.getsize(path_b)
    key = os.path.basename(path_b)
    offset, length, shape, dtype = _plane_extent(path_b, RANGED_Z, RANGED_C)
    with (
        tempfile.TemporaryDirectory(prefix="zstack-s3-bench-") as tmp,
        running_s3_server(Path(tmp) / "s3") as s3,
    ):
        bucket = s3.create_bucket()
        store = S3Store(
            bucket,
            config={"endpoint": s3.endpoint, "access_key_id": "bench",
                    "secret_access_key": "bench-secret", "region": "us-east-1"},
            client_options={"allow_http": True},
        )  # fmt: skip
        log(f"{rid}: putting b into the bucket, then {repeats}x ranged thumbnail / plane GET ...")
        obstore.put(store, key, Path(path_b), chunk_size=16 * 1024 * 1024, max_concurrency=4)
        where = {"endpoint": s3.endpoint, "bucket": bucket, "key": key}
        py = sys.executable
        ours, base = compare(
            Side(
                "ours (ranged reads)",
                py,
                "ours_s3_render",
                {**where, "spec": {"kind": "thumbnail", "z": RANGED_Z, "channels": [RANGED_C]}},
                repeats,
            ),
            Side(
                "one GET of the plane + PNG",
                py,
                "s3_plane_get_png",
                {**where, "offset": offset, "length": length, "shape": shape, "dtype": dtype},
                repeats,
            ),
            warm_paths=[],
        )
        kind = s3.kind
    r = ratio(ours.median_s, base.median_s)
    fetched = ours.info.get("bytes_fetched")
    gets = ours.info.get("gets")
    notes = [
        f"plane z={RANGED_Z} c={RANGED_C} of b ({size / 1e6:.0f} MB object, {kind} S3 on "
        f"loopback), 256 px; ours opens the object (header, every IFD, OME-XML) and reads "
        f"the plane by ranges: {gets} GETs, {0 if fetched is None else fetched / 1e6:.1f} MB "
        f"fetched ({0 if fetched is None else 100 * fetched / size:.1f}% of the object); "
        f"baseline one GET of the plane's {length / 1e6:.1f} MB + the same PNG steps"
    ]
    for side, series in (("ours", ours), ("baseline", base)):
        if series.error:
            notes.append(f"{side} not measured: {series.error}")
    log(f"  -> ours {fmt_s(ours.median_s)}, plane GET {fmt_s(base.median_s)}, ratio {r}")
    return Record(
        id=rid,
        ours_s=ours.median_s,
        baseline=f"one ranged GET of the plane's bytes + PNG ({kind})",
        baseline_s=base.median_s,
        ratio=r,
        peak_rss_mib=ours.peak_rss,
        note="; ".join(notes),
        extra={
            "ours_runs_s": [round(x, 3) for x in ours.seconds],
            "baseline_runs_s": [round(x, 3) for x in base.seconds],
            "gets": gets,
            "bytes_fetched": fetched,
            "object_bytes": size,
        },
    )


def issue17(path_b: str, *, quick: bool, wants: Callable[[str], bool]) -> list[Record]:
    records: list[Record] = []
    if wants("search/100k"):
        records.extend(
            search_records(quick=quick, wants=wants, cache_dir=Path(path_b).resolve().parent)
        )
    s3_records = (
        ("upload-s3/b", "plain multipart PUT to the same S3 server", upload_s3_record),
        ("s3-ranged-thumb/b", "one ranged GET of the plane's bytes + PNG", s3_ranged_record),
    )
    for rid, baseline, measure in s3_records:
        if not wants(rid):
            continue
        try:
            records.append(measure(path_b, quick=quick))
        except (NotMeasuredError, RuntimeError, OSError) as exc:
            records.append(
                Record(
                    id=rid,
                    ours_s=None,
                    baseline=baseline,
                    baseline_s=None,
                    ratio=None,
                    peak_rss_mib=None,
                    note=f"not measured: {exc}",
                )
            )
    return records
