"""Zarr reads that cannot decode more than they declare.

Why: zarr-python trusts sizes. A zip member is inflated in one call as large
as it comes, whatever the zip's central directory says (a 1 MB member that
inflates to 1 GiB while declaring 4096 bytes); a zlib chunk is inflated whole
before zarr notices it is larger than the chunk; and a read of a chunk of
30000 x 30000 allocates 900 MB before anything checks. Here:

- :func:`read_member` inflates a zip member in 1 MiB steps and stops at its
  declared size (zipfile itself stops there and then fails the CRC), so a
  lying member costs 1 MiB and is refused;
- :class:`BoundedZipStore` is zarr's ZipStore reading members so;
- :func:`guard_codecs` makes an array's compressor refuse to produce more
  than the chunk's declared size (zlib and gzip inflate with a cap; blosc,
  lz4 and zstd declare their decoded size in a header, checked first);
- :class:`BudgetedArray` reserves the decoded size of the chunks a read
  touches from the decode budget (:mod:`zstack_analyzer.budget`) before zarr
  decodes them, so one huge chunk is refused before it is allocated.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from zarr.storage import ZipStore

from zstack_analyzer.budget import charge, reserve
from zstack_analyzer.errors import CorruptFileError, LimitExceededError

__all__ = ["BoundedZipStore", "BudgetedArray", "guard_codecs", "read_member"]

_STEP = 1 << 20
#: Largest member BoundedZipStore reads (a chunk may not be larger than a plane may be).
DEFAULT_MEMBER_CAP = 4 << 30


def read_member(archive: zipfile.ZipFile, name: str, cap: int, *, path: Path | str) -> bytes:
    """The bytes of member ``name``, inflated 1 MiB at a time, never past its declared size or ``cap``.

    Raises
    ------
    KeyError
        No such member.
    LimitExceededError
        The member declares more than ``cap``.
    CorruptFileError
        The member inflates to more (or less) than it declares, or fails its CRC.
    """
    info = archive.getinfo(name)
    # The file name only: the message is an HTTP problem's detail, and a server path is not
    # the client's to see (callers pass text paths too).
    label = Path(path).name
    if info.file_size > cap:
        msg = f"{label}: member {name[:80]!r} declares {info.file_size:,} bytes, over the limit of {cap:,}"
        raise LimitExceededError(msg, path=path)
    parts = []
    got = 0
    try:
        with archive.open(info) as member:
            while True:
                piece = member.read(min(_STEP, info.file_size - got + 1))
                if not piece:
                    break
                got += len(piece)
                if got > info.file_size:
                    break
                parts.append(piece)
            more = _stream_continues(member)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        msg = (
            f"{label}: member {name[:80]!r} does not inflate to the {info.file_size:,} bytes its "
            f"zip entry declares ({exc}); refused"
        )
        raise CorruptFileError(msg, path=path, detail=repr(exc)) from exc
    if got != info.file_size or more:
        msg = f"{label}: member {name[:80]!r} inflates past the {info.file_size:,} bytes it declares; refused"
        raise CorruptFileError(msg, path=path)
    return b"".join(parts)


def _stream_continues(member: Any) -> bool:
    """Whether a member read to its declared size still has compressed data left.

    Why the private fields: zipfile stops at the declared size and checks the
    CRC of what it gave, so a stream whose first declared bytes are honest and
    which then goes on inflating passes; only its decompressor knows more is left.
    """
    if int(getattr(member, "_compress_left", 0) or 0) > 0:
        return True
    decompressor = getattr(member, "_decompressor", None)
    if decompressor is None:
        return False
    if getattr(decompressor, "unconsumed_tail", b""):
        return True
    return hasattr(decompressor, "eof") and not decompressor.eof


class BoundedZipStore(ZipStore):
    """A read-only zarr ZipStore whose whole-member reads go through :func:`read_member`."""

    member_cap: int = DEFAULT_MEMBER_CAP

    def _get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if byte_range is not None:
            return super()._get(key, prototype, byte_range)
        if not self._is_open:
            self._sync_open()
        try:
            data = read_member(self._zf, key, self.member_cap, path=str(self.path))
        except KeyError:
            return None
        return prototype.buffer.from_bytes(data)


class _BoundedCodec:
    """A numcodecs compressor that refuses to decode past ``max_out`` bytes."""

    def __init__(self, inner: Any, max_out: int, label: str) -> None:
        self.inner = inner
        self.max_out = int(max_out)
        self.label = label
        self.codec_id = getattr(inner, "codec_id", None)

    def _refuse(self, size: int | None = None) -> LimitExceededError:
        what = f"{size:,} bytes" if size is not None else "more"
        msg = (
            f"{self.label}: a chunk's {self.codec_id} data decodes to {what}, past the "
            f"{self.max_out:,} bytes the chunk declares; refused"
        )
        return LimitExceededError(msg, path=self.label)

    def _inflate(self, buf: Any, wbits: int) -> bytes:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(bytes(memoryview(buf)), self.max_out + 1)
        except zlib.error as exc:
            msg = f"{self.label}: a chunk's {self.codec_id} data is corrupt: {exc}"
            raise CorruptFileError(msg, path=self.label) from exc
        if len(data) > self.max_out:
            raise self._refuse()
        return data

    def decode(self, buf: Any, out: Any = None) -> Any:
        """Decode ``buf`` (at most ``max_out`` bytes), as the wrapped codec would."""
        codec = self.codec_id
        raw = memoryview(buf).cast("B") if not isinstance(buf, bytes) else memoryview(buf)
        if codec == "zlib":
            return self._inflate(buf, zlib.MAX_WBITS)
        if codec == "gzip":
            return self._inflate(buf, 16 + zlib.MAX_WBITS)
        declared: int | None = None
        if codec == "blosc" and len(raw) >= 16:
            # Blosc header: version, versionlz, flags, typesize, then nbytes (uint32 LE).
            declared = int(struct.unpack_from("<I", raw, 4)[0])
        elif codec == "lz4" and len(raw) >= 4:
            declared = int(struct.unpack_from("<I", raw, 0)[0])
        elif codec == "zstd":
            declared = _zstd_content_size(bytes(raw[:18]))
        if declared is not None and declared > self.max_out:
            raise self._refuse(declared)
        result = self.inner.decode(buf, out)
        size = int(np.asarray(result).nbytes) if not isinstance(result, bytes) else len(result)
        if size > self.max_out:
            raise self._refuse(size)
        return result

    def encode(self, buf: Any) -> Any:
        """Encode with the wrapped codec (the reader never writes; kept for the protocol)."""
        return self.inner.encode(buf)

    def get_config(self) -> Any:
        """The wrapped codec's configuration."""
        return self.inner.get_config()

    def __repr__(self) -> str:
        return f"Bounded({self.inner!r}, max_out={self.max_out})"


def _zstd_content_size(head: bytes) -> int | None:
    """The frame content size a zstd frame header declares, if it declares one."""
    if len(head) < 5 or head[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = head[4]
    fcs_flag = descriptor >> 6
    single_segment = (descriptor >> 5) & 1
    dict_flag = descriptor & 3
    pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if size == 0 or len(head) < pos + size:
        return None
    value = int.from_bytes(head[pos : pos + size], "little")
    return value + 256 if size == 2 else value


def guard_codecs(array: Any, label: str) -> None:
    """Make a zarr v2 array's compressor refuse output past its chunk's declared size.

    Why on the instance: zarr builds the codec pipeline from the array's
    metadata once, at open; replacing its compressor there bounds every later
    read of this array, whatever thread zarr decodes in. Zarr v3 arrays are
    left as they are (their reads are still bounded by :class:`BudgetedArray`).
    """
    pipeline = getattr(getattr(array, "_async_array", None), "codec_pipeline", None)
    codec = getattr(pipeline, "array_bytes_codec", None)
    compressor = getattr(codec, "compressor", None)
    if compressor is None or isinstance(compressor, _BoundedCodec):
        return
    chunk_bytes = math.prod(int(c) for c in array.chunks) * np.dtype(array.dtype).itemsize
    filters = getattr(codec, "filters", None)
    max_out = chunk_bytes * (8 if filters else 1)  # a filter may change the stored item size
    object.__setattr__(codec, "compressor", _BoundedCodec(compressor, max_out, label))


class BudgetedArray:
    """A zarr array whose reads hold the decoded size of the chunks they touch (decode budget).

    Dask reads it chunk by chunk (:func:`dask.array.from_array`), so each
    read is one chunk in practice; a chunk larger than the budget's block cap
    is refused before zarr allocates it.
    """

    def __init__(self, array: Any, label: str, path: Path | str) -> None:
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.chunks = tuple(int(c) for c in array.chunks)
        self.chunk_bytes = math.prod(self.chunks) * self.dtype.itemsize
        self.label = label
        self.path = path

    def _extent(self, key: Any) -> tuple[int, int]:
        """(chunks touched, elements asked for) of a read of ``key``."""
        index = key if isinstance(key, tuple) else (key,)
        chunks, elements = 1, 1
        for axis, (size, chunk) in enumerate(zip(self.shape, self.chunks, strict=True)):
            part = index[axis] if axis < len(index) else slice(None)
            if isinstance(part, slice):
                start, stop, step = part.indices(size)
                chunks *= -(-stop // chunk) - start // chunk if stop > start else 0
                elements *= len(range(start, stop, step))
            elif not isinstance(part, int | np.integer):  # fancy: assume all of the axis
                chunks *= -(-size // chunk)
                elements *= size
        return chunks, elements

    def __getitem__(self, key: Any) -> Any:
        touched, elements = self._extent(key)
        if touched == 0:
            return self.array[key]
        what = f"{self.label}: a {' x '.join(map(str, self.chunks))} chunk"
        waste = self.chunk_bytes * touched - elements * self.dtype.itemsize
        charge(max(0, waste), what=what, path=self.path)
        with reserve(self.chunk_bytes * touched, block=self.chunk_bytes, what=what, path=self.path):
            return self.array[key]
