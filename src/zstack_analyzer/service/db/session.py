"""Engine and session factory, built per app (never at import).

Why the SQLite tweaks: the default data store is one SQLite file shared by the
worker threads; WAL and a busy timeout let concurrent uploads commit instead of
failing with "database is locked".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Engine

__all__ = ["Database", "make_engine", "make_session_factory"]

T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Engine for ``url`` (SQLite file or PostgreSQL via ``postgresql+psycopg://``)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


class Database:
    """The app's engine and sessions; async callers run queries in a worker thread.

    Why threads and not an async driver: one code path (sync SQLAlchemy) serves
    SQLite and PostgreSQL, migrations and the CLI; a query is short, so the
    default thread pool is enough.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = make_session_factory(engine)

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(session, *args)`` in a fresh session (closed afterwards)."""
        with self.sessions() as session:
            return func(session, *args)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """:meth:`call` in a worker thread, off the event loop."""
        return await anyio.to_thread.run_sync(self.call, func, *args)
