"""The storage interface: where stored originals live, behind one small surface.

Why an interface: the service, and batch work beside it, need the same few
operations (write a new original, give a reader a file it can open, stream a
byte range, delete, sweep leftovers) whether the bytes sit in a local folder or
in an S3-compatible bucket. Readers get a local, seekable path (:meth:`path`;
the S3 backend keeps a bounded local cache of the objects being read) or,
for formats read by ranges, a :class:`~zstack_analyzer.storage.remote.RemoteObject`
(:meth:`remote_object`) that they read in place.
"""

from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from zstack_analyzer.storage.remote import RemoteObject

__all__ = ["ObjectStorage", "StorageUnavailableError", "SweepReport", "UploadMirror"]


class StorageUnavailableError(OSError):
    """The storage back end failed (network, permissions, its server): not the file's fault.

    The service answers it with 503 and ``Retry-After``; the same request may
    succeed once the bucket is back.
    """


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What a sweep removed (names, not paths)."""

    temp_files: list[str]
    orphan_files: list[str]


class UploadMirror(Protocol):
    """A destination written while an upload streams in (e.g. an S3 multipart upload).

    ``close()`` completes it; ``abort()`` leaves nothing behind.
    """

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        """Append ``data``."""

    def close(self) -> None:
        """Complete the object (it becomes visible)."""

    def abort(self) -> None:
        """Give up; no object is created."""


class ObjectStorage(abc.ABC):
    """Stored originals, named ``<uuid><suffix>`` (never a user's filename).

    Crash safety, for every backend: an original is made durable (committed)
    before its database row, and a row is deleted before its original, so a
    crash leaves at most an original without a row; :meth:`sweep` removes those.
    """

    #: Whether :meth:`path` is the stored original itself (no cache in between).
    is_local: bool = True

    def new_stored_name(self, suffix: str) -> str:
        """A fresh ``<uuid><suffix>`` name."""
        return f"{uuid.uuid4().hex}{suffix}"

    @abc.abstractmethod
    def ensure_dirs(self) -> None:
        """Create local directories (idempotent)."""

    @abc.abstractmethod
    def temp_path(self, stored_name: str) -> Path:
        """A local temp file for an upload in flight (same file system as the local copies)."""

    def open_mirror(self, stored_name: str) -> UploadMirror | None:
        """A destination to stream an upload into while it arrives, or ``None`` (local)."""
        return None

    @abc.abstractmethod
    def commit(self, temp: Path, stored_name: str, *, mirrored: bool = False) -> Path:
        """Make ``temp`` the durable original ``stored_name``; return a local path to read it.

        ``mirrored`` says the bytes already went to :meth:`open_mirror`'s
        destination (and were completed), so only the local copy is placed.
        """

    @abc.abstractmethod
    def path(self, stored_name: str) -> Path:
        """A local, seekable file with the original's bytes (may fetch it: call off the loop)."""

    def cached_copy(self, stored_name: str) -> Path | None:
        """A local file with the original's bytes if one is at hand without fetching, else ``None``.

        Local storage: the original itself. Object storage: the cached copy, if any.
        """
        return self.path(stored_name)

    def remote_object(self, stored_name: str) -> RemoteObject | None:
        """The original as an object readers can read by ranges, or ``None`` (local storage)."""
        return None

    @abc.abstractmethod
    def size(self, stored_name: str) -> int | None:
        """The original's size in bytes, or ``None`` when it is missing."""

    @abc.abstractmethod
    def iter_range(self, stored_name: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of the original, in chunks."""

    @abc.abstractmethod
    def remove(self, stored_name: str) -> bool:
        """Delete the original (and any local copy); ``False`` when it was already gone."""

    def discard_temp(self, temp: Path) -> None:
        """Delete an abandoned temp file, if any."""
        temp.unlink(missing_ok=True)

    @abc.abstractmethod
    def sweep(self, keep: set[str], *, grace_seconds: float = 0.0) -> SweepReport:
        """Remove temp files and originals without a row, older than ``grace_seconds``."""
