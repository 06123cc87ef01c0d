"""What the accounts-changed marker costs a request: a micro-benchmark of principal resolution.

Every request with a cached principal now stats ``<data_dir>/accounts.changed``
(``service/auth/account_changes.py``). This measures ``get_principal`` on a cache
hit, in process (no HTTP, no database on the measured path), three ways, in
alternating blocks:

- ``none``: a cache without the marker (the code before the fix);
- ``marker``: the marker exists (one ``stat`` per hit, the usual case);
- ``missing``: no account changed yet (one failed ``stat`` per hit).

The clock is the process's CPU time (user + system, so the ``stat`` counts),
not the wall clock: on a shared, loaded machine time spent waiting for a core
would drown a microsecond. Prints the median and the best block's ns per
resolution of each, and the differences. Not part of
``bench/run.py``: a figure for the change's report, not a tracked record.

Run: ``PYTHONPATH=src .venv/bin/python bench/principal_marker_bench.py [--calls N] [--blocks N]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _request(app: Any) -> Any:
    from starlette.requests import Request

    return Request({"type": "http", "app": app, "method": "GET", "headers": [], "path": "/"})


def _app(data_dir: Path, *, marker: bool) -> Any:
    """A bare FastAPI app with settings and a principal cache holding one token."""
    from fastapi import FastAPI

    from zstack_analyzer.service.auth.account_changes import AccountChanges
    from zstack_analyzer.service.auth.permissions import Principal
    from zstack_analyzer.service.auth.principal import PrincipalCache
    from zstack_analyzer.service.auth.tokens import hash_secret
    from zstack_analyzer.service.config import Settings

    settings = Settings(data_dir=data_dir, auth="users", api_token=None, database_url=None)
    app = FastAPI()
    app.state.settings = settings
    changes = AccountChanges(settings.accounts_marker) if marker else None
    cache = PrincipalCache(ttl_s=3600.0, changes=changes)
    principal = Principal(user_id=1, username="member", via="api-token")
    cache.put(f"t:{hash_secret('zst_secret')}", principal, not_after=None)
    app.state.principal_cache = cache
    return app


async def _block(request: Any, credentials: Any, calls: int) -> float:
    from zstack_analyzer.service.auth.principal import get_principal

    start = time.process_time_ns()
    for _ in range(calls):
        await get_principal(request, credentials)
    return (time.process_time_ns() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="resolutions per block")
    parser.add_argument("--blocks", type=int, default=15, help="blocks per variant")
    args = parser.parse_args()

    from fastapi.security import HTTPAuthorizationCredentials

    from zstack_analyzer.service.change_markers import touch_marker

    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials="zst_secret")
    with tempfile.TemporaryDirectory(prefix="zstack-marker-bench-") as tmp:
        with_marker, without_marker = Path(tmp) / "with", Path(tmp) / "without"
        with_marker.mkdir()
        without_marker.mkdir()
        # Long before the entries' fetch: they stay valid, every hit pays the stat.
        touch_marker(with_marker / "accounts.changed")
        time.sleep(0.01)
        variants = {
            "none": _request(_app(with_marker, marker=False)),
            "marker": _request(_app(with_marker, marker=True)),
            "missing": _request(_app(without_marker, marker=True)),
        }
        # The marker's margin (2 s) makes an entry fetched < 2 s after it stale: wait it out.
        time.sleep(2.1)
        for request in variants.values():  # entries fetched now, after the margin
            cache = request.app.state.principal_cache
            ((key, (deadline, _, principal)),) = cache._entries.items()
            cache._entries[key] = (deadline, time.time_ns(), principal)
        results: dict[str, list[float]] = {name: [] for name in variants}

        async def run() -> None:
            for request in variants.values():  # warm-up
                await _block(request, credentials, 1000)
            for _ in range(args.blocks):
                for name, request in variants.items():
                    results[name].append(await _block(request, credentials, args.calls))

        asyncio.run(run())
    medians = {name: statistics.median(values) for name, values in results.items()}
    best = {name: min(values) for name, values in results.items()}
    for name, value in medians.items():
        spread = f"{best[name]:.0f}-{max(results[name]):.0f}"
        print(f"{name:8s} median {value:7.0f} ns CPU per resolution (blocks {spread})")
    for name in ("marker", "missing"):
        print(
            f"{name} - none: median {medians[name] - medians['none']:+.0f} ns "
            f"({medians[name] / medians['none']:.2f}x), best {best[name] - best['none']:+.0f} ns"
        )


if __name__ == "__main__":
    main()
