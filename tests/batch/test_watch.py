"""``zstack watch``: a file written slowly is ingested once, complete; a restart catches up."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.batch.conftest import child_env, make_archive, rows, stop, zstack_command

pytestmark = pytest.mark.slow


def _watch(folder: Path, data: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*zstack_command(), "watch", str(folder), "--settle", "1.0", "--interval", "0.2"],
            env=child_env(ZSTACK_DATA_DIR=str(data)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_rows(data: Path, n: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while len(rows(data)) < n:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, (
            f"{len(rows(data))} of {n} rows; log:\n{log.read_text()}"
        )
        time.sleep(0.1)


def test_watch_ingests_complete_files_once_and_catches_up(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    data = tmp_path / "data"
    log = tmp_path / "watch.log"
    template = make_archive(tmp_path / "templates", n=3)
    payload = template[0].read_bytes()

    process = _watch(folder, data, log)
    try:
        # An acquisition writing for ~3 s, a chunk every 0.4 s (less than the settle time).
        target = folder / "run1" / "slow.ome.tif"
        target.parent.mkdir()
        chunks = [
            payload[i : i + len(payload) // 8 + 1]
            for i in range(0, len(payload), len(payload) // 8 + 1)
        ]
        with target.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                time.sleep(0.4)
                assert rows(data, "size_bytes") == [], "ingested while still being written"
        _wait_rows(data, 1, process, log)
        assert rows(data, "size_bytes, source_path") == [(len(payload), str(target))]
        time.sleep(1.5)  # more polls: still exactly one record
        assert len(rows(data)) == 1
    finally:
        stop(process)
    assert process.returncode == 0, log.read_text()

    # While the watcher is down, two files arrive; on restart it takes exactly those.
    (folder / "run2").mkdir()
    for source in template[1:]:
        (folder / "run2" / source.name).write_bytes(source.read_bytes())
    process = _watch(folder, data, log)
    try:
        _wait_rows(data, 3, process, log)
        time.sleep(1.5)
        assert len(rows(data)) == 3
    finally:
        stop(process)
    text = log.read_text()
    assert text.count("ingested") == 3, text
    assert "present" in text  # slow.ome.tif recognised after the restart, not re-ingested


def test_watch_stops_on_an_event(tmp_path: Path) -> None:
    """The library loop: ends when its stop event is set (what SIGTERM does in the CLI)."""
    from zstack_analyzer.batch.runner import SerialRunner
    from zstack_analyzer.batch.watch import watch_folder

    class Recorder:
        uses_cluster = False

        def __init__(self) -> None:
            self.seen: list[str] = []

        def is_present(self, entry: object) -> bool:
            return False

        def task(self) -> object:
            return str

        def job(self, entry: object) -> object:
            return entry

        def commit(self, entry: object, result: object) -> object:
            from zstack_analyzer.batch.ingest import Commit

            self.seen.append(Path(entry.path).name)  # type: ignore[attr-defined]
            return Commit("ingested")

        def local_runner(self) -> None:
            return None

    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "a.tif").write_bytes(b"1")
    sink = Recorder()
    done = threading.Event()
    thread = threading.Thread(
        target=watch_folder,
        args=(folder, sink, SerialRunner()),
        kwargs={"settle_s": 0.0, "interval_s": 0.05, "stop": done},
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not sink.seen and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    thread.join(30)
    assert not thread.is_alive()
    assert sink.seen == ["a.tif"]
