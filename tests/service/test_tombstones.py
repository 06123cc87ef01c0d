"""Tombstones of deleted ids are pruned while the server runs, not only at start-up.

Why (issue #22): every delete writes ``data/deleted/<id>`` so other server
processes stop serving the id at once; only the start-up removed old ones, so
a long-running server kept one file per delete forever.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING

from tests.service.conftest import upload, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.service.images_service import TOMBSTONE_KEEP_S, RecordMemo

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_delete_prunes_old_tombstones_while_running(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    settings = make_settings(tmp_path / "data")
    client = make_client(settings)
    deleted = settings.deleted_dir
    # Tombstones a long-running server left: two past the keep time, one recent.
    old = [deleted / str(uuid.uuid4()) for _ in range(2)]
    recent = deleted / str(uuid.uuid4())
    for path in (*old, recent):
        path.touch()
    for path in old:
        _age(path, TOMBSTONE_KEEP_S + 60)
    _age(recent, 60)
    created = upload(client, write_ome_tiff(tmp_path / "a.ome.tif"))
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    assert client.delete(f"/api/images/{image_id}").status_code == 204
    left = {p.name for p in deleted.iterdir()}
    assert left == {recent.name, image_id}  # the old ones went; the fresh ones stay
    # The id stays refused (its tombstone is what other processes check).
    assert client.get(f"/api/images/{image_id}").status_code == 404


def test_pruning_is_throttled(tmp_path: Path) -> None:
    """At most one directory scan per ``prune_every_s``, however many deletes."""
    deleted = tmp_path / "deleted"
    memo = RecordMemo(deleted_dir=deleted, keep_s=3600, prune_every_s=3600)
    first = uuid.uuid4()
    memo.tombstone(first)
    stale = deleted / str(uuid.uuid4())
    stale.touch()
    _age(stale, 7200)
    assert memo.tombstone(uuid.uuid4()) == 0  # not due: the stale one stays for now
    assert stale.exists()
    due = RecordMemo(deleted_dir=deleted, keep_s=3600, prune_every_s=0)
    assert due.tombstone(uuid.uuid4()) == 1
    assert not stale.exists()
    assert (deleted / str(first)).exists()
