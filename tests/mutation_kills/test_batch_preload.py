"""``batch/preload.py``: what the forkserver has loaded before it forks a LocalCluster's worker.

``warm`` is called here (so the mutation runner sees which test reaches it) and in a
fresh interpreter that imports the module as the forkserver does, where nothing
was loaded before: the readers and format packages, and numba's uint16 kernel
(compiled code is loaded on a kernel's first call, not at import). It never raises:
a missing package is skipped, any other failure is only logged (at debug level).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from zstack_analyzer.batch import preload

if TYPE_CHECKING:
    import pytest

_FRESH = """
import json, logging, sys
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("zstack_analyzer.batch.preload").addHandler(Keep())
logging.getLogger("zstack_analyzer.batch.preload").setLevel(logging.DEBUG)
import zstack_analyzer.batch.preload as preload
compiled = sys.modules.get("zstack_analyzer.quality._compiled")
print(json.dumps({
    "records": records,
    "loaded": sorted(m for m in (*preload.FORMAT_PACKAGES, "zstack_analyzer.readers.czi",
        "zstack_analyzer.batch.tasks", "zstack_analyzer.render.thumbnails",
        "zstack_analyzer.cache") if m in sys.modules),
    "uint16_kernel": None if compiled is None else any(
        "uint16" in str(sig) for sig in compiled.scan_lanes.signatures
    ),
}))
"""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_warm_loads_the_readers_packages_and_kernel_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="zstack_analyzer.batch.preload"):
        preload.warm()
    assert [r.getMessage() for r in caplog.records if r.name == preload.__name__] == []
    src = str(Path(preload.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH], capture_output=True, text=True, env=env, timeout=240,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh["records"] == []
    expected = [
        "zstack_analyzer.batch.tasks",
        "zstack_analyzer.cache",
        "zstack_analyzer.readers.czi",
        "zstack_analyzer.render.thumbnails",
        *(name for name in preload.FORMAT_PACKAGES if _installed(name)),
    ]
    assert fresh["loaded"] == sorted(expected)
    if _installed("numba"):
        assert fresh["uint16_kernel"] is True


def test_a_missing_package_is_skipped_and_a_broken_one_only_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "zstack_preload_broken.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(preload, "FORMAT_PACKAGES", ("zstack_preload_not_installed", "json"))
    with caplog.at_level(logging.DEBUG, logger="zstack_analyzer.batch.preload"):
        preload.warm()  # a package that is not there: skipped, nothing said
    assert [r for r in caplog.records if r.name == preload.__name__] == []
    monkeypatch.setattr(
        preload, "FORMAT_PACKAGES", ("zstack_preload_not_installed", "zstack_preload_broken")
    )
    with caplog.at_level(logging.DEBUG, logger="zstack_analyzer.batch.preload"):
        preload.warm()  # never raises (the forkserver would die)
    (record,) = [r for r in caplog.records if r.name == preload.__name__]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == "batch preload incomplete"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "broken at import"
    sys.modules.pop("zstack_preload_broken", None)
