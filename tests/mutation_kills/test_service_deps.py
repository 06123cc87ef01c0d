"""The injected dependencies (``service/deps.py``) on a small app: each from its own state slot.

What the broader tests leave open: which state slot each dependency reads (a service test
sees the same object either way only when the slots hold it), the dask cluster's absence
read as ``None``, and the request's session open during the route and closed afterwards.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from tests.mutation_kills.service_db import _template
from tests.service.conftest import _testclient_class
from zstack_analyzer.service import deps  # noqa: TC001 - FastAPI reads the annotations

if TYPE_CHECKING:
    from pathlib import Path


def test_each_dependency_reads_its_own_slot(tmp_path: Path) -> None:
    from fastapi import FastAPI

    from zstack_analyzer.service.db.session import Database, make_engine

    db_path = tmp_path / "zstack.db"
    shutil.copyfile(_template(), db_path)
    engine = make_engine(f"sqlite:///{db_path}")
    database = Database(engine)
    app = FastAPI()
    slots = ("settings", "storage", "cache", "records", "pool", "cluster")
    for name in slots:
        setattr(app.state, name, f"the {name}")
    app.state.database = database
    seen: list[Any] = []

    @app.get("/all")
    async def _all(
        settings: deps.SettingsDep,
        storage: deps.StorageDep,
        cache: deps.CacheDep,
        records: deps.RecordsDep,
        pool: deps.PoolDep,
        cluster: deps.ClusterDep,
        db: deps.DatabaseDep,
    ) -> list[Any]:
        return [settings, storage, cache, records, pool, cluster, db is database]

    @app.get("/session")
    def _session(session: deps.SessionDep) -> int:
        seen.append(session)
        assert session.get_bind() is engine
        return int(session.execute(text("select 41 + 1")).scalar_one())

    try:
        with _testclient_class()(app) as client:
            assert client.get("/all").json() == [*(f"the {n}" for n in slots), True]
            del app.state.cluster
            assert client.get("/all").json()[5] is None
            assert client.get("/session").json() == 42
        [session] = seen
        assert not session.in_transaction()  # closed when the request ended
    finally:
        engine.dispose()
