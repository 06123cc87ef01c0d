"""What ``zstack ingest`` and ``zstack watch`` show and whom they talk to.

Why apart from ``cli.py``: the commands there stay a page of argument parsing;
this module builds the sink (this machine's database, or a server's API), draws
the rich progress bar (files, bytes, rate, time left) and prints the summary.
The work itself is ``zstack_analyzer.batch``'s.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from zstack_analyzer.batch.filing import Filing
    from zstack_analyzer.batch.ingest import Commit, IngestProgress, IngestSummary, Sink

__all__ = [
    "check_dashboard",
    "make_sink",
    "print_summary",
    "progress_bar",
    "say_dashboard",
    "stop_on_signals",
]


def usage_error(message: str) -> typer.BadParameter:
    """A usage error (exit status 2) with ``message``."""
    return typer.BadParameter(message)


def check_dashboard(dashboard: str | None, *, server: str | None, scheduler: str | None) -> None:
    """Refuse ``--dashboard`` where it cannot serve: with a server or a scheduler, or no bokeh."""
    if dashboard is None:
        return
    if server:
        msg = "--dashboard is for local ingest; with --server the server does the work"
        raise usage_error(msg)
    if scheduler:
        msg = "--dashboard starts the local cluster's; a --scheduler serves its own (printed)"
        raise usage_error(msg)
    _host, sep, port = dashboard.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        msg = f"--dashboard {dashboard!r}: give HOST:PORT (:0 for a free port)"
        raise usage_error(msg)
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        msg = "--dashboard needs bokeh: pip install 'zstack-analyzer[dashboard]'"
        raise usage_error(msg)


def say_dashboard(*, requested: str | None) -> Callable[[str | None], None]:
    """A callback printing (to stderr) where the dask dashboard is, once it is known."""

    def say(link: str | None) -> None:
        if link:
            typer.echo(f"dask dashboard: {link}", err=True)
        elif requested:
            typer.echo(
                "no dask dashboard: this batch runs in this process (no cluster started)",
                err=True,
            )

    return say


@contextlib.contextmanager
def make_sink(
    *,
    server: str | None,
    token: str | None,
    in_place: bool,
    scheduler: str | None,
    filing: Filing | None = None,
) -> Iterator[Sink]:
    """The sink for these options: a server's API, or the database and storage of ZSTACK_*.

    With ``filing`` (``--project``, ``--dataset``, ``--dataset-from-folder``) each
    new record is also linked into its dataset, through the same server or database.
    """
    if token and not server:
        msg = "--token needs --server (without it, ingest writes to the local database)"
        raise usage_error(msg)
    if server:
        if scheduler:
            msg = "--scheduler is for local ingest; with --server the server does the work"
            raise usage_error(msg)
        from zstack_analyzer.batch.remote import HttpSink

        with HttpSink(server, token=token, in_place=in_place) as sink:
            if filing is not None and filing.active:
                from zstack_analyzer.batch.filing import FilingSink, HttpFiler

                yield FilingSink(sink, HttpFiler(sink.client), filing)
            else:
                yield sink
        return
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.local_ingest import LocalSink

    settings = get_settings()
    if in_place and not settings.import_roots:
        msg = "--in-place needs ZSTACK_IMPORT_ROOTS (the folders records may point into)"
        raise usage_error(msg)
    with LocalSink(settings, in_place=in_place) as local:
        if filing is not None and filing.active:
            from zstack_analyzer.batch.filing import FilingSink
            from zstack_analyzer.service.annotations.filing import LocalFiler

            yield FilingSink(local, LocalFiler(local.database), filing)
        else:
            yield local


@contextlib.contextmanager
def progress_bar(*, quiet: bool) -> Iterator[Any]:
    """A callback drawing files, bytes, rate and time left (a no-op when ``quiet``)."""
    if quiet:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("[bold]{task.fields[files]}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("ingest", total=None, files="counting files", rate="")

        def update(event: IngestProgress) -> None:
            elapsed = progress.tasks[0].elapsed or 0.0
            rate = f"{event.files_done / elapsed:.1f} files/s" if elapsed > 0 else ""
            progress.update(
                task,
                completed=event.bytes_done,
                total=event.bytes_total or None,
                files=f"{event.files_done}/{event.files_total} files",
                rate=rate,
            )

        yield update


def print_summary(summary: IngestSummary, *, as_json: bool, quiet: bool) -> None:
    """The closing summary: counts, then every skipped and failed file with its reason."""
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2))
        return
    if quiet and summary.ok:
        return
    lines = [
        f"ingested {summary.ingested}, already present {summary.present}, "
        f"unsupported {summary.unsupported}, skipped {len(summary.skipped)}, "
        + (f"part of multi-file images {summary.members}, " if summary.members else "")
        + f"failed {len(summary.failed)} ({summary.seconds:.1f} s, {summary.runner})"
    ]
    lines += [f"  skipped {path}: {reason}" for path, reason in summary.skipped]
    lines += [f"  FAILED  {path}: {reason}" for path, reason in summary.failed]
    typer.echo("\n".join(lines), err=not summary.ok and quiet)


def describe(path: str, commit: Commit) -> str:
    """One line per handled file for ``zstack watch``."""
    text = f"{commit.outcome:<11} {path}"
    return f"{text}: {commit.reason}" if commit.reason else text


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, so a watch ends after its current poll."""
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def paths_exist(paths: list[Path]) -> None:
    """Refuse (usage error) a command line naming nothing that exists."""
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing:
        msg = f"no such file or folder: {', '.join(missing)}"
        raise usage_error(msg)
