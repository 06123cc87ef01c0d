"""A stored quality failure is shown naming the user's file, never our stored copy.

Why (``routes/quality.py`` ``_named``): the upload's own job and a cluster's measure the
stored copy (``<hash>.ome.tif``), and the reader's message names it; the route replaces
every occurrence by the upload's name, for scene 0's failure standing for the image and
for a scene's own failure alike, and leaves a reason that names neither as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_image
from zstack_analyzer.service.db.quality import ImageQuality, store_quality_error
from zstack_analyzer.service.routes.quality import _read

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session


def _scenes(count: int) -> list[dict[str, Any]]:
    return [{"index": i, "size_z": 2, "dtype": "uint16"} for i in range(count)]


def test_scene_zeros_failure_names_the_upload_everywhere_it_named_the_copy(
    session: Session,
) -> None:
    stored = "0123456789abcdef0123456789abcdef.ome.tif"
    image_id = add_image(session, "cells.ome.tif", stored_name=stored, scenes=_scenes(2))
    store_quality_error(session, image_id, f"{stored}: cannot decode plane 3 of {stored}")
    for scene in (0, 1):  # scene 0's failure stands for the image
        failed = _read(session, str(image_id), scene)
        assert (failed.status, failed.error) == (
            "failed",
            "cells.ome.tif: cannot decode plane 3 of cells.ome.tif",
        )


def test_a_scenes_own_failure_names_the_upload(session: Session) -> None:
    stored = "fedcba9876543210fedcba9876543210.czi"
    image_id = add_image(session, "mouse brain.czi", stored_name=stored, scenes=_scenes(2))
    session.add(ImageQuality(image_id=image_id, scene=0, error=None, data={}))
    session.add(
        ImageQuality(image_id=image_id, scene=1, error=f"{stored}: scene 1 unreadable", data={})
    )
    session.commit()
    failed = _read(session, str(image_id), 1)
    assert (failed.status, failed.error) == ("failed", "mouse brain.czi: scene 1 unreadable")


def test_a_reason_naming_neither_and_an_empty_stored_name_stay_as_they_are(
    session: Session,
) -> None:
    named = add_image(session, "a.tif", stored_name="aaaa.tif")
    store_quality_error(session, named, "the measures ran out of memory")
    assert _read(session, str(named), 0).error == "the measures ran out of memory"
    # An empty stored name would put the file name between every character.
    empty = add_image(session, "b.tif", stored_name="")
    store_quality_error(session, empty, "bad plane")
    assert _read(session, str(empty), 0).error == "bad plane"
