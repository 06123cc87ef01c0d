"""Command line: ``zstack info | thumbnail | convert | ingest | watch | serve | db | user | ...``.

Accounts (``zstack user | group | token``) live in ``cli_accounts.py``.

Why typer: one typed function per command gives ``--help`` and argument
checking for free. The CLI is a thin caller of the library and the service;
it is the only place (with the server entry point) that reads the environment.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from zstack_analyzer.cli_accounts import group_app, token_app, user_app
from zstack_analyzer.cli_annotate import annotate, export
from zstack_analyzer.cli_rois import rois_app
from zstack_analyzer.errors import ZstackError

__all__ = ["app"]

app = typer.Typer(
    name="zstack",
    help="Microscopy z-stacks: metadata, thumbnails and the web service.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(group_app, name="group")
app.add_typer(token_app, name="token")
app.add_typer(rois_app, name="rois")
app.command()(annotate)
app.command()(export)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


def _parse_channels(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        msg = f"--channels: expected comma-separated integers, got {text!r}"
        raise typer.BadParameter(msg) from None


@app.command()
def info(
    files: Annotated[list[Path], typer.Argument(help="Image files (format detected from content)")],
    scene: Annotated[int, typer.Option(help="Scene index")] = 0,
    as_json: Annotated[
        bool,
        typer.Option("--json/--table", help="JSON Lines, one per file (default when piped)"),
    ] = not sys.stdout.isatty(),
) -> None:
    """Print each file's metadata (headers only; no pixels are read); exit 2 if one fails."""
    from zstack_analyzer import open_image

    failed = False
    for file in files:
        try:
            with open_image(file) as reader:
                metadata = reader.metadata(scene)
                n_scenes = len(reader.scenes())
        except (ZstackError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            typer.echo(f"error: {exc}", err=True)
            failed = True
            continue
        data = metadata.model_dump(mode="json")
        if as_json:
            typer.echo(json.dumps({"path": str(file), **data}))
        else:
            _print_table(file, data, n_scenes)
    if failed:
        raise typer.Exit(code=2)


def _print_table(file: Path, data: dict[str, Any], n_scenes: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{file.name} ({data['file_format']})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    physical = data.get("physical_size") or {}
    rows = [
        ("scenes", str(n_scenes)),
        (
            "size (T C Z Y X)",
            " x ".join(str(data[k]) for k in ("size_t", "size_c", "size_z", "size_y", "size_x")),
        ),
        ("samples per pixel", str(data["samples_per_pixel"])),
        ("dtype", f"{data['dtype']} ({data['bit_depth']} bit)"),
        (
            "voxel size (µm)",
            ", ".join(f"{axis}={physical.get(f'{axis}_um')}" for axis in ("x", "y", "z")),
        ),
        ("channels", ", ".join(str(c.get("name")) for c in data.get("channels", [])) or "-"),
    ]
    if data.get("objective"):
        rows.append(("objective", json.dumps(data["objective"])))
    if data.get("acquired_at") or data.get("acquired_at_local"):
        rows.append(("acquired", str(data.get("acquired_at") or data.get("acquired_at_local"))))
    rows.extend(("warning", warning) for warning in data.get("warnings", []))
    for field, value in rows:
        table.add_row(field, value)
    Console().print(table)


@app.command()
def thumbnail(
    file: Annotated[Path, typer.Argument(help="Image file")],
    out: Annotated[Path, typer.Argument(help="Output picture (.png, .jpg or .webp)")],
    z: Annotated[int | None, typer.Option(help="Z plane; omitted: maximum projection")] = None,
    axis: Annotated[int, typer.Option(help="Projection axis when z is omitted: 0=Z, 1=Y, 2=X")] = 0,
    size: Annotated[int, typer.Option(min=1, max=4096, help="Bounding box, pixels")] = 256,
    scene: Annotated[int, typer.Option(help="Scene index")] = 0,
    t: Annotated[int, typer.Option(help="Timepoint")] = 0,
    channels: Annotated[str | None, typer.Option(help='Channels to composite, e.g. "0,2"')] = None,
) -> None:
    """Write a thumbnail: plane z, or the maximum projection along an axis."""
    from zstack_analyzer.render.spec import RenderSpec
    from zstack_analyzer.render.thumbnails import render_file

    formats = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
    image_format = formats.get(out.suffix.lower())
    if image_format is None:
        msg = f"{out.name}: use a .png, .jpg or .webp name"
        raise typer.BadParameter(msg)
    if axis not in (0, 1, 2):
        msg = f"--axis {axis}: use 0 (Z), 1 (Y) or 2 (X)"
        raise typer.BadParameter(msg)
    spec = RenderSpec(
        kind="thumbnail" if z is not None or axis == 0 else "mip",
        scene=scene,
        t=t,
        z=z,
        axis=axis if z is None else 0,
        channels=_parse_channels(channels),
        width=size,
        height=size,
        image_format=image_format,  # type: ignore[arg-type]
    )
    try:
        result = render_file(file, spec)
    except (ZstackError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    out.write_bytes(result.data)
    typer.echo(f"wrote {out} ({len(result.data):,} bytes)")


@app.command()
def quality(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Image files and folders (walked)")
    ] = None,
    missing: Annotated[
        bool,
        typer.Option(
            "--missing",
            help="Measure the images of this machine's database that have no quality yet "
            "(resumable: each image is committed as it is done)",
        ),
    ] = False,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Write a CSV here (default: JSON Lines on stdout)")
    ] = None,
    scene: Annotated[
        list[int] | None, typer.Option(help="Scene(s) to measure (default: every scene)")
    ] = None,
) -> None:
    """Focus, exposure and signal of every plane, per file, scene and channel; no server.

    Exit status 2 when a file could not be measured (its row says why).
    """
    import csv

    from zstack_analyzer.quality.report import CSV_FIELDS, quality_rows

    if missing:
        if paths:
            msg = "--missing measures the database's images: give no PATH with it"
            raise typer.BadParameter(msg)
        _quality_missing()
        return
    if not paths:
        msg = "give image files or folders, or --missing"
        raise typer.BadParameter(msg)
    failed = False
    handle = csv_out.open("w", newline="", encoding="utf-8") if csv_out is not None else None
    try:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS) if handle is not None else None
        if writer is not None:
            writer.writeheader()
        for row in quality_rows(paths, scenes=scene or None):
            failed = failed or bool(row["error"])
            if row["error"]:
                typer.echo(f"error: {row['error']}", err=True)
            if writer is not None:
                writer.writerow(row)
            else:
                typer.echo(json.dumps(row))
    finally:
        if handle is not None:
            handle.close()
    if failed:
        raise typer.Exit(code=2)


@app.command()
def search(
    q: Annotated[str | None, typer.Argument(help="Words to find (filename, channels, ...)")] = None,
    image_format: Annotated[str | None, typer.Option("--format", help='e.g. "CZI"')] = None,
    channel: Annotated[str | None, typer.Option(help="Channel name or fluorophore")] = None,
    saturated_min: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Some channel has this share (0-1) saturated"),
    ] = None,
    focus_edge: Annotated[
        bool | None,
        typer.Option("--focus-edge/--no-focus-edge", help="Best focus at the first/last Z"),
    ] = None,
    snr_max: Annotated[
        float | None, typer.Option(min=0.0, help="Some channel's signal-to-background <= this")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """Search this machine's database (ZSTACK_DATA_DIR / ZSTACK_DATABASE_URL): JSON Lines.

    The same filters as ``GET /api/images/search``, including the quality ones.
    """
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.quality import quality_flags_for
    from zstack_analyzer.service.db.search import SearchFilters, search_images
    from zstack_analyzer.service.db.session import Database, make_engine

    filters = SearchFilters(
        q=q or None,
        format=image_format,
        channel=channel,
        saturated_min=saturated_min,
        focus_edge=focus_edge,
        snr_max=snr_max,
    )
    engine = make_engine(get_settings().resolved_database_url())
    try:
        upgrade_database(engine)

        def run(session: Any) -> list[dict[str, Any]]:
            rows, _ = search_images(session, filters, limit=limit)
            flags = quality_flags_for(session, [row.id for row in rows])
            return [
                {
                    "id": str(row.id),
                    "filename": row.filename,
                    "format": row.format,
                    "quality_flags": flags.get(row.id, []),
                }
                for row in rows
            ]

        found = Database(engine).call(run)
    finally:
        engine.dispose()
    for item in found:
        typer.echo(json.dumps(item))


def _quality_missing() -> None:
    """``zstack quality --missing`` on the database of ZSTACK_DATA_DIR / ZSTACK_DATABASE_URL."""
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.quality_backfill import backfill_quality

    def progress(name: str, error: str | None) -> None:
        typer.echo(f"{name}: {error}" if error else f"{name}: measured", err=bool(error))

    summary = backfill_quality(get_settings(), progress=progress)
    typer.echo(f"measured {summary.measured}, failed {summary.failed}")


@app.command()
def convert(
    file: Annotated[Path, typer.Argument(help="Image file (any format we read)")],
    out: Annotated[Path, typer.Argument(help="New OME-Zarr directory, e.g. cells.ome.zarr")],
    ngff: Annotated[str, typer.Option(help="NGFF version: 0.4 (zarr v2) or 0.5 (zarr v3)")] = "0.4",
    scene: Annotated[int, typer.Option(help="Scene to write")] = 0,
    all_scenes: Annotated[
        bool, typer.Option("--all-scenes", help="Every scene, as a bioformats2raw collection")
    ] = False,
    scheduler: Annotated[
        str | None, typer.Option(help="dask.distributed scheduler address (default: local threads)")
    ] = None,
) -> None:
    """Convert a file to OME-Zarr (multiscale pyramid, units, channel colours, our metadata)."""
    from zstack_analyzer.zarr.writer import convert as convert_file

    if ngff not in ("0.4", "0.5"):
        msg = f"--ngff {ngff}: use 0.4 or 0.5"
        raise typer.BadParameter(msg)
    try:
        result = convert_file(
            file,
            out,
            ngff=ngff,  # type: ignore[arg-type]
            scene=scene,
            all_scenes=all_scenes,
            scheduler=scheduler,
            progress=lambda line: typer.echo(line, err=True),
        )
    except (ZstackError, FileNotFoundError, FileExistsError) as exc:
        raise _fail(exc) from exc
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    levels = ", ".join(f"{y}x{x}" for y, x in result.levels[0])
    typer.echo(f"wrote {out} (NGFF {result.ngff}, {len(result.scenes)} scene(s), levels {levels})")


#: Filing options of ``ingest`` and ``watch`` (projects and datasets, issue 24).
ProjectOption = Annotated[
    str | None, typer.Option(help="Project the datasets go in (made on first use)")
]
DatasetOption = Annotated[
    str | None, typer.Option(help="Dataset every ingested image is linked into (made on first use)")
]
FromFolderOption = Annotated[
    bool,
    typer.Option(
        "--dataset-from-folder",
        help="One dataset per folder, named by its path below the ingested folder",
    ),
]


def _filing(project: str | None, dataset: str | None, from_folder: bool, roots: list[Path]) -> Any:
    """The :class:`~zstack_analyzer.batch.filing.Filing` of these options (usage errors: exit 2)."""
    from zstack_analyzer.batch.filing import Filing, filing_roots

    if dataset is not None and from_folder:
        msg = "give --dataset or --dataset-from-folder, not both"
        raise typer.BadParameter(msg)
    if project is not None and dataset is None and not from_folder:
        msg = "--project needs --dataset or --dataset-from-folder (images are filed in datasets)"
        raise typer.BadParameter(msg)
    for name, value in (("--project", project), ("--dataset", dataset)):
        if value is not None and not value.strip():
            msg = f"{name}: give a name"
            raise typer.BadParameter(msg)
    return Filing(
        project=project.strip() if project else None,
        dataset=dataset.strip() if dataset else None,
        from_folder=from_folder,
        roots=filing_roots(roots),
    )


#: ``--token`` of the commands that talk to a server (``ingest``, ``watch``).
TokenOption = Annotated[
    str | None,
    typer.Option(
        envvar="ZSTACK_TOKEN",
        help="Bearer token for --server: a personal token (zstack token create USER) "
        "or ZSTACK_API_TOKEN",
    ),
]


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (walked recursively)")],
    server: Annotated[
        str | None, typer.Option(help="Server URL; omitted: the database and storage of ZSTACK_*")
    ] = None,
    token: TokenOption = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Register where they are (no copy)")
    ] = False,
    scheduler: Annotated[
        str | None, typer.Option(help="dask scheduler tcp://HOST:PORT for the per-file work")
    ] = None,
    settle: Annotated[
        float, typer.Option(min=0, help="Skip files modified less than this many seconds ago")
    ] = 1.0,
    dashboard: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT for the dask dashboard of the local cluster (:0 picks a free "
            "port; needs bokeh); omitted or 'none': no dashboard. Its URL is printed."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
    project: ProjectOption = None,
    dataset: DatasetOption = None,
    dataset_from_folder: FromFolderOption = False,
) -> None:
    """Ingest every file a reader accepts; exit 0 when all are in, 1 when some failed."""
    from zstack_analyzer.batch import ingest as run_ingest
    from zstack_analyzer.cli_archive import (
        check_dashboard,
        make_sink,
        paths_exist,
        print_summary,
        progress_bar,
        say_dashboard,
    )

    paths_exist(paths)
    filing = _filing(project, dataset, dataset_from_folder, paths)
    if dashboard is not None and dashboard.strip().lower() in {"", "none"}:
        dashboard = None  # said explicitly: no dashboard
    check_dashboard(dashboard, server=server, scheduler=scheduler)
    try:
        with (
            make_sink(
                server=server,
                token=token,
                in_place=in_place,
                scheduler=scheduler,
                filing=filing,
            ) as sink,
            progress_bar(quiet=quiet or as_json) as progress,
        ):
            summary = run_ingest(
                paths,
                sink,
                scheduler=scheduler,
                settle_s=settle,
                progress=progress,
                dashboard=dashboard,
                on_dashboard=say_dashboard(requested=dashboard),
            )
    except OSError as exc:  # an unreachable scheduler or database: a message, not a traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    print_summary(summary, as_json=as_json, quiet=quiet)
    if not summary.ok:
        raise typer.Exit(code=1)


@app.command()
def watch(
    folder: Annotated[Path, typer.Argument(help="Folder to watch (recursively)")],
    server: Annotated[str | None, typer.Option(help="Server URL (see ingest)")] = None,
    token: TokenOption = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Register in place")] = False,
    scheduler: Annotated[str | None, typer.Option(help="dask scheduler for the work")] = None,
    settle: Annotated[
        float, typer.Option(min=0, help="Seconds a file must stay unchanged before ingest")
    ] = 5.0,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls")] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No line per file")] = False,
    project: ProjectOption = None,
    dataset: DatasetOption = None,
    dataset_from_folder: FromFolderOption = False,
) -> None:
    """Ingest each new file once complete; catches up on arrivals after a restart. Ctrl-C ends."""
    from zstack_analyzer.batch import open_runner, watch_folder
    from zstack_analyzer.cli_archive import describe, make_sink, paths_exist, stop_on_signals

    paths_exist([folder])
    if not folder.is_dir():
        msg = f"{folder}: not a folder"
        raise typer.BadParameter(msg)
    filing = _filing(project, dataset, dataset_from_folder, [folder])

    def on_file(path: str, commit: Any) -> None:
        if not quiet or commit.outcome == "failed":
            typer.echo(describe(path, commit), err=commit.outcome == "failed")

    with (
        make_sink(
            server=server, token=token, in_place=in_place, scheduler=scheduler, filing=filing
        ) as sink,
        stop_on_signals() as stop,
    ):
        local = sink.local_runner()
        runner_cm = local if local is not None else open_runner(scheduler=scheduler, expected=0)
        with runner_cm as runner:
            if not quiet:
                typer.echo(f"watching {folder} (settle {settle:g} s, {runner.description})")
            watch_folder(
                folder,
                sink,
                runner,
                settle_s=settle,
                interval_s=interval,
                stop=stop,
                on_file=on_file,
            )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default ZSTACK_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default ZSTACK_PORT)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (default ZSTACK_DATA_DIR, ./data)")
    ] = None,
) -> None:
    """Run the web service (settings from ZSTACK_* environment variables)."""
    import uvicorn

    from zstack_analyzer.service.app import create_app
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.server import configure_logging, uvicorn_options

    settings = get_settings()
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if data_dir is not None:
        updates["data_dir"] = data_dir
    if updates:
        settings = settings.model_copy(update=updates)
    configure_logging(settings.log_level)
    typer.echo(
        f"zstack-analyzer: http://{settings.host}:{settings.port}/ "
        f"(data in {settings.data_dir.resolve()})"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        **uvicorn_options(settings),
    )


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply database migrations (the server also does this at start-up)."""
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import make_engine

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade_database(engine, revision)
    finally:
        engine.dispose()
    typer.echo(f"database at {engine.url.render_as_string(hide_password=True)} is at {revision}")


if __name__ == "__main__":  # pragma: no cover
    app()
