"""What one task does to one file: hash (and copy), read metadata, render the thumbnail.

Why plain functions of picklable values: the same function runs in this process,
in a thread, or on a dask.distributed worker on another machine; it gets paths
and settings as values (never an open handle, a session or a lock) and returns
a :class:`FileResult` that says what happened, errors included, so one bad
file never aborts a batch. A worker writes the thumbnail straight into the
shared render cache under the content hash, which is where the service looks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zstack_analyzer.errors import UnsupportedFormatError, ZstackError

if TYPE_CHECKING:
    from zstack_analyzer.cache import RenderCache
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata, SceneInfo
    from zstack_analyzer.quality import SceneQuality
    from zstack_analyzer.render.spec import RenderSpec
    from zstack_analyzer.render.thumbnails import RenderResult

__all__ = [
    "FileJob",
    "FileResult",
    "default_thumbnail_spec",
    "hash_file",
    "inspect_path",
    "process_file",
    "render_and_measure_to_cache",
    "render_to_cache",
    "render_with_quality",
]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
#: dask scheduler for the array work inside one task (see ``_local_dask``).
TASK_SCHEDULER = "threads"


def default_thumbnail_spec() -> RenderSpec:
    """The gallery thumbnail (256x256 Z maximum projection) the service pre-renders."""
    from zstack_analyzer.render.spec import RenderSpec

    return RenderSpec(kind="thumbnail", width=256, height=256)


@dataclass(frozen=True, slots=True)
class FileJob:
    """One file to process.

    Parameters
    ----------
    path
        The original.
    limits
        Read limits for the readers.
    copy_to
        Copy the bytes there while hashing (ingest by copy); ``None``: read in place.
    cache_dir, cache_max_bytes
        Render the default thumbnail into this render cache (``None``: no thumbnail).
    expect_size, expect_mtime_ns
        What the walk saw; a file that differs afterwards is still being written.
    confine_to
        Import roots: every read beneath them must land on a regular file inside
        them (:func:`zstack_analyzer.confine.confine_reads`, set up in the worker).
    measure_quality
        With a thumbnail, measure every scene's quality in the same pass
        (:func:`render_with_quality`); ``FileResult.quality`` holds it.
    members
        A multi-file image (:mod:`zstack_analyzer.filesets`): the other files'
        names relative to ``path``'s folder. Size and mtime are then the set's
        (total, newest), the hash is :func:`~zstack_analyzer.filesets.hash_set`,
        and ``copy_to`` is a *folder* that receives every file under its
        relative name, so the reader finds the companions beside the copy.
    """

    path: str
    limits: ReadLimits
    copy_to: str | None = None
    cache_dir: str | None = None
    cache_max_bytes: int = 1024**3
    measure_quality: bool = True
    expect_size: int | None = None
    expect_mtime_ns: int | None = None
    confine_to: tuple[str, ...] = ()
    members: tuple[str, ...] = ()


@dataclass(slots=True)
class FileResult:
    """What became of one :class:`FileJob`.

    ``status`` is ``"ok"``, ``"unsupported"`` (no reader claims it), ``"changed"``
    (it changed while being read: still being written) or ``"failed"``
    (``error`` says why: corrupt, over limits, unreadable, ...).
    """

    path: str
    status: str
    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""
    metadata: ImageMetadata | None = None
    scenes: list[SceneInfo] = field(default_factory=list)
    copied_to: str | None = None
    thumbnail_ready: bool = False
    error: str = ""
    seconds: float = 0.0
    pid: int = 0  # the process that did the work (this one, or a dask worker)
    #: ``(st_dev, st_ino)`` of the file read (what an in-place record remembers).
    identity: tuple[int, int] | None = None
    #: Every scene's quality, or why it could not be measured; ``None``: not asked.
    quality: list[SceneQuality] | str | None = None
    #: The other files of a multi-file image (relative names), as the job gave them.
    members: tuple[str, ...] = ()


def hash_file(path: str | Path, /, *, copy_to: str | Path | None = None) -> str:
    """SHA-256 of a file (hex), copying it to ``copy_to`` on the way (one read)."""
    hasher = hashlib.sha256()
    with open(path, "rb", opener=_open_regular) as src:
        if copy_to is None:
            while chunk := src.read(CHUNK_BYTES):
                hasher.update(chunk)
        else:
            with open(copy_to, "wb") as dst:
                while chunk := src.read(CHUNK_BYTES):
                    hasher.update(chunk)
                    dst.write(chunk)
    return hasher.hexdigest()


def _open_regular(path: str, flags: int) -> int:
    """``os.open`` that never blocks and refuses anything but a regular file.

    Why: a FIFO opened for reading waits for a writer (a registration of one
    held a worker forever); ``O_NONBLOCK`` returns at once, and the ``fstat`` of
    the descriptor refuses FIFOs, sockets and devices before a byte is read.
    """
    from zstack_analyzer.confine import UnsafeFileError

    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        msg = f"{os.path.basename(path)}: not a regular file (a FIFO, socket, device or folder)"
        raise UnsafeFileError(msg, path=path)
    return fd


def hash_tree(path: str | Path, /) -> str:
    """A SHA-256 naming a folder-format image (OME-Zarr): every file's name, size and bytes."""
    hasher = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        hasher.update(str(file.relative_to(root)).encode() + b"\0")
        hasher.update(bytes.fromhex(hash_file(file)))
    return hasher.hexdigest()


def inspect_path(path: str | Path, limits: ReadLimits) -> tuple[ImageMetadata, list[SceneInfo]]:
    """Detect the format and read scene 0's metadata and the scene list (headers only)."""
    from zstack_analyzer import open_image

    with open_image(path, limits=limits) as reader:
        scenes = list(reader.scenes())
        metadata = reader.metadata(0)
    return metadata, scenes


def render_to_cache(
    path: str,
    spec: RenderSpec,
    limits: ReadLimits,
    cache_dir: str,
    cache_max_bytes: int,
    identity: str,
    confine_to: tuple[str, ...] = (),
) -> int:
    """Render ``spec`` of ``path`` into the render cache at ``cache_dir``; the picture's size.

    Why a cache *directory* and not a cache object: this runs on dask workers,
    which open the shared cache themselves (a RenderCache holds a lock).
    ``confine_to``: the server's import roots, confined in the worker too
    (:func:`zstack_analyzer.confine.confine_reads`).
    """
    if confine_to:
        from zstack_analyzer.confine import confine_reads

        confine_reads(confine_to)
    from zstack_analyzer.cache import RenderCache
    from zstack_analyzer.render.thumbnails import render_file

    cache = RenderCache(cache_dir, max_bytes=cache_max_bytes)
    with _local_dask():
        result = render_file(Path(path), spec, limits=limits, cache=cache, identity=identity)
    return len(result.data)


def render_and_measure_to_cache(
    path: str,
    spec: RenderSpec,
    limits: ReadLimits,
    cache_dir: str,
    cache_max_bytes: int,
    identity: str,
    confine_to: tuple[str, ...] = (),
) -> list[SceneQuality] | str:
    """:func:`render_to_cache` measuring every scene's quality in the same pass.

    What a dask worker runs for the service's upload job: the thumbnail goes
    into the shared cache, the measures come back to the server, which stores
    them (:func:`render_with_quality`; a string is why they failed).
    """
    if confine_to:
        from zstack_analyzer.confine import confine_reads

        confine_reads(confine_to)
    from zstack_analyzer.cache import RenderCache

    cache = RenderCache(cache_dir, max_bytes=cache_max_bytes)
    with _local_dask():
        _, quality = render_with_quality(Path(path), spec, limits, cache, identity)
    return quality


def _local_dask() -> Any:
    """Dask's scheduler for the reads inside one task: this process's threads.

    Why: inside a dask.distributed worker, ``compute()`` defaults to the
    cluster itself, so every plane of a render would become a task sent
    through the scheduler (4x slower, measured). One file's planes belong to
    the worker that renders it.
    """
    import dask

    return dask.config.set(scheduler=TASK_SCHEDULER)


def process_file(job: FileJob) -> FileResult:
    """Hash (and copy), inspect and thumbnail one file; never raises for a bad file."""
    if job.confine_to:
        from zstack_analyzer.confine import confine_reads

        confine_reads(job.confine_to)
    with _local_dask():
        return _process_file(job)


def _process_file(job: FileJob) -> FileResult:
    if job.members:
        return _process_set(job)
    started = time.perf_counter()
    result = FileResult(job.path, "ok", pid=os.getpid())
    copied = False
    try:
        before = os.stat(job.path)  # never opens: a FIFO cannot block here
        if not (stat.S_ISREG(before.st_mode) or stat.S_ISDIR(before.st_mode)):
            result.status = "refused"
            result.error = f"{job.path}: not a regular file or folder (a FIFO, socket or device)"
            return result
        result.size, result.mtime_ns = before.st_size, before.st_mtime_ns
        result.identity = (before.st_dev, before.st_ino)
        if _changed(job, before):
            result.status = "changed"
            result.error = "still being written (size or time changed since it was listed)"
            return result
        if os.path.isdir(job.path):
            result.sha256 = hash_tree(job.path)
        else:
            result.sha256 = hash_file(job.path, copy_to=job.copy_to)
            copied = job.copy_to is not None
        readable = job.copy_to if copied and job.copy_to else job.path
        result.metadata, result.scenes = inspect_path(readable, job.limits)
        after = os.stat(job.path)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            result.status = "changed"
            result.error = "still being written (changed while it was read)"
            return result
        if job.cache_dir is not None:
            try:
                if job.measure_quality:
                    from zstack_analyzer.cache import RenderCache

                    cache = RenderCache(job.cache_dir, max_bytes=job.cache_max_bytes)
                    _, result.quality = render_with_quality(
                        readable, default_thumbnail_spec(), job.limits, cache, result.sha256
                    )
                else:
                    render_to_cache(
                        readable,
                        default_thumbnail_spec(),
                        job.limits,
                        job.cache_dir,
                        job.cache_max_bytes,
                        result.sha256,
                    )
                result.thumbnail_ready = True
            except (ZstackError, OSError) as exc:  # a failed thumbnail never fails an ingest
                logger.warning("%s: thumbnail failed: %s", job.path, exc)
        if copied:
            result.copied_to = job.copy_to
            copied = False  # handed over to the caller, who commits or discards it
        return result
    except UnsupportedFormatError as exc:
        result.status, result.error = "unsupported", str(exc)
        return result
    except (ZstackError, OSError, ValueError) as exc:
        result.status, result.error = "failed", _message(job.path, exc)
        if job.copy_to is not None:  # name the user's file, never our temp copy
            name = Path(job.path).name
            for internal in (job.copy_to, Path(job.copy_to).name):
                result.error = result.error.replace(internal, name)
        return result
    finally:
        if copied and job.copy_to is not None:
            Path(job.copy_to).unlink(missing_ok=True)
        result.seconds = time.perf_counter() - started


def _process_set(job: FileJob) -> FileResult:
    """:func:`_process_file` for a multi-file image: every member hashed (and copied) in turn."""
    import shutil

    from zstack_analyzer.filesets import FileSet, hash_set, set_state

    started = time.perf_counter()
    result = FileResult(job.path, "ok", pid=os.getpid(), members=job.members)
    main = Path(job.path)
    files = FileSet.of(main, [Path(n) for n in job.members])
    copy_dir = Path(job.copy_to) if job.copy_to is not None else None
    handed_over = False
    try:
        main_st = os.stat(main)
        result.identity = (main_st.st_dev, main_st.st_ino)
        before = set_state(files)
        result.size, result.mtime_ns = before.size, before.mtime_ns
        if before.missing:
            result.status = "changed"
            result.error = f"member file(s) gone or not regular: {', '.join(before.missing[:5])}"
            return result
        if (job.expect_size is not None and before.size != job.expect_size) or (
            job.expect_mtime_ns is not None and before.mtime_ns != job.expect_mtime_ns
        ):
            result.status = "changed"
            result.error = "still being written (a member changed since it was listed)"
            return result

        def hash_member(path: Path) -> str:
            if copy_dir is None:
                return hash_file(path)
            target = copy_dir / path.relative_to(files.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            return hash_file(path, copy_to=target)

        if copy_dir is not None:
            copy_dir.mkdir(parents=True, exist_ok=False)
        result.sha256 = hash_set(files, hash_member)
        readable = copy_dir / main.name if copy_dir is not None else main
        result.metadata, result.scenes = inspect_path(readable, job.limits)
        if set_state(files) != before:
            result.status = "changed"
            result.error = "still being written (a member changed while it was read)"
            return result
        if job.cache_dir is not None:
            try:
                from zstack_analyzer.cache import RenderCache

                cache = RenderCache(job.cache_dir, max_bytes=job.cache_max_bytes)
                if job.measure_quality:
                    _, result.quality = render_with_quality(
                        readable, default_thumbnail_spec(), job.limits, cache, result.sha256
                    )
                else:
                    render_to_cache(
                        str(readable),
                        default_thumbnail_spec(),
                        job.limits,
                        job.cache_dir,
                        job.cache_max_bytes,
                        result.sha256,
                    )
                result.thumbnail_ready = True
            except (ZstackError, OSError) as exc:
                logger.warning("%s: thumbnail failed: %s", job.path, exc)
        if copy_dir is not None:
            result.copied_to = str(copy_dir)
            handed_over = True
        return result
    except UnsupportedFormatError as exc:
        result.status, result.error = "unsupported", str(exc)
        return result
    except (ZstackError, OSError, ValueError) as exc:
        result.status, result.error = "failed", _message(job.path, exc)
        if copy_dir is not None:
            result.error = result.error.replace(str(copy_dir), str(files.folder))
        return result
    finally:
        if copy_dir is not None and not handed_over:
            shutil.rmtree(copy_dir, ignore_errors=True)
        result.seconds = time.perf_counter() - started


def _changed(job: FileJob, st: os.stat_result) -> bool:
    if (
        job.expect_size is not None
        and st.st_size != job.expect_size
        and not os.path.isdir(job.path)
    ):
        return True
    return job.expect_mtime_ns is not None and st.st_mtime_ns != job.expect_mtime_ns


def _message(path: str, exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ZstackError):
        return f"{Path(path).name}: {exc.strerror or exc}"
    text = str(exc)
    return text if text else f"{Path(path).name}: {type(exc).__name__}"


def render_with_quality(
    path: str | Path,
    spec: RenderSpec,
    limits: ReadLimits,
    cache: RenderCache | None,
    identity: str,
) -> tuple[RenderResult, list[SceneQuality] | str]:
    """Render ``spec`` into ``cache`` and measure every scene's quality, one open of the file.

    The projection thumbnail's planes feed the measures of its scene as they
    stream by (:func:`zstack_analyzer.quality.thumbnail_with_quality`); the
    planes it does not read (other time points, channels and scenes) are read
    afterwards. A cached thumbnail is not rendered again; the measures then
    read the planes themselves. A failed measure never fails the thumbnail:
    the second value is then the reason (a string).
    """
    from zstack_analyzer.loader import open_image
    from zstack_analyzer.quality import measure_reader, thumbnail_with_quality
    from zstack_analyzer.render.encode import MEDIA_TYPES, encode_image
    from zstack_analyzer.render.thumbnails import RenderResult

    etag = spec.cache_key(identity)
    media_type = MEDIA_TYPES[spec.image_format]
    cached = cache.get(identity, etag) if cache is not None else None
    qualities: list[SceneQuality] = []
    with open_image(path, limits=limits) as reader:
        if cached is not None:
            result = RenderResult(cached, media_type, etag, from_cache=True)
        else:
            image, first = thumbnail_with_quality(reader, spec)
            data = encode_image(image, spec.image_format)
            if cache is not None:
                try:
                    cache.put(identity, etag, data)
                except OSError:
                    logger.warning("%s: could not cache the thumbnail", path, exc_info=True)
            result = RenderResult(data, media_type, etag, from_cache=False)
            qualities.append(first)
        try:
            done = {q.scene for q in qualities}
            for info in reader.scenes():
                if info.index not in done:
                    qualities.append(measure_reader(reader, info.index))
        except (ZstackError, OSError, ValueError) as exc:
            logger.warning("%s: quality failed: %s", path, exc)
            return result, _message(str(path), exc)
    return result, sorted(qualities, key=lambda q: q.scene)
