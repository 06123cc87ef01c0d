"""``service/quality_backfill.py``: ``zstack quality --missing`` and the admin backfill.

On a real SQLite database at head (a copy of the migrated template) and real
OME-TIFFs in the service's local storage: the order images are measured in,
what is stored for a good file and for a broken one, ``limit`` and ``batch``,
an image deleted while it is measured, the confinement and read limits of the
function a child process runs, and the service's one-at-a-time job in a real
worker pool.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from sqlalchemy import delete, select

from tests.mutation_kills.service_db import _template, add_image
from tests.service.conftest import write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.confine import UnsafeFileError
from zstack_analyzer.errors import LimitExceededError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.quality import ImageQuality
from zstack_analyzer.service.quality_backfill import (
    BackfillJob,
    BackfillSummary,
    backfill_quality,
    measure_and_store,
    measure_file,
)

if TYPE_CHECKING:
    import uuid
    from collections.abc import Iterator
    from pathlib import Path

    from zstack_analyzer.service.config import Settings
    from zstack_analyzer.service.db.session import Database
    from zstack_analyzer.storage.base import ObjectStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Service:
    """The settings, database and storage of one test's service."""

    def __init__(self, root: Path, **settings: Any) -> None:
        from zstack_analyzer.service.db.session import Database, make_engine
        from zstack_analyzer.service.storage import make_storage

        data = root / "data"
        data.mkdir()
        shutil.copyfile(_template(), data / "zstack.db")
        self.root = root
        self.settings: Settings = make_settings(data, **settings)
        self.storage: ObjectStorage = make_storage(self.settings)
        self.storage.ensure_dirs()
        self.database: Database = Database(make_engine(self.settings.resolved_database_url()))
        self.count = 0

    def add(
        self,
        name: str,
        *,
        broken: bool = False,
        channels: int = 2,
        size: int = 12,
        scenes: int = 1,
        link_to: Path | None = None,
    ) -> uuid.UUID:
        """A stored image (a real OME-TIFF, or bytes no reader takes), the next one by age.

        ``scenes=2``: a second series of one channel, 8 x 8; ``link_to``: the stored
        original is a symbolic link to that file.
        """
        stored = self.storage.new_stored_name(".ome.tif")
        target = self.storage.path(stored)
        if link_to is not None:
            target.symlink_to(link_to)
        elif broken:
            target.write_bytes(b"II*\x00" + b"\xff" * 60)
        elif scenes == 2:
            write_two_scenes(target)
        else:
            write_ome_tiff(target, (channels, 3, size, 10), seed=self.count)
        self.count += 1
        created = T0 + timedelta(minutes=self.count)

        def run(session: Any) -> uuid.UUID:
            return add_image(session, name, stored_name=stored, created_at=created)

        return self.database.call(run)

    def rows(self) -> dict[uuid.UUID, list[tuple[int, int, str | None, int]]]:
        """Each image's quality rows: (scene, version, error, channels measured)."""

        def run(session: Any) -> dict[uuid.UUID, list[tuple[int, int, str | None, int]]]:
            found: dict[uuid.UUID, list[tuple[int, int, str | None, int]]] = {}
            for row in session.scalars(select(ImageQuality).order_by(ImageQuality.scene)):
                channels = len((row.data or {}).get("channels", []))
                found.setdefault(row.image_id, []).append(
                    (row.scene, row.version, row.error, channels)
                )
            return found

        return self.database.call(run)

    def image(self, image_id: uuid.UUID) -> Image:
        def run(session: Any) -> Image:
            image = session.get(Image, image_id)
            assert image is not None
            session.expunge(image)
            return image

        return self.database.call(run)

    def delete(self, image_id: uuid.UUID) -> None:
        def run(session: Any) -> None:
            session.execute(delete(Image).where(Image.id == image_id))
            session.commit()

        self.database.call(run)

    def close(self) -> None:
        self.database.engine.dispose()


def write_two_scenes(path: Path) -> Path:
    """An OME-TIFF of two series: 2 channels of 12 x 10, then 1 channel of 8 x 8."""
    import numpy as np
    import tifffile

    with tifffile.TiffWriter(path, ome=True) as tif:
        first = np.arange(2 * 3 * 12 * 10).reshape(2, 3, 12, 10) % 4000
        tif.write(first.astype(np.uint16), metadata={"axes": "CZYX"})
        second = np.arange(3 * 8 * 8).reshape(1, 3, 8, 8) % 4000
        tif.write(second.astype(np.uint16), metadata={"axes": "CZYX"})
    return path


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    made = Service(tmp_path)
    yield made
    made.close()


def test_the_summary_counts_measured_and_failed() -> None:
    summary = BackfillSummary()
    assert (summary.measured, summary.failed, summary.last_error) == (0, 0, None)
    summary.add(None)
    summary.add("a.czi: truncated")
    summary.add(None)
    summary.add("b.czi: bad")
    assert (summary.measured, summary.failed, summary.last_error) == (2, 2, "b.czi: bad")


def test_missing_images_are_measured_oldest_first_and_failures_recorded(
    service: Service,
) -> None:
    good = service.add("a.ome.tif")
    bad = service.add("b.ome.tif", broken=True)
    other = service.add("c.ome.tif", channels=1)
    seen: list[tuple[str, str | None]] = []
    summary = backfill_quality(service.settings, progress=lambda n, e: seen.append((n, e)))
    assert [name for name, _ in seen] == ["a.ome.tif", "b.ome.tif", "c.ome.tif"]
    assert seen[0][1] is None
    assert seen[2][1] is None
    error = seen[1][1]
    assert error
    assert (summary.measured, summary.failed, summary.last_error) == (2, 1, error)
    rows = service.rows()
    assert rows[good] == [(0, 1, None, 2)]
    assert rows[other] == [(0, 1, None, 1)]
    assert rows[bad] == [(0, 1, error, 0)]
    # Resumable: nothing is measured twice, a failure is not retried.
    again: list[tuple[str, str | None]] = []
    repeat = backfill_quality(service.settings, progress=lambda n, e: again.append((n, e)))
    assert (repeat.measured, repeat.failed, repeat.last_error) == (0, 0, None)
    assert again == []


def test_limit_counts_failures_and_batch_only_pages(service: Service) -> None:
    names = ["1.ome.tif", "2.ome.tif", "3.ome.tif", "4.ome.tif", "5.ome.tif", "6.ome.tif"]
    for name in names:
        service.add(name, broken=name == "2.ome.tif")
    seen: list[str] = []

    def progress(name: str, _error: str | None) -> None:
        seen.append(name)

    first = backfill_quality(service.settings, limit=2, batch=1, progress=progress)
    assert (first.measured, first.failed) == (1, 1)
    assert seen == names[:2]
    second = backfill_quality(service.settings, limit=2, batch=5, progress=progress)
    assert (second.measured, second.failed) == (2, 0)
    assert seen == names[:4]
    rest = backfill_quality(service.settings, batch=1, progress=progress)
    assert (rest.measured, rest.failed) == (2, 0)
    assert seen == names
    assert backfill_quality(service.settings, limit=0).measured == 0
    assert len(service.rows()) == 6


def test_what_is_left_of_the_limit_sizes_the_next_page(service: Service) -> None:
    """A failure counts against ``limit`` when the next page is sized, as a success does."""
    for i in range(6):
        service.add(f"{i}.ome.tif", broken=i == 0)
    summary = backfill_quality(service.settings, limit=3, batch=2)
    assert (summary.measured, summary.failed) == (2, 1)
    assert len(service.rows()) == 3


def test_every_scene_is_measured_in_its_own_row(service: Service, tmp_path: Path) -> None:
    image_id = service.add("two.ome.tif", scenes=2)
    assert backfill_quality(service.settings).measured == 1
    assert service.rows()[image_id] == [(0, 1, None, 2), (1, 1, None, 1)]
    qualities = measure_file(str(write_two_scenes(tmp_path / "two.ome.tif")), ReadLimits())
    assert [(q.scene, len(q.as_dict(planes=False)["channels"])) for q in qualities] == [
        (0, 2),
        (1, 1),
    ]


def test_the_settings_read_limits_apply_to_the_command(tmp_path: Path) -> None:
    service = Service(tmp_path, limits={"max_dimension": 11})
    try:
        wide = service.add("wide.ome.tif", size=12)
        small = service.add("small.ome.tif", size=10)
        summary = backfill_quality(service.settings)
        assert (summary.measured, summary.failed) == (1, 1)
        rows = service.rows()
        assert rows[small] == [(0, 1, None, 2)]
        assert "11" in str(rows[wide][0][2])
    finally:
        service.close()


def test_without_progress_the_run_still_counts(service: Service) -> None:
    service.add("a.ome.tif")
    assert backfill_quality(service.settings).measured == 1


def test_a_missing_original_fails_with_its_os_error(service: Service) -> None:
    image_id = service.add("gone.ome.tif")
    image = service.image(image_id)
    service.storage.path(image.stored_name).unlink()
    error = measure_and_store(service.database, service.storage, ReadLimits(), image)
    # Named by the upload, as a reader's errors are: never our storage path.
    assert error == "gone.ome.tif: no such file"
    assert service.rows()[image_id] == [(0, 1, error, 0)]


def test_an_image_deleted_while_it_is_measured(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """Measured, then its record is gone: not stored, said; a failure of a deleted one: logged."""
    readable = service.image(service.add("a.ome.tif"))
    broken = service.image(service.add("b.ome.tif", broken=True))
    service.delete(readable.id)
    service.delete(broken.id)
    error = measure_and_store(service.database, service.storage, ReadLimits(), readable)
    assert error == "not stored: the image changed while it was measured"
    with caplog.at_level(logging.INFO, logger="zstack_analyzer.service.quality_backfill"):
        failed = measure_and_store(service.database, service.storage, ReadLimits(), broken)
    assert failed
    assert failed != "not stored: the image changed while it was measured"
    said = [r.getMessage() for r in caplog.records if r.name.endswith("quality_backfill")]
    assert said == [f"{broken.id} was deleted while it was measured"]
    assert service.rows() == {}


def test_the_read_limits_apply(service: Service) -> None:
    image_id = service.add("big.ome.tif")
    error = measure_and_store(
        service.database, service.storage, ReadLimits(max_dimension=8), service.image(image_id)
    )
    assert error is not None
    assert "8" in error
    assert service.rows()[image_id][0][2] == error


def test_measure_file_reads_every_scene_under_its_limits_and_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    inside = write_ome_tiff(root / "a.ome.tif", (2, 3, 12, 10))
    (quality,) = measure_file(str(inside), ReadLimits(), (str(root),))
    assert quality.scene == 0
    assert len(quality.as_dict(planes=False)["channels"]) == 2
    with pytest.raises(LimitExceededError):
        measure_file(str(inside), ReadLimits(max_dimension=8))
    # The roots are confined: a link inside them to a file outside is refused.
    outside = write_ome_tiff(tmp_path / "outside.ome.tif", (1, 3, 12, 10))
    (root / "link.ome.tif").symlink_to(outside)
    with pytest.raises(UnsafeFileError):
        measure_file(str(root / "link.ome.tif"), ReadLimits(), (str(root),))
    # Without roots nothing is confined: the same link elsewhere reads.
    free = tmp_path / "free"
    free.mkdir()
    (free / "link.ome.tif").symlink_to(outside)
    assert len(measure_file(str(free / "link.ome.tif"), ReadLimits())) == 1


def _run_job(
    job: BackfillJob,
    service: Service,
    *,
    batch: int,
    processes: Any = None,
    limits: ReadLimits | None = None,
) -> bool:
    """Start ``job`` in a real worker pool and wait for it; whether a second start was refused."""
    from zstack_analyzer.service.workers import WorkerPool

    refused = []

    async def main() -> None:
        async with anyio.create_task_group() as group:
            pool = WorkerPool(group, workers=1, processes=processes)
            chosen = ReadLimits() if limits is None else limits
            assert job.start(pool, service.database, service.storage, chosen, batch=batch)
            assert job.running
            refused.append(
                not job.start(pool, service.database, service.storage, chosen, batch=batch)
            )
            with anyio.fail_after(120):
                while job.running:
                    await anyio.sleep(0.01)

    anyio.run(main)
    return refused[0]


def test_the_service_job_measures_page_by_page_once_at_a_time(service: Service) -> None:
    ids = [service.add(f"{i}.ome.tif", broken=i == 1) for i in range(3)]
    job = BackfillJob()
    assert (job.running, job.summary.measured) == (False, 0)
    assert _run_job(job, service, batch=1) is True
    assert job.running is False
    assert (job.summary.measured, job.summary.failed) == (2, 1)
    assert job.summary.last_error
    assert set(service.rows()) == set(ids)
    # A new run starts from a new summary, and finds nothing left.
    assert _run_job(job, service, batch=50) is True
    assert (job.summary.measured, job.summary.failed, job.summary.last_error) == (0, 0, None)


def test_the_service_job_reads_under_the_servers_limits(service: Service) -> None:
    wide = service.add("wide.ome.tif", size=12)
    small = service.add("small.ome.tif", size=10)
    job = BackfillJob()
    _run_job(job, service, batch=50, limits=ReadLimits(max_dimension=11))
    assert (job.summary.measured, job.summary.failed) == (1, 1)
    rows = service.rows()
    assert rows[small] == [(0, 1, None, 2)]
    assert "11" in str(rows[wide][0][2])


def test_the_service_job_stops_on_a_database_error_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from zstack_analyzer.service.db.session import Database, make_engine

    broken = Service.__new__(Service)
    broken.database = Database(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    broken.storage = None  # type: ignore[assignment]  # never reached: the first query fails
    job = BackfillJob()
    try:
        with caplog.at_level(logging.ERROR, logger="zstack_analyzer.service.quality_backfill"):
            _run_job(job, broken, batch=5)
    finally:
        broken.database.engine.dispose()
    assert job.running is False
    said = [r for r in caplog.records if r.name.endswith("quality_backfill")]
    assert [r.getMessage() for r in said] == ["quality backfill stopped"]
    assert said[0].exc_info is not None


def test_a_local_file_is_measured_in_a_child_when_there_are_some(service: Service) -> None:
    import os

    from zstack_analyzer.confine import confine_reads
    from zstack_analyzer.service.children import ChildProcesses
    from zstack_analyzer.service.config import BioformatsSettings, LimitsSettings

    outside = write_ome_tiff(service.root / "outside.ome.tif", (1, 3, 10, 10))
    ids = [
        service.add("a.ome.tif", size=10),
        service.add("b.ome.tif", broken=True),
        service.add("wide.ome.tif", size=12),
        service.add("link.ome.tif", link_to=outside),
    ]
    # The server's confined roots go to the child: here the storage folder, where a
    # stored original that is a link out of it is refused.
    confine_reads([service.storage.path("x").parent])
    children = ChildProcesses(
        workers=1, idle_seconds=60, limits=LimitsSettings(), bioformats=BioformatsSettings()
    )
    try:
        job = BackfillJob()
        _run_job(job, service, batch=50, processes=children, limits=ReadLimits(max_dimension=11))
        assert children.starts == 1
        assert children.call(os.getpid) != os.getpid()
    finally:
        children.close()
    assert (job.summary.measured, job.summary.failed) == (1, 3)
    rows = service.rows()
    assert rows[ids[0]] == [(0, 1, None, 2)]
    assert rows[ids[1]][0][2]
    assert "11" in str(rows[ids[2]][0][2])  # the limits went to the child
    # Refused in the child (confined there too), the error naming the upload, not the
    # stored name (routes/quality_admin's backfill shows it to the admin).
    assert str(rows[ids[3]][0][2]).startswith("link.ome.tif: leads outside the import roots")


def test_an_in_place_original_that_is_gone_is_named_by_its_path(
    service: Service, tmp_path: Path
) -> None:
    """Finding the original fails: its error is stored as it is (no path was read)."""
    original = tmp_path / "archive" / "cells.ome.tif"

    def run(session: Any) -> uuid.UUID:
        return add_image(
            session,
            "cells.ome.tif",
            stored_name="inplace-0123456789abcdef",
            stored_in_place=True,
            source_path=str(original),
            source_size=1000,
            source_mtime_ns=1,
        )

    image_id = service.database.call(run)
    error = measure_and_store(
        service.database, service.storage, ReadLimits(), service.image(image_id)
    )
    assert error == f"{original}: the original of image {image_id} is gone (moved or deleted)"
    assert service.rows()[image_id] == [(0, 1, error, 0)]
