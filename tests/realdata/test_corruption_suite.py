"""Every file of the corpus, corrupted at least ten ways, ends in a typed error or a checked read.

For each file of ``$ZSTACK_TESTDATA`` the corruptors of :mod:`tests.corrupt`
(truncations at several points, header byte flips, lying sizes, loops, XML
bombs and external entities) run in two child processes
(:mod:`tests.corruption_child`). Every case must end, within the child's
10-second watchdog and 1 GiB of peak RSS, either in a
:class:`~zstack_analyzer.errors.ZstackError` or in a read; a truncated file
that reads must read exactly as the original (nothing lost), and no read may
carry the content of an external entity. The tally (cases by kind, outcomes by
error type, worst time and RSS) is printed and written to
``test-artifacts/corruption-summary.json`` (every case: ``corruption-cases.jsonl``).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import REPO_ROOT
from tests.corrupt import variants

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realdata

CHILDREN = 2
PEAK_LIMIT_MIB = 1024
MIN_VARIANTS = 10
SKIP_SUFFIXES = (".md", ".json", ".py")


def _corpus(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(SKIP_SUFFIXES))


def _run(files: list[Path]) -> list[dict[str, Any]]:
    """Run the children; a child that dies is reported through the case it was on."""
    groups: list[list[str]] = [[] for _ in range(CHILDREN)]
    by_size = sorted(files, key=lambda p: p.stat().st_size, reverse=True)
    for i, path in enumerate(by_size):
        groups[i % CHILDREN].append(str(path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.corruption_child", *group],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group in groups
        if group
    ]
    results: list[dict[str, Any]] = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=800)
        started = None
        for line in stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results.append(record)
                started = None
        if proc.returncode != 0:
            results.append(
                {
                    "case": started or "?",
                    "kind": "?",
                    "outcome": "child-died",
                    "error": f"exit {proc.returncode}",
                    "message": stderr[-3000:],
                    "seconds": 0.0,
                    "peak_mib": 0.0,
                    "intact": False,
                }
            )
    return results


def assert_all_handled(results: list[dict[str, Any]]) -> None:
    """Every case ended in a typed error or a read, within the memory cap, leaking nothing.

    A failure: a crash or a dead child, a truncated file read as whole with other content,
    another file's content (an external entity, a linked file) in the metadata, or a peak
    RSS over :data:`PEAK_LIMIT_MIB`. The first 20 are listed.
    """
    failures = []
    for r in results:
        if r["outcome"] in ("crash", "child-died"):
            failures.append(f"{r['case']}: {r['outcome']} {r['error']}\n{r['message']}")
        elif r["outcome"] == "read" and r["kind"] == "truncation" and not r["intact"]:
            failures.append(f"{r['case']}: a truncated file read as whole, with other content")
        elif r.get("leaks_passwd"):
            failures.append(f"{r['case']}: another file's content reached the metadata")
        elif r["peak_mib"] > PEAK_LIMIT_MIB:
            failures.append(f"{r['case']}: peak RSS {r['peak_mib']:.0f} MiB")
    assert not failures, "\n\n".join(failures[:20])


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = collections.Counter(r["kind"] for r in results)

    def label(r: dict[str, Any]) -> str:
        if r["outcome"] != "read":
            return str(r.get("error"))
        return "read (intact)" if r["intact"] else "read"

    outcomes = collections.Counter(label(r) for r in results)
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        by_kind[r["kind"]][label(r)] += 1
    worst_time = max(results, key=lambda r: r["seconds"])
    worst_rss = max(results, key=lambda r: r["peak_mib"])
    return {
        "cases": len(results),
        "files": len({r["case"].split("::")[0] for r in results}),
        "cases_by_kind": dict(sorted(kinds.items())),
        "outcomes": dict(sorted(outcomes.items(), key=lambda kv: -kv[1])),
        "outcomes_by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "worst_time": {"case": worst_time["case"], "seconds": round(worst_time["seconds"], 3)},
        "worst_rss": {"case": worst_rss["case"], "peak_mib": round(worst_rss["peak_mib"], 1)},
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_corruption_of_every_corpus_file_is_handled(testdata: Path) -> None:
    files = _corpus(testdata)
    assert files, f"no files under {testdata}"
    few = [p.name for p in files if len(variants(p.name, p.read_bytes()[:16])) < MIN_VARIANTS]
    assert not few, f"fewer than {MIN_VARIANTS} corruptions for {few}"
    results = _run(files)
    summary = _summary(results)
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "corruption-summary.json").write_text(json.dumps(summary, indent=2))
    (artifacts / "corruption-cases.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in results)
    )
    print(json.dumps(summary, indent=2))  # the figures for the record (-rA or -s)

    assert_all_handled(results)
    assert summary["files"] == len(files)
