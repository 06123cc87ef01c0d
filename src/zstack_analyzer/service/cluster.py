"""Background renders on a dask.distributed cluster (``ZSTACK_DASK_SCHEDULER``).

Why: the thumbnail rendered after every upload or registration is CPU work the
web process should not do when a lab has machines to spare. With a scheduler
address the server submits it as a task; a worker reads the file (it must see
the same storage and data dir) and writes the picture into the shared render
cache under the content hash, where every server process finds it. Without the
setting, the app's worker threads do it, as before.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from anyio.abc import TaskGroup

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.render.spec import RenderSpec

__all__ = ["ClusterRenders"]

logger = logging.getLogger(__name__)


class ClusterRenders:
    """Submits renders to a dask scheduler from the app's event loop.

    Parameters
    ----------
    client
        An asynchronous ``distributed.Client``.
    task_group
        The app's task group: a render outlives the request that started it.
    cache_dir, cache_max_bytes
        The shared render cache the workers write into.
    """

    def __init__(
        self, client: Any, task_group: TaskGroup, *, cache_dir: Path, cache_max_bytes: int
    ) -> None:
        self.client = client
        self._task_group = task_group
        self.cache_dir = cache_dir
        self.cache_max_bytes = cache_max_bytes

    @classmethod
    async def connect(
        cls, address: str, task_group: TaskGroup, *, cache_dir: Path, cache_max_bytes: int
    ) -> ClusterRenders:
        """Connect to the scheduler at ``address`` (fails start-up when it is unreachable)."""
        from distributed import Client

        client = await Client(address, asynchronous=True, set_as_default=False, timeout=30)
        logger.info("background renders go to the dask scheduler at %s", address)
        return cls(client, task_group, cache_dir=cache_dir, cache_max_bytes=cache_max_bytes)

    async def close(self) -> None:
        """Disconnect (tasks already on the cluster finish there)."""
        await self.client.close()

    def spawn(
        self,
        path: Path,
        spec: RenderSpec,
        limits: ReadLimits,
        identity: str,
        *,
        on_success: Callable[[Any], Any] | None = None,
        measure_quality: bool = False,
    ) -> None:
        """Render ``spec`` of ``path`` on the cluster; a failure only logs.

        With ``measure_quality`` the worker measures every scene's quality in
        the same pass and ``on_success`` receives it (a list of
        :class:`~zstack_analyzer.quality.SceneQuality`, or why it failed);
        otherwise it receives the picture's size.
        """
        self._task_group.start_soon(
            self._run, path, spec, limits, identity, on_success, measure_quality
        )

    async def _run(
        self,
        path: Path,
        spec: RenderSpec,
        limits: ReadLimits,
        identity: str,
        on_success: Callable[[Any], Any] | None,
        measure_quality: bool,
    ) -> None:
        from zstack_analyzer.batch.tasks import render_and_measure_to_cache, render_to_cache
        from zstack_analyzer.confine import confined_roots

        key = f"zstack-render-{identity[:16]}-{uuid.uuid4().hex[:8]}"
        task = render_and_measure_to_cache if measure_quality else render_to_cache
        try:
            future = self.client.submit(
                task,
                str(path),
                spec,
                limits,
                str(self.cache_dir),
                self.cache_max_bytes,
                identity,
                confined_roots(),
                key=key,
                pure=False,
            )
            result = await future
        except Exception as exc:
            logger.warning("background render %s on the cluster failed: %s", key, exc)
            return
        if on_success is not None:
            try:
                await anyio.to_thread.run_sync(on_success, result)
            except Exception:
                logger.exception("after background render %s", key)
