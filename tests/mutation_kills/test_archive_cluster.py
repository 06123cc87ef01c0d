"""``POST /api/images/register`` with a dask cluster: the thumbnail is the cluster's work.

A real ``dask scheduler`` and ``dask worker`` on loopback (the fixture of
``tests/batch/test_cluster.py``); the scheduler's task stream tells where the render ran.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

import pytest

from tests.batch.test_cluster import scheduler
from tests.mutation_kills.test_zarr_store_routes import STACK, _start

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["scheduler"]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask")]


def test_a_registered_images_thumbnail_is_rendered_on_the_cluster(
    tmp_path: Path, scheduler: str, testdata: Path
) -> None:
    from distributed import Client

    from zstack_analyzer.service.config import RenderSettings

    roots = tmp_path / "archive"
    roots.mkdir()
    source = roots / "cells.ome.tiff"
    shutil.copyfile(testdata / STACK, source)
    render = RenderSettings(thumbnail_on_upload=True)
    with Client(scheduler, set_as_default=False) as observer:
        observer.get_task_stream()  # installs the scheduler's task-stream recorder
        started = time.time()
        with _start(
            tmp_path / "data", import_roots=[roots], render=render, dask_scheduler=scheduler
        ) as client:
            answer = client.post("/api/images/register", json={"path": str(source)})
            assert answer.status_code == 201, answer.text
            image_id = answer.json()["id"]
            deadline = time.monotonic() + 120
            while not client.get(f"/api/images/{image_id}").json()["thumbnail_ready"]:
                assert time.monotonic() < deadline, "the thumbnail was never rendered"
                time.sleep(0.1)
        keys = [str(t["key"]) for t in observer.get_task_stream(start=started)]
    assert any(key.startswith("zstack-render-") for key in keys), keys
