"""Child process of the corruption suite: try every corruption of some files, one JSON line each.

Run as ``python -m tests.corruption_child FILE...``. Each case writes the
corrupted bytes under the original name in a scratch folder, opens the file,
reads metadata of up to three scenes, the first and last plane of scene 0 and a
small slice picture, and reports the outcome, the time taken and the peak RSS
of the case (``/proc/self/clear_refs`` resets the peak before each case). A
watchdog ends the process if one case runs longer than the case limit; the
parent names the case from the last ``start`` line.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from tests.corrupt import variants
from zstack_analyzer import ZstackError, open_image
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_reader

#: A case running longer than this is a hang: the watchdog ends the child.
CASE_LIMIT_S = 10.0


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def _read_everything(path: Path) -> tuple[str, str]:
    """What a client would get: (fingerprint of metadata and pixels, metadata JSON)."""
    digest = hashlib.sha256()
    with open_image(path) as reader:
        scenes = reader.scenes()
        metadata = [reader.metadata(info.index).model_dump(mode="json") for info in scenes[:3]]
        text = json.dumps(metadata, sort_keys=True, default=str)
        digest.update(text.encode())
        info = scenes[0]
        last = (info.size_t - 1, info.size_c - 1, info.size_z - 1)
        for t, c, z in ((0, 0, 0), last):
            digest.update(np.ascontiguousarray(reader.read_plane(0, t, c, z)).tobytes())
        picture = render_reader(reader, RenderSpec(kind="slice", z=0, width=64, height=64))
        digest.update(np.asarray(picture).tobytes())
    return digest.hexdigest(), text


def _case(path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        fingerprint, text = _read_everything(path)
    except ZstackError as exc:
        return {
            "outcome": "error",
            "error": type(exc).__name__,
            "message": str(exc)[:300],
            "seconds": time.perf_counter() - started,
        }
    except Exception as exc:  # anything untyped is what the suite exists to find
        return {
            "outcome": "crash",
            "error": type(exc).__name__,
            "message": traceback.format_exc()[-2000:],
            "seconds": time.perf_counter() - started,
        }
    return {
        "outcome": "read",
        "fingerprint": fingerprint,
        "leaks_passwd": "root:x:0:0" in text,
        "seconds": time.perf_counter() - started,
    }


def main(files: list[str]) -> None:
    """Try every corruption of each of ``files``."""
    with tempfile.TemporaryDirectory(prefix="zstack-corrupt-") as scratch:
        for name in files:
            source = Path(name)
            original = source.read_bytes()
            target = Path(scratch) / source.name
            baseline = _case(source)
            for variant in variants(source.name, original[:16]):
                corrupted = variant.corrupt(original)
                if corrupted is None:
                    continue
                target.write_bytes(corrupted)
                case = f"{source.name}::{variant.name}"
                _emit({"start": case})
                faulthandler.dump_traceback_later(CASE_LIMIT_S, exit=True)
                _reset_peak()
                result = _case(target)
                result["peak_mib"] = _peak_mib()
                faulthandler.cancel_dump_traceback_later()
                result.update(
                    case=case,
                    file=str(source),
                    kind=variant.kind,
                    variant=variant.name,
                    intact=result.get("fingerprint") is not None
                    and result.get("fingerprint") == baseline.get("fingerprint"),
                )
                _emit(result)
                target.unlink()


if __name__ == "__main__":
    main(sys.argv[1:])
