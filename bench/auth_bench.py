"""Issue 23: what accounts cost. Two records, each a ratio against a same-run baseline.

- ``auth/thumb-cached``: p50 of a cached thumbnail GET by a group member with a personal
  bearer token on a ``ZSTACK_AUTH=users`` server, against the same GET on a
  ``ZSTACK_AUTH=none`` server, both live on 127.0.0.1 (bench_server.py), alternating
  blocks of 50. Target: ratio <= 1.10.
- ``auth/search-100k/sqlite`` (and ``/postgres``): the five typical searches of
  ``search_bench.py`` over 100,000 records spread over 20 groups and 100 owners, through
  ``search_summaries`` (the search route's page) with the permission filter of a member of three groups (private,
  read-only, read-annotate) against the same call without a filter (what an admin runs).
  Target: ratio <= 1.2.

Run alone: ``.venv/bin/python bench/auth_bench.py [--rows N] [--quick]`` (merges its records
into bench/results/latest.json unless ``--quick``), or ``bench/run.py --only issue23``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import NotMeasuredError, Record, fmt_s, log, ratio, wait_quiet

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCH_DIR = Path(__file__).resolve().parent
REQUESTS = 400  # per side, in blocks of 50, alternating
BLOCK = 50
GROUPS = 20
OWNERS = 100
RUNS = 20  # per query and side, alternating blocks of 5


@contextlib.contextmanager
def _server(extra_env: dict[str, str]) -> Iterator[Any]:
    """bench_server.py in users or none mode; "ready" is any answer of /api/health."""
    import shutil

    import httpx

    import service_bench

    root = Path(tempfile.mkdtemp(prefix="zstack-auth-bench-"))
    server = service_bench.Server(root, extra_env)
    try:
        deadline = time.monotonic() + service_bench.START_TIMEOUT_S
        while True:
            if server.proc.poll() is not None:
                raise NotMeasuredError(f"server exited: {server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.base}/api/health", timeout=2).status_code in {200, 401}:
                    break
            if time.monotonic() > deadline:
                raise NotMeasuredError(f"server not ready: {server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _member_token(data_dir: Path) -> str:
    """A group member's personal token, made in the server's own database."""
    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.db.session import make_engine, make_session_factory

    engine = make_engine(f"sqlite:///{data_dir.resolve() / 'zstack.db'}")
    try:
        with make_session_factory(engine)() as session:
            accounts.create_group(session, "lab", "read-only")
            accounts.create_user(session, "member")
            accounts.set_membership(session, "lab", "member")
            return accounts.create_token(session, "member", name="bench")[1]
    finally:
        engine.dispose()


def thumb_record(source: Path, *, quick: bool) -> Record:
    import httpx

    rid = "auth/thumb-cached"
    n = 2 * BLOCK if quick else REQUESTS
    log(f"{rid}: {n} cached thumbnail GETs per side, users mode vs none ...")
    with (
        _server({"ZSTACK_AUTH": "none"}) as open_server,
        _server({"ZSTACK_AUTH": "users"}) as users_server,
    ):
        token = _member_token(users_server.data_dir)
        sides = {
            "users": (users_server, {"Authorization": f"Bearer {token}"}),
            "none": (open_server, {}),
        }
        urls: dict[str, str] = {}
        with httpx.Client(timeout=120) as client:
            for name, (server, headers) in sides.items():
                with source.open("rb") as fh:
                    up = client.post(
                        f"{server.base}/api/images/upload",
                        files={"file": (source.name, fh)},
                        headers=headers,
                    )
                if up.status_code != 201:
                    raise NotMeasuredError(
                        f"{name}: upload answered {up.status_code}: {up.text[:200]}"
                    )
                urls[name] = f"{server.base}/api/images/{up.json()['id']}/thumbnail"
                first = client.get(urls[name], headers=headers)
                if first.status_code != 200:
                    raise NotMeasuredError(f"{name}: thumbnail answered {first.status_code}")
                server.settle()
            lat: dict[str, list[float]] = {"users": [], "none": []}
            busy = wait_quiet()
            for _ in range(n // BLOCK):
                for name, (_, headers) in sides.items():
                    for _ in range(BLOCK):
                        t0 = time.perf_counter()
                        answer = client.get(urls[name], headers=headers)
                        lat[name].append(time.perf_counter() - t0)
                        if answer.status_code != 200:
                            raise NotMeasuredError(f"{name}: GET answered {answer.status_code}")
    p50_u, p50_n = statistics.median(lat["users"]), statistics.median(lat["none"])
    r = ratio(p50_u, p50_n)
    log(f"  -> p50 users {fmt_s(p50_u)}, none {fmt_s(p50_n)}, ratio {r:.3f}")
    return Record(
        id=rid,
        ours_s=p50_u,
        baseline="the same cached thumbnail GET on a ZSTACK_AUTH=none server",
        baseline_s=p50_n,
        ratio=r,
        peak_rss_mib=None,
        target="ratio <= 1.10",
        passed=r is not None and r <= 1.10,
        note=f"{len(lat['users'])} GETs per side, alternating blocks of {BLOCK}; a read-only group "
        "member's personal token (guard: principal cache + image memo)",
        extra={"cpu_busy_before": busy},
    )


def _populate(url: str, rows: int) -> tuple[Any, Any]:
    """search_bench's records, then 20 groups x 100 owners spread over them; the member's Principal."""
    from sqlalchemy import select, update

    import search_bench
    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.db.session import make_engine, make_session_factory

    search_bench.ROWS = rows
    search_bench.populate(url)
    engine = make_engine(url)
    levels = ["private", "read-only", "read-annotate", "read-write"]
    rng = random.Random(23)
    with make_session_factory(engine)() as session:
        groups = [accounts.create_group(session, f"g{i}", levels[i % 4]).id for i in range(GROUPS)]
        owners = [accounts.create_user(session, f"u{i}").id for i in range(OWNERS)]
        ids = list(session.scalars(select(Image.id)))
        for start in range(0, len(ids), 2000):
            for image_id in ids[start : start + 2000]:
                session.execute(
                    update(Image)
                    .where(Image.id == image_id)
                    .values(group_id=rng.choice(groups), owner_id=rng.choice(owners))
                )
            session.commit()
        for name in ("g0", "g1", "g2"):  # private, read-only, read-annotate
            accounts.set_membership(session, name, "u0")
        user = accounts.find_user(session, "u0")
        principal = accounts.principal_for_user(session, user, via="api-token")
    return engine, principal


def search_record(url: str, engine_name: str, *, rows: int, quick: bool) -> Record:
    import search_bench
    from zstack_analyzer.service.auth.permissions import visible_images_filter
    from zstack_analyzer.service.image_summaries import search_summaries

    rid = f"auth/search-100k/{engine_name}"
    log(f"{rid}: {rows:,} records over {GROUPS} groups ...")
    engine, principal = _populate(url, rows)
    visible = visible_images_filter(principal)
    runs = 5 if quick else RUNS
    lat: dict[str, list[float]] = {"filtered": [], "all": []}
    per_query: dict[str, Any] = {}
    busy = wait_quiet()
    try:
        from zstack_analyzer.service.db.session import make_session_factory

        with make_session_factory(engine)() as session:
            for label, spec in search_bench.QUERIES:
                filters = search_bench.our_filters(spec)

                def run(where: Any, filters: Any = filters) -> int:
                    _summaries, total = search_summaries(
                        session, filters, skip=0, limit=search_bench.PAGE, visible=where
                    )
                    return total

                totals = (run(visible), run(None))
                mine: list[float] = []
                theirs: list[float] = []
                for _ in range(max(1, runs // 5)):
                    for where, out in ((visible, mine), (None, theirs)):
                        for _ in range(5):
                            t0 = time.perf_counter()
                            run(where)
                            out.append(time.perf_counter() - t0)
                lat["filtered"] += mine
                lat["all"] += theirs
                per_query[label] = {
                    "filtered_p50_s": statistics.median(mine),
                    "all_p50_s": statistics.median(theirs),
                    "ratio": statistics.median(mine) / statistics.median(theirs),
                    "matches_filtered": totals[0],
                    "matches_all": totals[1],
                }
                log(
                    f"     {label}: {fmt_s(statistics.median(mine))} vs {fmt_s(statistics.median(theirs))} ({totals[0]} of {totals[1]})"
                )
    finally:
        engine.dispose()
    p50_f, p50_a = statistics.median(lat["filtered"]), statistics.median(lat["all"])
    r = ratio(p50_f, p50_a)
    log(f"  -> p50 filtered {fmt_s(p50_f)}, unfiltered {fmt_s(p50_a)}, ratio {r:.3f}")
    return Record(
        id=rid,
        ours_s=p50_f,
        baseline="the same searches without the permission filter (an admin's)",
        baseline_s=p50_a,
        ratio=r,
        peak_rss_mib=None,
        target="ratio <= 1.2",
        passed=r is not None and r <= 1.2,
        note=f"p50 over 5 queries x {runs} runs per side; page of {search_bench.PAGE} + total; "
        f"{rows:,} rows, {GROUPS} groups, {OWNERS} owners; member of a private, a read-only "
        "and a read-annotate group",
        extra={"per_query": per_query, "cpu_busy_before": busy},
    )


def issue23(*, rows: int = 100_000, quick: bool = False, only: str = "") -> list[Record]:
    """Both records (PostgreSQL when it answers); ``only`` = "thumb" or "search" for one."""
    import numpy as np
    import tifffile

    import search_bench

    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="zstack-auth-bench-") as tmp:
        source = Path(tmp) / "stack.ome.tif"
        pixels = np.arange(2 * 8 * 256 * 256, dtype=np.uint32).reshape(2, 8, 256, 256) % 4000
        tifffile.imwrite(source, pixels.astype(np.uint16), ome=True, metadata={"axes": "CZYX"})
        if only in {"", "thumb"}:
            records.append(thumb_record(source, quick=quick))
        if only == "thumb":
            return records
        records.append(
            search_record(f"sqlite:///{Path(tmp) / 's.db'}", "sqlite", rows=rows, quick=quick)
        )
    try:
        with search_bench.pg_database() as url:
            records.append(search_record(url, "postgres", rows=rows, quick=quick))
    except Exception as exc:  # PostgreSQL missing: the record says so
        records.append(
            Record(
                id="auth/search-100k/postgres",
                ours_s=None,
                baseline="unfiltered search (postgres)",
                baseline_s=None,
                ratio=None,
                peak_rss_mib=None,
                note=f"not measured: {exc}",
            )
        )
    return records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["thumb", "search"], default="")
    args = ap.parse_args()
    records = issue23(rows=args.rows, quick=args.quick, only=args.only)
    for record in records:
        print(
            f"{record.id}: ours {fmt_s(record.ours_s)} baseline {fmt_s(record.baseline_s)} ratio {record.ratio}"
        )
    if not args.quick:
        from run import RESULTS, write_results

        write_results(records, RESULTS, merge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
