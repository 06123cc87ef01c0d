"""Ingest through a running server's HTTP API (``zstack ingest --server URL``).

Why over HTTP: the archive machine need not hold the database password or the
storage; the server applies its own limits, roots and records. Copies are
hashed here first and looked up (``GET /api/images/lookup``), so a re-run
uploads nothing already there; in place, ``POST /api/images/register`` decides
(201 new, 200 already there or refreshed). A few requests run at once in
threads: the server does the CPU work.

A multi-file image (an entry with ``members``) is registered through its main
file, and the server reads the set beside it; uploading a set is not possible
(the upload route takes one file), so a copy-mode set fails with that reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zstack_analyzer.batch.ingest import Commit
from zstack_analyzer.batch.runner import ThreadRunner
from zstack_analyzer.batch.tasks import hash_file

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from zstack_analyzer.batch.runner import Runner
    from zstack_analyzer.batch.walk import FileEntry

__all__ = ["HttpSink", "Response"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Response:
    """What the server said about one file (``status`` 0: no answer)."""

    status: int
    body: dict[str, Any]
    error: str = ""


class HttpSink:
    """Records through the API of the server at ``base_url``.

    Parameters
    ----------
    base_url
        ``http://host:port`` of a running ``zstack serve``.
    token
        Bearer token, when the server sets ``ZSTACK_API_TOKEN``.
    in_place
        Register paths in place (the server must see them under its import roots).
    threads
        Requests in flight.
    """

    uses_cluster = False

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        in_place: bool = False,
        threads: int = 4,
        timeout_s: float = 600.0,
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.in_place = in_place
        self.threads = threads
        # Hashes being uploaded right now: a second file with the same bytes in the same
        # run counts as present instead of racing the first upload (bounded: in flight only).
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=threads + 1),
        )

    def __enter__(self) -> HttpSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self.client.close()

    # ------------------------------------------------------------ the Sink protocol
    def is_present(self, entry: FileEntry) -> bool:
        """Decided by the server (register) or by hash (copies), inside the task."""
        return False

    def task(self) -> Callable[[FileEntry], Response]:
        """One request (or a lookup then an upload) per file."""
        return self._send

    def job(self, entry: FileEntry) -> FileEntry:
        """The entry itself: it never leaves this process."""
        return entry

    def local_runner(self) -> contextlib.AbstractContextManager[Runner]:
        """Threads: the work is the server's; here it is waiting on sockets."""
        return contextlib.nullcontext(ThreadRunner(self.threads))

    def commit(self, entry: FileEntry, result: Response) -> Commit:
        """Interpret the server's answer."""
        body = result.body
        if result.status == 0:
            return Commit("failed", result.error)
        if result.status == 201:
            return Commit("ingested", "", str(body.get("id")))
        if result.status == 200:
            message = str(body.get("message", ""))
            if message.startswith("Refreshed"):
                return Commit("ingested", "refreshed", str(body.get("id")))
            return Commit("present", message, str(body.get("id")))
        detail = str(body.get("detail") or body or f"HTTP {result.status}")
        if result.status == 400 and body.get("code") == "unsupported_format":
            return Commit("unsupported", detail)
        return Commit("failed", f"HTTP {result.status}: {detail}")

    # ------------------------------------------------------------------ requests
    def _send(self, entry: FileEntry) -> Response:
        import httpx

        try:
            if self.in_place:
                path = os.path.realpath(entry.path)
                return _answer(self.client.post("/api/images/register", json={"path": path}))
            if entry.members:
                # One upload is one file: the server would store the main file alone
                # and read only it. A set goes in place, or through a local ingest.
                return Response(
                    0,
                    {},
                    f"{Path(entry.path).name}: a multi-file image ({len(entry.members) + 1} "
                    "files) cannot be uploaded over HTTP; register it in place (--in-place) "
                    "or run the ingest on the server's machine",
                )
            sha256 = hash_file(entry.path)
            with self._lock:
                if sha256 in self._in_flight:
                    return Response(200, {"message": "Already present (same bytes in this run)"})
                self._in_flight.add(sha256)
            try:
                return self._upload_unless_present(entry, sha256)
            finally:
                with self._lock:
                    self._in_flight.discard(sha256)
        except httpx.HTTPError as exc:
            return Response(0, {}, f"no answer from the server: {exc}")
        except OSError as exc:
            return Response(0, {}, f"{Path(entry.path).name}: {exc.strerror or exc}")

    def _upload_unless_present(self, entry: FileEntry, sha256: str) -> Response:
        found = self.client.get("/api/images/lookup", params={"sha256": sha256})
        if found.status_code == 200 and found.json().get("count", 0) > 0:
            first = found.json()["data"][0]
            return Response(200, {"message": "Already present", "id": first["id"]})
        if found.status_code != 200:
            return _answer(found)
        with open(entry.path, "rb") as fh:
            files = {"file": (Path(entry.path).name, fh)}
            return _answer(self.client.post("/api/images/upload", files=files))


def _answer(response: Any) -> Response:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    return Response(response.status_code, body if isinstance(body, dict) else {"data": body})
