"""Our service app plus one static route, on uvicorn: the server of the issue-5 records.

Why a static route in the same app: the cached-thumbnail baseline must go through
the same server stack (uvicorn, Starlette, middleware) so that the ratio measures
our route's own work, not the framework's. Settings come from ZSTACK_* variables
set by service_bench.py (data dir, port); auth stays off.

Usage: python bench/bench_server.py STATIC_DIR
"""

from __future__ import annotations

import sys


def main() -> int:
    import uvicorn
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from zstack_analyzer.service.app import create_app
    from zstack_analyzer.service.config import Settings
    from zstack_analyzer.service.server import uvicorn_options

    settings = Settings()
    app = create_app(settings)
    # First in the route table, so a catch-all viewer mount at "/" cannot shadow it.
    app.router.routes.insert(
        0, Mount("/bench-static", app=StaticFiles(directory=sys.argv[1]), name="bench-static")
    )
    # The HTTP limits of `zstack serve`, so the figures are those of what is deployed.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        **uvicorn_options(settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
