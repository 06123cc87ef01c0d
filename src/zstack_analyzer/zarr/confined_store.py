"""A local zarr store whose every read is checked on the descriptor it reads from.

Why: a chunk of an OME-Zarr folder is served as it is stored (an uncompressed
chunk is the file's bytes), so a chunk file that is a symlink to
``/etc/passwd`` would hand the file out. The process-wide audit check
(:mod:`zstack_analyzer.confine`) runs before zarr's own open; here each key is
opened by :func:`~zstack_analyzer.confine.open_confined`, which checks the very
descriptor it returns, so a swap between the check and the open gets nowhere.
Outside the import roots it is zarr's ``LocalStore`` unchanged.
"""

from __future__ import annotations

import asyncio
import io
import os
from typing import TYPE_CHECKING

from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import LocalStore

from zstack_analyzer.confine import is_confined, open_confined

if TYPE_CHECKING:
    from pathlib import Path

    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype

__all__ = ["ConfinedLocalStore"]


def _read(path: Path, prototype: BufferPrototype, byte_range: ByteRequest | None) -> Buffer:
    """Zarr's ``_get``, over a descriptor checked by :func:`open_confined`."""
    fd, _ = open_confined(path)
    with os.fdopen(fd, "rb") as f:
        if byte_range is None:
            return prototype.buffer.from_bytes(f.read())
        size = f.seek(0, io.SEEK_END)
        if isinstance(byte_range, RangeByteRequest):
            f.seek(byte_range.start)
            return prototype.buffer.from_bytes(f.read(byte_range.end - f.tell()))
        if isinstance(byte_range, OffsetByteRequest):
            f.seek(byte_range.offset)
        elif isinstance(byte_range, SuffixByteRequest):
            f.seek(max(0, size - byte_range.suffix))
        else:
            msg = f"unexpected byte range {byte_range!r}"
            raise TypeError(msg)
        return prototype.buffer.from_bytes(f.read())


class ConfinedLocalStore(LocalStore):
    """``LocalStore`` (read-only use) whose keys under an import root are read race-free."""

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """The bytes of ``key``; ``None`` when there is no such key."""
        path = self.root / key
        if not is_confined(path):
            return await super().get(key, prototype, byte_range)
        if prototype is None:
            prototype = default_buffer_prototype()
        if not self._is_open:
            await self._open()
        try:
            return await asyncio.to_thread(_read, path, prototype, byte_range)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
