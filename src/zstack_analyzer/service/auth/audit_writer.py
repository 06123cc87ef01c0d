"""Write audit events off the request path, in order, one thread per app.

Why a writer thread: ``events.emit`` is called from async routes and must
never slow a request down or fail it; an INSERT on a busy SQLite file can wait
seconds for the write lock, which must not happen on the event loop. Events go
into a single-worker executor (first in, first written); ``GET /api/audit``
calls :meth:`AuditWriter.flush` first, so an admin always sees every event
this process emitted before the query. Shutdown drains the queue. A write
that fails (database gone) is logged with the event, never raised.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zstack_analyzer.service.auth.audit import record_many
from zstack_analyzer.service.db.models import utcnow

if TYPE_CHECKING:
    from datetime import datetime

    from zstack_analyzer.service.db.session import Database

__all__ = ["AuditEntry", "AuditWriter", "dispatch", "entry_from"]

logger = logging.getLogger(__name__)

#: Detail keys that name what the action was done to, most specific first.
_TARGET_KEYS = ("image_id", "token_id", "group", "target_user", "path", "container")
#: Detail keys never written (a call site passing one by mistake must not leak it).
_SECRET_KEYS = frozenset({"password", "secret", "token", "csrf_token", "session"})


@dataclass(frozen=True)
class AuditEntry:
    """One event, as read from the request at the moment it happened."""

    action: str
    user_id: int | None = None
    username: str | None = None
    client: str | None = None
    request_id: str | None = None
    target: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: When it happened (not when the writer got to it).
    at: datetime = field(default_factory=utcnow)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def entry_from(action: str, principal: Any, request: Any, details: dict[str, Any]) -> AuditEntry:
    """An :class:`AuditEntry` from ``events.emit``'s arguments (never raises on odd input).

    ``principal`` may be ``None``: with a request it is a failed login, and
    ``details["username"]`` names the account tried; without one it is the CLI
    (an operator on the server machine), and ``username`` is the account acted on.
    """
    clean = {
        k: _json_safe(v)
        for k, v in details.items()
        if not (k in _SECRET_KEYS and isinstance(v, str | bytes))
    }
    user_id = getattr(principal, "user_id", None)
    username = getattr(principal, "username", None) or None
    if principal is None and request is None:
        clean["via"] = "cli"
        clean["system_user"] = _system_user()
    if principal is None and request is not None and isinstance(clean.get("username"), str):
        username = clean.pop("username")
    elif "username" in clean and clean["username"] != username:
        # An admin acting on another account: the account is the target.
        clean["target_user"] = clean.pop("username")
    target = next((str(clean[k]) for k in _TARGET_KEYS if clean.get(k) is not None), None)
    client = None
    request_id = None
    if request is not None:
        peer = getattr(request, "client", None)
        client = getattr(peer, "host", None)
        state = getattr(request, "scope", {}).get("state", {})
        request_id = state.get("request_id") if isinstance(state, dict) else None
    via = getattr(principal, "via", None)
    if via is not None:
        clean.setdefault("via", via)
    return AuditEntry(
        action=action,
        user_id=user_id if isinstance(user_id, int) else None,
        username=username if isinstance(username, str) else None,
        client=client,
        request_id=request_id,
        target=target,
        details=clean,
    )


def _system_user() -> str:
    """The operating-system account running the CLI (who typed the command)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _write_from_cli(entry: AuditEntry) -> None:
    """The CLI's events: written at once to the database the ``ZSTACK_*`` settings name."""
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.db.session import Database, make_engine

    engine = make_engine(get_settings().resolved_database_url())
    try:
        AuditWriter.write_now(Database(engine), [entry])
    finally:
        engine.dispose()


def dispatch(action: str, principal: Any, request: Any, details: dict[str, Any]) -> None:
    """``events.emit``: queue the event on the app's writer (or write it, from the CLI).

    Never raises: an audit problem is logged, and the action it records goes on.
    """
    try:
        entry = entry_from(action, principal, request, details)
        if request is None:
            _write_from_cli(entry)
            return
        writer: AuditWriter | None = getattr(request.app.state, "audit", None)
        if writer is None:
            logger.warning("audit: no writer on this app; not recorded: %r", entry)
            return
        writer.submit(entry)
    except Exception:
        logger.exception("audit: could not record %s", action)


class AuditWriter:
    """Appends :class:`AuditEntry` rows to ``database`` from one background thread.

    Entries queue in memory and the thread writes everything queued in one
    transaction, so a burst of requests (a script downloading hundreds of
    originals) costs a few commits, not one per event.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zstack-audit")
        self._pending: deque[AuditEntry] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._closed = False

    def submit(self, entry: AuditEntry) -> None:
        """Queue ``entry`` (returns at once); after :meth:`close` it is written here and now."""
        if self._closed:
            self.write_now(self.database, [entry])
            return
        with self._lock:
            self._pending.append(entry)
            if self._scheduled:
                return  # the drain already queued will take this entry too
            self._scheduled = True
        try:
            self._executor.submit(self._drain)
        except RuntimeError:  # shut down between the check and the submit
            self._drain()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every entry submitted before this call is written."""
        if self._closed:
            return
        try:
            # One worker, first in first out: every drain queued before this no-op is done.
            self._executor.submit(lambda: None).result(timeout=timeout)
        except (RuntimeError, TimeoutError):
            logger.warning("audit: flush did not finish within %.0f s", timeout)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._closed = True
        self._executor.shutdown(wait=True)
        self._drain()

    def _drain(self) -> None:
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            self._scheduled = False
        if batch:
            self.write_now(self.database, batch)

    @staticmethod
    def write_now(database: Database, entries: list[AuditEntry]) -> None:
        """Append ``entries`` in one transaction in this thread (failures logged, never raised)."""
        try:
            with database.sessions() as session:
                record_many(session, [asdict(entry) for entry in entries])
        except Exception:
            # The trail must not take the service down with it; the log keeps the events.
            for entry in entries:
                logger.exception("audit: could not record %r", entry)
