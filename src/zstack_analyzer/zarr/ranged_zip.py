"""zarr's ZipStore over a zip in an S3 bucket, read by ranged GETs.

Why a subclass: ZipStore opens ``zipfile.ZipFile(self.path)`` and insists on a
local path; zipfile itself takes any seekable file, so only the opening
changes. The central directory is read once at open, each chunk with one or
two GETs as zarr asks for it; nothing is written locally. A module of its own
(and not inside :mod:`~zstack_analyzer.zarr.zipped`) because it imports zarr,
an optional dependency, at import time.
"""

from __future__ import annotations

import threading
import zipfile
from typing import TYPE_CHECKING, Any

from zstack_analyzer.zarr.bounded import BoundedZipStore

if TYPE_CHECKING:
    from zstack_analyzer.storage.remote import RangedFile, RemoteObject

__all__ = ["RangedZipStore"]


class RangedZipStore(BoundedZipStore):
    """A read-only :class:`zarr.storage.ZipStore` whose zip is a remote object.

    Members are read as :class:`~zstack_analyzer.zarr.bounded.BoundedZipStore` reads them.

    Pickles by its :class:`~zstack_analyzer.storage.remote.RemoteObject` (the
    open file is dropped and reopened, as ZipStore does with its zip).
    """

    def __init__(self, source: RemoteObject) -> None:
        super().__init__(source.path, mode="r")
        self.source = source
        self._ranged: RangedFile | None = None

    def _sync_open(self) -> None:
        if self._is_open:
            msg = "store is already open"
            raise ValueError(msg)
        self._lock = threading.RLock()
        self._ranged = self.source.open()
        self._zf = zipfile.ZipFile(self._ranged, mode="r")
        self._is_open = True

    def close(self) -> None:
        """Close the zip and its ranged file."""
        if self._is_open:
            super().close()
        if self._ranged is not None:
            self._ranged.close()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_ranged", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_ranged"] = None
        super().__setstate__(state)
