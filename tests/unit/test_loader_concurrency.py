"""``ImageLoader(max_concurrency=n)`` lets at most n files be read at once, per event loop.

How it is observed without mocks: each call reads a named pipe (FIFO). A reader
thread blocks in ``open`` until a writer comes, and a non-blocking open for
writing succeeds only while some reader has the pipe open, so the test sees
exactly which calls are inside the reader at any moment. It then feeds them
junk (each call ends in ``UnsupportedFormatError``) and counts the most that
were ever inside at once.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import TYPE_CHECKING

import anyio
import pytest

from zstack_analyzer import ImageLoader, UnsupportedFormatError

if TYPE_CHECKING:
    from pathlib import Path

CALLS = 6
CAP = 2
#: How long the test waits, after seeing CAP readers, for any reader past the cap.
SETTLE_S = 0.3


def _open_writer(fifo: Path) -> int | None:
    """A write end of ``fifo`` if a reader has it open, else ``None``."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise


async def _max_inside(loader: ImageLoader, fifos: list[Path]) -> int:
    outcomes: list[BaseException | None] = []

    async def call(path: Path) -> None:
        try:
            await loader.get_metadata(path)
        except UnsupportedFormatError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    most = 0
    waiting = list(fifos)
    async with anyio.create_task_group() as tg:
        for fifo in fifos:
            tg.start_soon(call, fifo)
        with anyio.fail_after(60):
            while waiting:
                # Wait for a first reader, then give every other call time to get in too.
                inside: dict[Path, int] = {}
                while not inside:
                    await anyio.sleep(0.01)
                    inside = {f: fd for f in waiting if (fd := _open_writer(f)) is not None}
                await anyio.sleep(SETTLE_S)
                for f in waiting:
                    if f not in inside and (fd := _open_writer(f)) is not None:
                        inside[f] = fd
                most = max(most, len(inside))
                for f, fd in inside.items():
                    os.write(fd, b"not an image at all")
                    os.close(fd)
                    waiting.remove(f)
    assert len(outcomes) == len(fifos)
    assert all(isinstance(o, UnsupportedFormatError) for o in outcomes)
    return most


def _fifos(tmp_path: Path, tag: str) -> list[Path]:
    paths = []
    for i in range(CALLS):
        path = tmp_path / f"{tag}{i}.tif"
        os.mkfifo(path)
        paths.append(path)
    return paths


@pytest.mark.timeout(120)
def test_max_concurrency_caps_files_read_at_once(tmp_path: Path) -> None:
    loader = ImageLoader(max_concurrency=CAP)
    assert asyncio.run(_max_inside(loader, _fifos(tmp_path, "a"))) == CAP
    # A second event loop gets its own limiter, with the same cap.
    assert asyncio.run(_max_inside(loader, _fifos(tmp_path, "b"))) == CAP


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ImageLoader(max_concurrency=0)
