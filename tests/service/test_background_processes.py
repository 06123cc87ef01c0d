"""The upload's thumbnail and quality job runs in a child process; the server never loads numba.

Why it matters: the quality measures import numba and load compiled kernels
(about 130 MiB) that stay for the life of the process that ran them. Run in the
server, one upload raised its resident memory for good (``upload-rss/c``: 263
MiB against a target of 200). The server is a fresh interpreter here (a child
of the test), so what it has imported is its own doing, not another test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from tests.needs import unavailable
from zstack_analyzer.service.children import ChildProcesses
from zstack_analyzer.service.config import BioformatsSettings, LimitsSettings

ROOT = Path(__file__).resolve().parents[2]

SERVER_SCRIPT = """
import json, sys, time
from pathlib import Path

from tests.service.conftest import _testclient_class, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.service.app import create_app

tmp = Path(sys.argv[1])
settings = make_settings(tmp / "data", render={"background_processes": int(sys.argv[2])})
path = write_ome_tiff(tmp / "q.ome.tif", (2, 5, 24, 32))
with _testclient_class()(create_app(settings)) as client:
    with path.open("rb") as fh:
        created = client.post("/api/images/upload", files={"file": ("q.ome.tif", fh)})
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        quality = client.get(f"/api/images/{image_id}/quality").json()
        ready = client.get(f"/api/images/{image_id}").json()["thumbnail_ready"]
        if quality["status"] != "pending" and ready:
            break
        assert time.monotonic() < deadline, "the upload's job never finished"
        time.sleep(0.05)
    thumbnail = client.get(f"/api/images/{image_id}/thumbnail")
    # The admin backfill measures in the child too.
    from sqlalchemy import delete
    from zstack_analyzer.service.db.quality import ImageQuality

    with client.app.state.database.sessions() as session:
        session.execute(delete(ImageQuality))
        session.commit()
    assert client.post("/api/admin/quality/backfill").status_code == 202
    while client.get("/api/admin/quality/backfill").json()["running"]:
        assert time.monotonic() < deadline, "the backfill never finished"
        time.sleep(0.05)
    backfilled = client.get(f"/api/images/{image_id}/quality").json()
    print(json.dumps({
        "quality": quality["status"],
        "channels": len(quality["channels"]),
        "thumbnail": [thumbnail.status_code, thumbnail.headers["content-type"]],
        "backfilled": backfilled == quality,
        "numba": "numba" in sys.modules,
    }))
"""


def _serve_one_upload(tmp_path: Path, background_processes: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", SERVER_SCRIPT, str(tmp_path), str(background_processes)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_upload_job_and_the_backfill_run_in_a_child_and_the_server_never_loads_numba(
    tmp_path: Path,
) -> None:
    answer = _serve_one_upload(tmp_path, background_processes=1)
    assert answer == {
        "quality": "ready",
        "channels": 2,
        "thumbnail": [200, "image/png"],
        "backfilled": True,
        "numba": False,
    }


def test_without_child_processes_the_server_measures_in_its_threads(tmp_path: Path) -> None:
    """``background_processes=0``: the old way still works, and loads numba in the server."""
    import importlib.util

    if importlib.util.find_spec("numba") is None:
        unavailable("numba is not installed (the quality extra brings it)")
    answer = _serve_one_upload(tmp_path, background_processes=0)
    assert answer == {
        "quality": "ready",
        "channels": 2,
        "thumbnail": [200, "image/png"],
        "backfilled": True,
        "numba": True,
    }


def _children(idle_seconds: float = 60.0) -> ChildProcesses:
    return ChildProcesses(
        workers=1,
        idle_seconds=idle_seconds,
        limits=LimitsSettings(),
        bioformats=BioformatsSettings(),
    )


def test_a_child_that_dies_fails_its_job_and_the_next_job_gets_a_new_one() -> None:
    children = _children()
    try:
        first = children.call(os.getpid)
        assert first != os.getpid()
        with pytest.raises(BrokenProcessPool):
            children.call(os._exit, 3)
        second = children.call(os.getpid)
        assert second not in (first, os.getpid())
        assert children.starts == 2
    finally:
        children.close()


def test_idle_children_exit_and_start_again_on_the_next_job() -> None:
    children = _children(idle_seconds=0.3)
    try:
        first = children.call(os.getpid)
        assert children.running
        deadline = time.monotonic() + 30
        while children.running:
            assert time.monotonic() < deadline, "the idle child never exited"
            time.sleep(0.05)
        assert children.call(os.getpid) != first
        assert children.starts == 2
    finally:
        children.close()


def test_close_ends_a_running_job_and_refuses_new_ones() -> None:
    children = _children()
    children.call(os.getpid)  # started
    outcome: list[BaseException] = []

    def wait_long() -> None:
        try:
            children.call(time.sleep, 600)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_long)
    waiter.start()
    time.sleep(0.5)  # the sleep is running in the child
    children.close()
    waiter.join(timeout=30)
    assert not waiter.is_alive(), "the waiting thread was not released by close()"
    assert len(outcome) == 1
    assert isinstance(outcome[0], BrokenProcessPool | RuntimeError)
    assert not children.running
    with pytest.raises(RuntimeError, match="shutting down"):
        children.call(os.getpid)


_KILLED_SERVER = """
import os, sys, time
from zstack_analyzer.service.children import ChildProcesses
from zstack_analyzer.service.config import BioformatsSettings, LimitsSettings
children = ChildProcesses(
    workers=1, idle_seconds=600, limits=LimitsSettings(), bioformats=BioformatsSettings()
)
print(children.call(os.getpid), flush=True)
time.sleep(600)
"""


def test_a_child_ends_when_its_server_is_killed() -> None:
    """SIGKILL runs no shutdown and no idle timer: the child must notice and go by itself."""
    import signal

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SERVER], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert server.stdout is not None
        child = int(server.stdout.readline())
        assert child != server.pid
        os.kill(child, 0)  # alive while its server is
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"child {child} outlived its killed server"
            time.sleep(0.1)
    finally:
        server.kill()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()
