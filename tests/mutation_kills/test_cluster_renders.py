"""``service/cluster.py``: the server's background renders on a real dask cluster.

A LocalCluster on 127.0.0.1 (any free port) whose worker is another process, so
what the task receives (path, spec, limits, cache, identity, the server's
confined roots) is all it has: the task's key, the picture in the shared cache
under the identity, the quality measured in the same pass, a failure that only
logs, a callback that fails, and closing the client.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.service.conftest import write_ome_tiff
from zstack_analyzer.cache import RenderCache
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.service.cluster import ClusterRenders

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

IDENTITY = "0123456789abcdef" * 4
SPEC = RenderSpec(width=32, height=32)


@pytest.fixture(scope="session")
def scheduler() -> Iterator[str]:
    """A LocalCluster with one worker process (no fixed port, no dashboard)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        # dashboard_address=None alone still takes dask's default 8787 (and fails when it
        # is taken): the scheduler's own dashboard is switched off too.
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(autouse=True)
def _no_default_client_left() -> Iterator[None]:
    """Whatever a test's client did to dask's configuration and default client is undone.

    Why: the mutation runner runs every test again after a mutant that made its
    client the process default (``set_as_default=True``); that must fail the test
    of that mutant, not every later one.
    """
    import copy
    import gc

    import dask
    from distributed import client as distributed_client

    saved = copy.deepcopy(dask.config.config)
    yield
    gc.collect()  # a client a test left behind is collected in that test, not a later one
    dask.config.config.clear()
    dask.config.config.update(saved)
    distributed_client._global_clients.clear()


def _render(
    scheduler: str,
    path: Path,
    cache_dir: Path,
    *,
    limits: ReadLimits | None = None,
    measure_quality: bool = False,
    on_success: Callable[[Any], Any] | None = None,
    cache_max_bytes: int = 1 << 30,
) -> tuple[list[str], str]:
    """One background render through ClusterRenders; the task keys run, the client's state."""
    import dask
    from distributed import default_client

    keys: list[str] = []
    status: list[str] = []

    async def main() -> None:
        try:
            await run(renders_of)
        finally:  # a client left open would fail a later test when it is collected
            for renders in renders_of:
                if renders.client.status != "closed":
                    await renders.client.close()

    renders_of: list[ClusterRenders] = []

    async def run(made: list[ClusterRenders]) -> None:
        async with anyio.create_task_group() as group:
            renders = await ClusterRenders.connect(
                scheduler, group, cache_dir=cache_dir, cache_max_bytes=cache_max_bytes
            )
            made.append(renders)
            assert renders.cache_dir == cache_dir
            # Not this process's default client: the server's own dask work stays local.
            assert dask.config.get("scheduler", None) != "dask.distributed"
            with pytest.raises(ValueError, match="No clients found"):
                default_client()
            assert renders.cache_max_bytes == cache_max_bytes
            await renders.client.get_task_stream()  # installs the scheduler's recorder
            started = time.time()
            renders.spawn(
                path,
                SPEC,
                limits or ReadLimits(),
                IDENTITY,
                on_success=on_success,
                measure_quality=measure_quality,
            )
        keys.extend(str(t["key"]) for t in await renders.client.get_task_stream(start=started))
        await renders.close()
        status.append(str(renders.client.status))

    anyio.run(main)
    return keys, status[0]


def test_a_render_goes_to_the_cache_under_its_identity_with_a_named_key(
    scheduler: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_ome_tiff(tmp_path / "cells.ome.tif", (2, 3, 24, 32))
    got: list[Any] = []
    with caplog.at_level(logging.INFO, logger="zstack_analyzer.service.cluster"):
        keys, status = _render(scheduler, source, tmp_path / "cache", on_success=got.append)
    cached = RenderCache(tmp_path / "cache").get(IDENTITY, SPEC.cache_key(IDENTITY))
    assert cached is not None
    assert cached.startswith(b"\x89PNG")
    assert got == [len(cached)]
    (key,) = keys
    assert key.startswith("zstack-render-0123456789abcdef-")
    assert len(key) == len("zstack-render-0123456789abcdef-") + 8
    assert status == "closed"
    said = [r.getMessage() for r in caplog.records if r.name == "zstack_analyzer.service.cluster"]
    assert said == [f"background renders go to the dask scheduler at {scheduler}"]
    assert "failed" not in caplog.text


def test_the_quality_is_measured_in_the_same_pass(scheduler: str, tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "cells.ome.tif", (2, 3, 24, 32))
    got: list[Any] = []
    _render(scheduler, source, tmp_path / "cache", measure_quality=True, on_success=got.append)
    (qualities,) = got
    assert [q.scene for q in qualities] == [0]
    assert len(qualities[0].as_dict(planes=False)["channels"]) == 2
    assert RenderCache(tmp_path / "cache").get(IDENTITY, SPEC.cache_key(IDENTITY)) is not None


def test_the_cache_bound_is_the_servers(scheduler: str, tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 2, 24, 32))
    got: list[Any] = []
    _render(scheduler, source, tmp_path / "cache", on_success=got.append, cache_max_bytes=1)
    assert got and got[0] > 0  # rendered, then evicted at once: the cache keeps 1 byte
    assert RenderCache(tmp_path / "cache").get(IDENTITY, SPEC.cache_key(IDENTITY)) is None


def test_a_failed_render_only_logs_and_calls_nothing(
    scheduler: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 2, 24, 32))
    got: list[Any] = []
    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.service.cluster"):
        (key,), _ = _render(
            scheduler,
            source,
            tmp_path / "cache",
            limits=ReadLimits(max_dimension=16),  # the file is 32 wide: over the server's limit
            on_success=got.append,
        )
    assert got == []
    (record,) = [r for r in caplog.records if r.name == "zstack_analyzer.service.cluster"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"background render {key} on the cluster failed: ")
    assert "32" in record.getMessage()
    assert RenderCache(tmp_path / "cache").get(IDENTITY, SPEC.cache_key(IDENTITY)) is None


def test_the_workers_read_only_inside_the_servers_confined_roots(
    scheduler: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A link inside an import root to a file outside it: refused on the worker too."""
    from zstack_analyzer.confine import confine_reads

    root = tmp_path / "root"
    root.mkdir()
    outside = write_ome_tiff(tmp_path / "outside.ome.tif", (1, 2, 24, 32))
    (root / "link.ome.tif").symlink_to(outside)
    confine_reads([root])  # this process's roots (process-wide, as the server's)
    got: list[Any] = []
    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.service.cluster"):
        _render(scheduler, root / "link.ome.tif", tmp_path / "cache", on_success=got.append)
    assert got == []
    assert "on the cluster failed" in caplog.text


def test_a_callback_that_fails_is_logged_with_its_key(
    scheduler: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 2, 24, 32))

    def refuse(_result: Any) -> None:
        msg = "the database is gone"
        raise RuntimeError(msg)

    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.service.cluster"):
        (key,), _ = _render(scheduler, source, tmp_path / "cache", on_success=refuse)
    (record,) = [r for r in caplog.records if r.name == "zstack_analyzer.service.cluster"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"after background render {key}"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the database is gone"


def test_without_a_callback_the_render_still_lands(scheduler: str, tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 2, 24, 32))
    _render(scheduler, source, tmp_path / "cache")
    assert RenderCache(tmp_path / "cache").get(IDENTITY, SPEC.cache_key(IDENTITY)) is not None
