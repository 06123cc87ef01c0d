"""The quality routes' helpers (``routes/quality.py``, ``routes/quality_admin.py``), called directly.

What the broader tests leave open: a scene out of range (422 naming the file and the range,
also for a record with no scene list), a scene without a row while scene 0 records a
failure (failed, not pending), a measured scene's values and channels, and the backfill's
job made once per app and its status counts.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_image
from zstack_analyzer.errors import SceneNotFoundError
from zstack_analyzer.service.db.quality import ImageQuality, store_quality_error
from zstack_analyzer.service.errors import ImageNotFoundError
from zstack_analyzer.service.routes import quality_admin
from zstack_analyzer.service.routes.quality import _read

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

CHANNEL = {
    "channel": 1,
    "name": "GFP",
    "best_focus_z": 3,
    "focus_edge": False,
    "saturated_fraction": 0.25,
    "min_fraction": 0.0,
    "snr": 7.5,
    "focus": [0.1, None],
    "brenner": [1.0, 2.0],
    "intensity_z": [3.0, 4.0],
    "intensity_t": [5.0],
    "z_falloff_rate": None,
    "bleaching_rate": 0.5,
    "bleaching_rate_per_s": None,
}


def _scenes(count: int) -> list[dict[str, Any]]:
    return [{"index": i, "size_z": 2, "dtype": "uint16"} for i in range(count)]


def test_scene_out_of_range_names_the_file_and_range(session: Session) -> None:
    image_id = str(add_image(session, "three.czi", scenes=_scenes(3)))
    assert _read(session, image_id, 2).status == "pending"
    with pytest.raises(SceneNotFoundError) as caught:
        _read(session, image_id, 3)
    assert caught.value.message == "three.czi: scene 3 is out of range (0..2)"
    with pytest.raises(SceneNotFoundError):
        _read(session, image_id, -1)
    bare = str(add_image(session, "bare.tif", scenes=[]))
    assert _read(session, bare, 0).status == "pending"
    with pytest.raises(SceneNotFoundError) as caught:
        _read(session, bare, 1)
    assert caught.value.message == "bare.tif: scene 1 is out of range (0..-1)"
    with pytest.raises(ImageNotFoundError):
        _read(session, str(uuid.uuid4()), 0)


def test_failed_pending_and_ready(session: Session) -> None:
    image_id = add_image(session, "two.czi", scenes=_scenes(2))
    pending = _read(session, str(image_id), 1)
    assert (pending.scene, pending.status, pending.error) == (1, "pending", None)
    store_quality_error(session, image_id, "could not read plane 4")
    for scene in (0, 1):  # scene 0's failure stands for the whole image
        failed = _read(session, str(image_id), scene)
        assert (failed.scene, failed.status, failed.error) == (
            scene,
            "failed",
            "could not read plane 4",
        )
    session.query(ImageQuality).delete()
    session.add(ImageQuality(image_id=image_id, scene=0, error=None, data={}))
    session.add(
        ImageQuality(
            image_id=image_id,
            scene=1,
            max_saturated_fraction=0.25,
            focus_edge=True,
            min_snr=7.5,
            error=None,
            data={"channels": [CHANNEL]},
        )
    )
    session.commit()
    ready = _read(session, str(image_id), 1)
    assert (ready.scene, ready.status, ready.error) == (1, "ready", None)
    assert (ready.max_saturated_fraction, ready.focus_edge, ready.min_snr) == (0.25, True, 7.5)
    assert [c.model_dump() for c in ready.channels] == [CHANNEL]
    empty = _read(session, str(image_id), 0)
    assert (empty.status, empty.channels) == ("ready", [])
    # A scene row with its own error, scene 0 fine.
    other = add_image(session, "y.czi", scenes=_scenes(2))
    session.add(ImageQuality(image_id=other, scene=1, error="scene 1 unreadable", data={}))
    session.commit()
    assert _read(session, str(other), 1).status == "failed"
    assert _read(session, str(other), 1).error == "scene 1 unreadable"
    assert _read(session, str(other), 0).status == "pending"


def test_backfill_job_once_per_app_and_its_status(session: Session, tmp_path: Path) -> None:
    from fastapi import FastAPI
    from starlette.requests import Request

    app = FastAPI()
    request = Request({"type": "http", "app": app})
    job = quality_admin._job(request)
    assert quality_admin._job(request) is job
    assert app.state.quality_backfill is job
    add_image(session, "a.czi")
    add_image(session, "b.czi")
    assert quality_admin._remaining(session) == 2

    from zstack_analyzer.service.db.session import Database, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'zstack.db'}")  # the session's database
    database = Database(engine)
    job.summary.measured, job.summary.failed, job.summary.last_error = 4, 1, "bad.czi: truncated"
    try:
        status = anyio.run(lambda: quality_admin._status(job, database, started=True))
        again = anyio.run(lambda: quality_admin._status(job, database))
    finally:
        engine.dispose()
    assert status.model_dump() == {
        "running": False,
        "started": True,
        "measured": 4,
        "failed": 1,
        "remaining": 2,
        "last_error": "bad.czi: truncated",
    }
    assert again.started is False
    assert again.remaining == 2


def test_remaining_is_counted_up_to_the_cap(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        add_image(session, f"{i}.czi")
    monkeypatch.setattr(quality_admin, "COUNT_CAP", 2)
    assert quality_admin._remaining(session) == 2
