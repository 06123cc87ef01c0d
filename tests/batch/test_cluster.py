"""dask.distributed for real on loopback: a LocalCluster, and `dask scheduler` + `dask worker`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from tests.batch.conftest import make_archive, stop
from tests.service.conftest import _testclient_class, upload, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer import open_image
from zstack_analyzer.batch import thumbnails_of_many
from zstack_analyzer.cache import RenderCache
from zstack_analyzer.cli import app

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask")]


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `dask scheduler` and one `dask worker` process on 127.0.0.1; yields the address."""
    from distributed import Client

    root = tmp_path_factory.mktemp("dask")
    info = root / "scheduler.json"
    dask = str(Path(sys.executable).with_name("dask"))
    logs = (root / "scheduler.log").open("wb"), (root / "worker.log").open("wb")
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(info)],
            stdout=logs[0], stderr=subprocess.STDOUT,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert processes[0].poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        processes.append(
            subprocess.Popen(
                [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--host", "127.0.0.1"],
                stdout=logs[1], stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            stop(process)
        for log in logs:
            log.close()


def test_local_cluster_renders_in_other_processes(tmp_path: Path) -> None:
    files = make_archive(tmp_path / "archive", n=10)
    cache_dir = tmp_path / "cache"
    results = thumbnails_of_many([tmp_path / "archive"], cache_dir)
    assert len(results) == len(files)
    assert all(r.status == "ok" and r.thumbnail_ready for r in results)
    cache = RenderCache(cache_dir)
    from zstack_analyzer.batch.tasks import default_thumbnail_spec

    spec = default_thumbnail_spec()
    for result in results:
        picture = cache.get(result.sha256, spec.cache_key(result.sha256))
        assert picture is not None
        assert picture[:8] == b"\x89PNG\r\n\x1a\n"


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_local_cluster_takes_over_from_the_process() -> None:
    """Items run here while the LocalCluster starts, then in its worker processes."""
    from zstack_analyzer.batch.runner import StartingRunner, open_runner

    here = os.getpid()
    seen: list[int] = []
    with open_runner(expected=1000) as runner:
        assert isinstance(runner, StartingRunner)
        for _, pid in runner.map_unordered(_pid_after, [0.05] * 1200):  # 60 s at most
            seen.append(pid)
            if pid != here:
                break
        assert "LocalCluster" in runner.description
    assert seen[0] == here  # work started before the cluster was up
    assert seen[-1] != here  # and the cluster took over


def test_ingest_on_a_scheduler(
    tmp_path: Path, scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zstack_analyzer.service.config import get_settings

    make_archive(tmp_path / "archive", n=3)
    monkeypatch.setenv("ZSTACK_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app,
            ["ingest", str(tmp_path / "archive"), "--scheduler", scheduler, "--json",
             "--settle", "0"],
        )  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ingested"] == 3
    assert scheduler in summary["runner"]
    # The scheduler's workers measured quality with each thumbnail; the ingest stored it.
    with sqlite3.connect(tmp_path / "data" / "zstack.db") as conn:
        rows = conn.execute("SELECT scene, error, data FROM image_quality").fetchall()
    assert len(rows) == 3
    assert all(error is None and json.loads(data)["channels"] for _, error, data in rows)


def test_server_background_renders_go_to_the_scheduler(tmp_path: Path, scheduler: str) -> None:
    from distributed import Client

    from zstack_analyzer.service.app import create_app

    source = write_ome_tiff(tmp_path / "cells.ome.tif", seed=3)
    settings = make_settings(tmp_path / "data", dask_scheduler=scheduler)
    with Client(scheduler, set_as_default=False) as observer:
        observer.get_task_stream()  # installs the scheduler's task-stream recorder
        started = time.time()
        with _testclient_class()(create_app(settings)) as client:
            created = upload(client, source)
            assert created.status_code == 201
            image_id = created.json()["id"]
            deadline = time.monotonic() + 60
            while not client.get(f"/api/images/{image_id}").json()["thumbnail_ready"]:
                assert time.monotonic() < deadline, "the cluster never rendered the thumbnail"
                time.sleep(0.1)
            thumb = client.get(f"/api/images/{image_id}/thumbnail")
            assert thumb.status_code == 200
            # The worker measured the quality in the same pass; the server stored it.
            while (quality := client.get(f"/api/images/{image_id}/quality").json())[
                "status"
            ] == "pending":
                assert time.monotonic() < deadline, "the cluster's quality was never stored"
                time.sleep(0.1)
            assert quality["status"] == "ready", quality
            with open_image(source) as local:
                assert quality["channels"] == local.quality(0)["channels"]
        keys = [str(t["key"]) for t in observer.get_task_stream(start=started)]
    assert any(key.startswith("zstack-render-") for key in keys), keys


def _key_of_task(item: int) -> tuple[int, str]:
    """The item squared and the dask task it ran in (fails for 7)."""
    from distributed import get_worker

    if item == 7:
        msg = f"item {item} is bad"
        raise ValueError(msg)
    return item * item, str(get_worker().get_current_task())


def test_dask_runner_sends_files_in_chunks_and_fails_one_item_alone() -> None:
    from distributed import Client, LocalCluster

    from zstack_analyzer.batch.runner import DaskRunner

    with (
        LocalCluster(
            processes=False,
            n_workers=1,
            threads_per_worker=2,
            dashboard_address="127.0.0.1:0",  # never the shared default 8787
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        runner: DaskRunner[int] = DaskRunner(c, chunk=3)
        good = [i for i in range(11) if i != 7]
        results = dict(runner.map_unordered(_key_of_task, good))
        assert sorted(results) == good
        assert all(square == item * item for item, (square, _) in results.items())
        assert len({task for _, task in results.values()}) == 4  # ceil(10 / 3) tasks

        seen: list[int] = []
        with pytest.raises(ValueError, match="item 7 is bad"):
            for item, _ in runner.map_unordered(_key_of_task, range(9)):
                seen.append(item)
        # 7's chunk is [6, 7, 8]: 6 comes back, then 7 raises for itself alone
        assert 6 in seen
        assert 7 not in seen


def test_local_cluster_serves_its_dashboard_where_asked_and_says_where() -> None:
    """``dashboard="127.0.0.1:0"``: a free port (never dask's 8787), told once it serves."""
    import httpx

    from zstack_analyzer.batch.runner import open_runner

    told: list[str | None] = []
    answers: list[int] = []

    def on_dashboard(link: str | None) -> None:
        told.append(link)
        if link:  # called once the cluster is up: the dashboard answers now
            answers.append(httpx.get(link, timeout=30, follow_redirects=True).status_code)

    here = os.getpid()
    with open_runner(expected=1000, dashboard="127.0.0.1:0", on_dashboard=on_dashboard) as runner:
        for _, pid in runner.map_unordered(_pid_after, [0.05] * 1200):
            if pid != here:
                break
    assert len(told) == 1 and told[0] is not None, told
    assert told[0].startswith("http://127.0.0.1:") and ":8787/" not in told[0]
    assert answers == [200]


def test_ingest_dashboard_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No cluster for a small batch: it says so; a bad address or --server is a usage error."""
    from zstack_analyzer.service.config import get_settings

    make_archive(tmp_path / "archive", n=2)
    monkeypatch.setenv("ZSTACK_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        done = runner.invoke(
            app, ["ingest", str(tmp_path / "archive"), "--dashboard", ":0", "--settle", "0"]
        )
        assert done.exit_code == 0, done.output
        assert "no dask dashboard: this batch runs in this process" in done.stderr
        quiet = runner.invoke(
            app, ["ingest", str(tmp_path / "archive"), "--dashboard", "none", "--settle", "0"]
        )
        assert quiet.exit_code == 0, quiet.output
        assert "dashboard" not in quiet.stderr
        for extra in (["--dashboard", "8787"], ["--dashboard", ":0", "--server", "http://x"]):
            refused = runner.invoke(app, ["ingest", str(tmp_path / "archive"), *extra])
            assert refused.exit_code == 2, refused.output
            assert "--dashboard" in refused.output
    finally:
        get_settings.cache_clear()


_WORKER_STATE_SCRIPT = '''
import json, os, sys, time


def state(pause):
    """What this process had loaded when a task that imports nothing reached it."""
    import dask

    time.sleep(pause)  # the items this process runs while the cluster starts take a while
    compiled = sys.modules.get("zstack_analyzer.quality._compiled")
    return os.getpid(), {
        "modules": sorted(
            m for m in ("zstack_analyzer.render.thumbnails", "zstack_analyzer.quality",
                        "zstack_analyzer.readers.czi", "tifffile", "pandas")
            if m in sys.modules
        ),
        "numba_kernel_loaded": None if compiled is None else bool(compiled.scan_lanes.signatures),
        "profiling": dask.config.get("distributed.worker.profile.enabled", default=None),
    }


if __name__ == "__main__":
    from zstack_analyzer.batch.runner import open_runner

    here = os.getpid()
    found = None
    with open_runner(expected=1000) as runner:
        for _, (pid, seen) in runner.map_unordered(state, [0.05] * 2400):  # 120 s at most
            if pid != here:
                found = seen
                break
    print(json.dumps(found))
'''


def test_local_cluster_workers_start_with_the_task_code_loaded(tmp_path: Path) -> None:
    """A worker's first task finds the readers, renderer and numba kernels already loaded.

    They come from the forkserver's preload (imported once, inherited by every
    worker), not pandas, which distributed would preload and no task uses; and the
    workers run without dask's statistical profiler. A fresh process, so that its
    forkserver is the one the LocalCluster starts.
    """
    import importlib.util

    script = tmp_path / "worker_state.py"
    script.write_text(_WORKER_STATE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=280, env=env,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found is not None, "the LocalCluster never ran an item"
    assert found["modules"] == [
        "tifffile",
        "zstack_analyzer.quality",
        "zstack_analyzer.readers.czi",
        "zstack_analyzer.render.thumbnails",
    ]
    if importlib.util.find_spec("numba") is not None:
        assert found["numba_kernel_loaded"] is True
    assert found["profiling"] is False
