"""``zstack rois import IMAGE FILE`` and ``zstack rois export IMAGE [OUT]``.

Like ``zstack ingest``: with ``--server`` the command calls the HTTP API
(``POST /api/images/{id}/rois/import``, ``GET /api/images/{id}/rois.geojson``)
as the token's user; without it, the database of ZSTACK_* directly, as the
single local user. Both call the same function of
``service/annotations/rois.py``, so the two stay in step.
"""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["rois_app"]

rois_app = typer.Typer(
    help="ROIs: import ImageJ / QuPath GeoJSON, export GeoJSON.", no_args_is_help=True
)

ServerOption = Annotated[
    str | None, typer.Option(help="Server URL; omitted: the database of ZSTACK_*")
]
TokenOption = Annotated[
    str | None,
    typer.Option(envvar="ZSTACK_TOKEN", help="Bearer token for --server"),
]


def _local(job: Any, *args: Any) -> Any:
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import Database, make_engine

    engine = make_engine(get_settings().resolved_database_url())
    try:
        upgrade_database(engine)
        return Database(engine).call(job, *args)
    finally:
        engine.dispose()


def _import_local(session: Any, image_id: str, data: bytes, scene: int) -> list[int]:
    from zstack_analyzer.service.annotations.rois import import_rois
    from zstack_analyzer.service.auth.permissions import SINGLE_USER
    from zstack_analyzer.service.images_service import require_image

    image = require_image(session, image_id)
    return import_rois(session, image, SINGLE_USER, data, scene=scene)


def _export_local(session: Any, image_id: str) -> dict[str, Any]:
    from zstack_analyzer.service.annotations.rois import image_rois_geojson
    from zstack_analyzer.service.images_service import require_image

    return image_rois_geojson(session, require_image(session, image_id).id)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


@rois_app.command("import")
def import_command(
    image: Annotated[str, typer.Argument(help="The image's id")],
    file: Annotated[Path, typer.Argument(help="A .roi, RoiManager .zip, or (QuPath) GeoJSON")],
    scene: Annotated[int, typer.Option(min=0, help="Scene the ROIs belong to")] = 0,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Add the file's ROIs to the image; prints their ids as JSON."""
    from zstack_analyzer.errors import ZstackError

    if not file.is_file():
        raise _fail(FileNotFoundError(f"{file}: no such file"))
    data = file.read_bytes()
    try:
        if server:
            from zstack_analyzer.client import Client

            with Client(server, token=token) as client:  # its errors are ZstackErrors
                answer = client.transport.request(
                    "POST",
                    f"/api/images/{image}/rois/import",
                    params={"scene": scene},
                    files={"file": (file.name, data)},
                ).json()
            ids = answer["ids"]
        else:
            ids = _local(_import_local, image, data, scene)
    except ZstackError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps({"ids": ids, "count": len(ids)}))


@rois_app.command("export")
def export_command(
    image: Annotated[str, typer.Argument(help="The image's id")],
    out: Annotated[Path | None, typer.Argument(help="Where to write; omitted: stdout")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """The image's ROIs as a GeoJSON FeatureCollection (QuPath opens it)."""
    from zstack_analyzer.errors import ZstackError

    try:
        if server:
            from zstack_analyzer.client import Client

            with Client(server, token=token) as client:
                document = client.transport.request(
                    "GET", f"/api/images/{image}/rois.geojson"
                ).json()
        else:
            document = _local(_export_local, image)
    except ZstackError as exc:
        raise _fail(exc) from exc
    text = json.dumps(document)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
