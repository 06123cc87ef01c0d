"""Ingest into this machine's database and storage (``zstack ingest`` without ``--server``).

Why in the service package: it writes the very rows and files the server
serves, through the service's own functions (``build_image``, ``save_in_place``,
``Storage.commit``), so an upload, a registration and an ingest produce the
same record. The batch engine (``zstack_analyzer.batch``) does the walk and
runs the per-file work anywhere; this sink only checks presence and commits,
one file per transaction, so a run killed at any point leaves whole records
and a re-run adds exactly the missing ones.

Crash safety of copies: the worker writes the copy to ``tmp/`` as
``ingest-<final name>``; the commit renames it into ``images/`` under its final
name and then inserts the row. A kill between the two leaves a file without a
row, which the server's start-up sweep removes; the re-run copies the file
again. A kill during the copy leaves a partial ``ingest-*`` file in ``tmp/``:
the next ingest run removes those older than :data:`INGEST_TEMP_GRACE_S` (its
own only, by their prefix: uploads in flight are never touched, nor the copies
of another ingest running now).

Multi-file images (an entry with ``members``, see
:mod:`zstack_analyzer.batch.grouping`): in place, every member must resolve
inside the import roots, in the main file's folder layout; by copy, the set is
copied into a temp folder ``tmp/ingest-<key>/`` under its relative names, and
the commit renames that folder to ``images/<key>/``. The record's
``stored_name`` is ``<key>/<main file name>``: the reader opens the main file
and finds its companions beside it, as in the original folder. (Only local
storage holds folders; with S3 storage a set is refused: ingest it in place.)
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from zstack_analyzer.batch.ingest import Commit
from zstack_analyzer.batch.tasks import FileJob, FileResult, process_file
from zstack_analyzer.errors import ZstackError
from zstack_analyzer.service.db import crud
from zstack_analyzer.service.images_service import (
    build_image,
    find_present,
    resolve_import_path,
    save_in_place,
    signed64,
)
from zstack_analyzer.service.storage import display_filename, make_storage, stored_suffix
from zstack_analyzer.storage.local import LocalStorage

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable
    from types import TracebackType

    from zstack_analyzer.batch.runner import Runner
    from zstack_analyzer.batch.walk import FileEntry
    from zstack_analyzer.service.config import Settings

__all__ = ["INGEST_TEMP_GRACE_S", "INGEST_TEMP_PREFIX", "LocalSink", "sweep_ingest_temps"]

logger = logging.getLogger(__name__)

#: Prefix of the partial copies an ingest writes to ``tmp/`` (what its sweep may remove).
INGEST_TEMP_PREFIX = "ingest-"
#: A partial copy untouched this long belongs to a run that died (a live copy is written to).
INGEST_TEMP_GRACE_S = 3600.0


def sweep_ingest_temps(tmp_dir: Path, *, grace_seconds: float = INGEST_TEMP_GRACE_S) -> list[str]:
    """Remove the ``ingest-*`` regular files in ``tmp_dir`` older than ``grace_seconds``; their names."""
    if not tmp_dir.is_dir():
        return []
    cutoff = time.time() - grace_seconds
    removed = []
    with os.scandir(tmp_dir) as entries:
        for entry in entries:
            if not entry.name.startswith(INGEST_TEMP_PREFIX):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_mtime > cutoff:
                    continue
                if stat.S_ISDIR(st.st_mode):  # a multi-file image's partial copy
                    shutil.rmtree(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    os.unlink(entry.path)
                else:
                    continue
            except FileNotFoundError:
                continue
            removed.append(entry.name)
    if removed:
        logger.warning("removed %d partial ingest copies left in %s", len(removed), tmp_dir)
    return removed


class LocalSink:
    """Records into the database and storage named by ``settings`` (the server's own).

    Parameters
    ----------
    settings
        The same settings ``zstack serve`` reads (``ZSTACK_*``).
    in_place
        Register originals where they are (inside ``import_roots``) instead of copying.

    Examples
    --------
    >>> with LocalSink(get_settings(), in_place=False) as sink:  # doctest: +SKIP
    ...     summary = ingest(["/data/lab"], sink)
    """

    uses_cluster = True

    def __init__(self, settings: Settings, *, in_place: bool) -> None:
        from zstack_analyzer.registry import known_suffixes
        from zstack_analyzer.service.db.migrations import upgrade_database
        from zstack_analyzer.service.db.session import Database, make_engine

        self.settings = settings
        self.in_place = in_place
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.storage = make_storage(settings)
        self.storage.ensure_dirs()
        engine = make_engine(settings.resolved_database_url())
        try:
            upgrade_database(engine)
        except BaseException:
            engine.dispose()
            raise
        self.database = Database(engine)
        self.limits = settings.limits.read_limits()
        self.cache_dir = settings.cache_dir if settings.render.thumbnail_on_upload else None
        self._known = known_suffixes()
        self.swept = sweep_ingest_temps(self.storage.temp_path(INGEST_TEMP_PREFIX).parent)

    def __enter__(self) -> LocalSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self.database.engine.dispose()

    # ------------------------------------------------------------ the Sink protocol
    def _source(self, entry: FileEntry) -> str:
        if self.in_place:
            return str(resolve_import_path(entry.path, self.settings.import_roots))
        return str(Path(entry.path).resolve())

    def is_present(self, entry: FileEntry) -> bool:
        """Same path, size and mtime already recorded (in place, or copied from there)."""
        try:
            source = self._source(entry)
        except ZstackError:
            return False  # the job reports it
        found = self.database.call(
            functools.partial(
                find_present,
                path=source,
                size=entry.size,
                mtime_ns=entry.mtime_ns,
                in_place=self.in_place,
            )
        )
        return found is not None

    def task(self) -> Callable[[FileJob | str], FileResult]:
        """The per-file work (module level: it travels to dask workers)."""
        return _process_or_refuse

    def job(self, entry: FileEntry) -> FileJob | str:
        """The worker's job; a string is a refusal decided here (outside the import roots)."""
        try:
            source = self._source(entry)
        except ZstackError as exc:
            return str(exc)
        if entry.members:
            refusal = self._check_members(entry, source)
            if refusal:
                return refusal
        copy_to = None
        if not self.in_place and entry.members:
            key = uuid.uuid4().hex
            copy_to = str(self.storage.temp_path(f"{INGEST_TEMP_PREFIX}{key}"))
        elif not self.in_place:
            name = display_filename(Path(entry.path).name)
            stored_name = self.storage.new_stored_name(stored_suffix(name, self._known))
            copy_to = str(self.storage.temp_path(f"{INGEST_TEMP_PREFIX}{stored_name}"))
        return FileJob(
            path=source,
            limits=self.limits,
            copy_to=copy_to,
            cache_dir=str(self.cache_dir) if self.cache_dir is not None else None,
            cache_max_bytes=self.settings.render.cache_max_bytes,
            expect_size=entry.size if not entry.is_dir else None,
            expect_mtime_ns=entry.mtime_ns,
            confine_to=tuple(str(root) for root in self.settings.import_roots)
            if self.in_place
            else (),
            members=entry.members,
        )

    def _check_members(self, entry: FileEntry, source: str) -> str:
        """Why a set cannot be read as it is (empty: it can).

        Every member must resolve inside the import roots (in place) and the
        main file must resolve into its own folder (a symlinked main file
        elsewhere would make the members' relative names wrong).
        """
        folder = Path(entry.path).parent
        if Path(source).parent != folder.resolve():
            return f"{entry.path}: the main file of a multi-file image is a link to another folder"
        if not self.in_place and not isinstance(self.storage, LocalStorage):
            return (
                f"{entry.path}: a multi-file image is copied only into local storage; "
                "ingest it in place (--in-place)"
            )
        if self.in_place:
            for name in entry.members:
                try:
                    resolve_import_path(str(folder / name), self.settings.import_roots)
                except ZstackError as exc:
                    return f"{entry.path}: member {name}: {exc}"
        return ""

    def commit(self, entry: FileEntry, result: FileResult) -> Commit:
        """Insert (or refresh) the record for a processed file."""
        if result.status == "refused":
            return Commit("failed", result.error)
        if result.status == "unsupported":
            return Commit("unsupported", result.error)
        if result.status == "changed":
            return Commit("skipped", result.error)
        if result.status != "ok" or result.metadata is None:
            return Commit("failed", result.error or "unreadable")
        if self.in_place:
            return self._commit_in_place(result)
        return self._commit_copy(entry, result)

    def local_runner(self) -> contextlib.AbstractContextManager[Runner] | None:
        """None: the batch engine picks a LocalCluster or the scheduler."""
        return None

    # ------------------------------------------------------------------ commits
    def _commit_in_place(self, result: FileResult) -> Commit:
        assert result.metadata is not None  # noqa: S101  (checked by commit())
        image, created, previous = self.database.call(
            functools.partial(
                save_in_place,
                path=result.path,
                size=result.size if not Path(result.path).is_dir() else 0,
                mtime_ns=result.mtime_ns,
                sha256=result.sha256,
                metadata=result.metadata,
                scenes=result.scenes,
                identity=(
                    (signed64(result.identity[0]), signed64(result.identity[1]))
                    if result.identity is not None
                    else None
                ),
            )
        )
        if previous is not None and previous != result.sha256:
            self._evict_if_unused(previous)
        if result.thumbnail_ready:
            self.database.call(crud.mark_thumbnail_ready, image.id)
        self._store_quality(image.id, result)
        return Commit("ingested", "" if created else "refreshed", str(image.id))

    def _store_quality(self, image_id: uuid.UUID, result: FileResult) -> None:
        """Store what the worker measured with the thumbnail (nothing when it did not)."""
        from zstack_analyzer.service.db.quality import store_quality, store_quality_error

        if isinstance(result.quality, str):
            self.database.call(store_quality_error, image_id, result.quality)
        elif result.quality is not None:
            self.database.call(store_quality, image_id, result.quality)

    def _commit_copy(self, entry: FileEntry, result: FileResult) -> Commit:
        temp = Path(result.copied_to or "")
        duplicate = self.database.call(crud.find_duplicate, result.sha256)
        if duplicate is not None:
            if result.members:
                shutil.rmtree(temp, ignore_errors=True)
            else:
                temp.unlink(missing_ok=True)
            return Commit("present", f"same bytes as image {duplicate.id}", str(duplicate.id))
        stored_name = temp.name.removeprefix(INGEST_TEMP_PREFIX)
        if result.members:
            assert isinstance(self.storage, LocalStorage)  # noqa: S101  (refused in job())
            self.storage.commit_folder(temp, stored_name)
            stored_name = f"{stored_name}/{Path(result.path).name}"
        else:
            self.storage.commit(temp, stored_name)
        assert result.metadata is not None  # noqa: S101  (checked by commit())
        image = build_image(
            image_id=uuid.uuid4(),
            filename=display_filename(Path(entry.path).name),
            stored_name=stored_name,
            size_bytes=result.size,
            sha256=result.sha256,
            metadata=result.metadata,
            scenes=result.scenes,
            source_path=result.path,
            source_size=result.size,
            source_mtime_ns=result.mtime_ns,
        )
        image.thumbnail_ready = result.thumbnail_ready
        try:
            self.database.call(crud.add_image, image)
        except BaseException:
            self.storage.remove(stored_name)
            raise
        self._store_quality(image.id, result)
        return Commit("ingested", "", str(image.id))

    def _evict_if_unused(self, sha256: str) -> None:
        from zstack_analyzer.cache import RenderCache

        if self.database.call(crud.count_sha256, sha256) == 0 and self.cache_dir is not None:
            RenderCache(
                self.cache_dir, max_bytes=self.settings.render.cache_max_bytes
            ).evict_identity(sha256)


def _process_or_refuse(job: FileJob | str) -> FileResult:
    """:func:`process_file`, or a refusal the sink decided (a message instead of a job)."""
    if isinstance(job, str):
        return FileResult("", "refused", error=job)
    return process_file(job)
