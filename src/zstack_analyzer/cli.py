"""Command line: ``zstack info | thumbnail | serve | db upgrade``.

Why typer: one typed function per command gives ``--help`` and argument
checking for free. The CLI is a thin caller of the library and the service;
it is the only place (with the server entry point) that reads the environment.
"""

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

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
    file: Annotated[Path, typer.Argument(help="Image file (format detected from content)")],
    scene: Annotated[int, typer.Option(help="Scene index")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json/--table", help="JSON (default when piped) or a table")
    ] = not sys.stdout.isatty(),
) -> None:
    """Print a file's metadata (headers only; no pixels are read)."""
    from zstack_analyzer import open_image

    try:
        with open_image(file) as reader:
            metadata = reader.metadata(scene)
            n_scenes = len(reader.scenes())
    except (ZstackError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    data = metadata.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    _print_table(file, data, n_scenes)


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
    from zstack_analyzer.service.server import uvicorn_options

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
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    typer.echo(
        f"zstack-analyzer: http://{settings.host}:{settings.port}/ (data in {settings.data_dir})"
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
