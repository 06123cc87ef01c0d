"""Rows of a deflate-compressed TIFF strip, inflated as a stream: never the whole strip at once.

Why: a strip is the smallest unit a TIFF decoder hands back, and a hostile (or
careless) writer can make one strip 240 MiB decoded out of 300 KB on disk.
Deflate is a stream and the horizontal predictor works row by row, so the
rows a region needs can be inflated a few MiB at a time and kept, while the
rows before them are inflated and dropped. A region then costs its own size
plus one step, whatever the strip size; what is inflated and dropped is
charged to the request's decode budget, so a request cannot inflate without
end either.

A :class:`StripCursor` remembers where the last read of a strip stopped, so
bands read top to bottom (a render reducing a huge plane) inflate each strip
once, not once per band.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.budget import charge, reserve
from zstack_analyzer.errors import CorruptFileError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["STREAM_STEP", "StripCursors", "streamable"]

#: Bytes inflated per step (and held, beyond the rows kept).
STREAM_STEP = 4 << 20
#: Compressed bytes read from the file per step.
_READ_STEP = 1 << 20
_DEFLATE = (8, 32946)


def streamable(key: Any) -> bool:
    """Whether the pages of keyframe ``key`` are deflate strips this module can stream.

    Chunky samples (or one sample), whole bytes per sample, no predictor or the
    horizontal one on integers, one image depth, normal fill order.
    """
    try:
        return (
            not key.is_tiled
            and int(key.compression) in _DEFLATE
            and int(key.fillorder) == 1
            and int(key.imagedepth) == 1
            and int(key.bitspersample) in (8, 16, 32, 64)
            and (int(key.samplesperpixel) == 1 or int(key.planarconfig) == 1)
            and (
                int(key.predictor) == 1
                or (int(key.predictor) == 2 and np.dtype(key.dtype).kind in "ui")
            )
        )
    except (AttributeError, TypeError, ValueError):
        return False


@dataclass
class _Cursor:
    """Where one strip's inflation stopped: the inflater, the next row, compressed bytes used."""

    inflater: Any
    row: int = 0
    consumed: int = 0
    #: Inflated bytes of a row not yet complete.
    partial: bytes = b""


class StripCursors:
    """The last few strips' cursors of one reader (thread-safe: a cursor is taken, then put back)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._cursors: OrderedDict[tuple[int, int], _Cursor] = OrderedDict()
        self._lock = threading.Lock()

    def _take(self, key: tuple[int, int], first_row: int) -> _Cursor:
        with self._lock:
            cursor = self._cursors.pop(key, None)
        if cursor is None or cursor.row > first_row:
            cursor = _Cursor(zlib.decompressobj())
        return cursor

    def _put(self, key: tuple[int, int], cursor: _Cursor) -> None:
        with self._lock:
            self._cursors[key] = cursor
            while len(self._cursors) > self.size:
                self._cursors.popitem(last=False)

    def read_rows(
        self,
        *,
        page: Any,
        strip: int,
        strip_top: int,
        rows: tuple[int, int],
        cols: tuple[int, int],
        out: np.ndarray,
        out_top: int,
        dtype: np.dtype[Any],
        io_lock: Any,
        path: Path,
    ) -> None:
        """Inflate strip ``strip`` (its first row is ``strip_top``) up to the last of ``rows``.

        Rows ``rows`` (plane coordinates), columns ``cols``, go into ``out`` from
        row ``rows[0] - out_top``.
        """
        key = page.keyframe
        nx = int(key.imagewidth)
        spp = int(key.samplesperpixel)
        stored = np.dtype(dtype).newbyteorder(page.parent.byteorder)
        row_bytes = nx * spp * stored.itemsize
        first, last = rows[0] - strip_top, rows[1] - strip_top
        offset, count = int(page.dataoffsets[strip]), int(page.databytecounts[strip])
        fh = page.parent.filehandle
        ident = (int(page.offset), strip)
        cursor = self._take(ident, first)
        what = f"{path.name}: strip {strip} of IFD {page.index}"
        predictor = int(key.predictor)
        step = max(1, STREAM_STEP // row_bytes) * row_bytes  # whole rows per step
        with reserve(2 * step + _READ_STEP, what=what, path=path):
            while cursor.row < last:
                want = (last - cursor.row) * row_bytes - len(cursor.partial)
                data = cursor.inflater.unconsumed_tail
                if not data:
                    if cursor.consumed >= count or cursor.inflater.eof:
                        break
                    with io_lock:
                        fh.seek(offset + cursor.consumed)
                        data = fh.read(min(_READ_STEP, count - cursor.consumed))
                    if not data:
                        break
                    cursor.consumed += len(data)
                try:
                    piece = cursor.inflater.decompress(data, max(1, min(step, want)))
                except zlib.error as exc:
                    msg = f"{what}: corrupt deflate data: {exc}"
                    raise CorruptFileError(msg, path=path) from exc
                if not piece:
                    continue
                buffer = cursor.partial + piece if cursor.partial else piece
                whole = len(buffer) // row_bytes
                cursor.partial = buffer[whole * row_bytes :]
                if not whole:
                    charge(len(piece), what=what, path=path)  # settled with its row
                    continue
                top = cursor.row
                cursor.row += whole
                keep_from = max(first, top)
                keep_to = min(cursor.row, last)
                kept = max(0, keep_to - keep_from) * (cols[1] - cols[0]) * spp * stored.itemsize
                charge(max(0, len(piece) - kept), what=what, path=path)
                if keep_to > keep_from:
                    block = np.frombuffer(
                        buffer,
                        dtype=stored,
                        count=(keep_to - keep_from) * nx * spp,
                        offset=(keep_from - top) * row_bytes,
                    ).reshape(-1, nx, spp)
                    if predictor == 2:
                        block = np.cumsum(block.astype(dtype), axis=1, dtype=dtype)
                    band = block[:, cols[0] : cols[1]]
                    at = keep_from + strip_top - out_top
                    target = out[at : at + band.shape[0]]
                    target[...] = band if target.ndim == 3 else band[..., 0]
        if cursor.row < last and cursor.row < int(key.rowsperstrip or 0):
            # The stream ended before the rows asked for: the rest stays zero, as tifffile
            # leaves a short strip; the cursor is dropped so a retry starts afresh.
            return
        self._put(ident, cursor)
