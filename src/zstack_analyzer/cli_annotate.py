"""``zstack annotate CSV`` and ``zstack export DATASET OUT/`` (issue 24).

Why apart from ``cli.py``: that module stays a page of argument parsing per
command. The work is the service's: ``annotations.bulk.apply_table`` (the same
function ``POST /api/annotations/bulk`` calls) and ``annotations.export``.
Without ``--server`` they use the database of ZSTACK_* as its single user.
"""

from __future__ import annotations

import json
from pathlib import Path  # noqa: TC003  (typer reads the annotations at run time)
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from zstack_analyzer.service.annotations.schemas import BulkResult

__all__ = ["annotate", "export"]


def _print_result(result: BulkResult, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.model_dump(), indent=2))
        return
    verb = "would change" if result.dry_run else "changed"
    for change in result.changes:
        parts = []
        if change.tags_added:
            parts.append("tags +" + ", +".join(change.tags_added))
        parts.extend(f"{key} = {' | '.join(values)}" for key, values in change.key_values.items())
        typer.echo(f"row {change.row}: {change.filename} ({change.image_id}): {'; '.join(parts)}")
    typer.echo(f"{result.rows} rows: {verb} {len(result.changes)} image(s)")


def annotate(
    table: Annotated[Path, typer.Argument(help="CSV (or tab-separated) table with a header row")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change, change nothing")
    ] = False,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset (id or name) in which filenames are looked up")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Namespace of the key-value pairs made")
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="Server URL; omitted: the database of ZSTACK_*")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="ZSTACK_TOKEN", help="Bearer token for --server")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Tag and annotate images from a table: first column names them (id, path or filename).

    Other columns become key-value pairs, except ``tag`` (one per cell) and
    ``tags`` (separated by ``;``). All rows apply or none; faulty rows are
    listed with their numbers (exit 1).
    """
    from zstack_analyzer.service.annotations.schemas import BulkError, BulkResult

    try:
        text = table.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {table}: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if server:
        result = _annotate_remote(server, token, text, dry_run, dataset, namespace)
    else:
        if token:
            msg = "--token needs --server (without it, the local database is used)"
            raise typer.BadParameter(msg)
        result = _annotate_local(text, dry_run, dataset, namespace)
    if isinstance(result, list):
        result = BulkResult(
            dry_run=dry_run,
            applied=False,
            rows=0,
            changes=[],
            errors=[BulkError.model_validate(e) for e in result],
        )
    if result.errors:
        for error in result.errors:
            typer.echo(f"{table.name}: row {error.row}: {error.message}", err=True)
        typer.echo(f"nothing was changed ({len(result.errors)} row(s) with errors)", err=True)
        raise typer.Exit(code=1)
    _print_result(result, as_json=as_json)


def _annotate_local(
    text: str, dry_run: bool, dataset: str | None, namespace: str | None
) -> BulkResult:
    from zstack_analyzer.service.annotations.bulk import apply_table
    from zstack_analyzer.service.auth.permissions import SINGLE_USER
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import Database, make_engine

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade_database(engine)

        def run(session: Any) -> BulkResult:
            return apply_table(
                session, SINGLE_USER, text, dry_run=dry_run, dataset=dataset, namespace=namespace
            )

        return Database(engine).call(run)
    finally:
        engine.dispose()


def _annotate_remote(
    server: str,
    token: str | None,
    text: str,
    dry_run: bool,
    dataset: str | None,
    namespace: str | None,
) -> BulkResult | list[dict[str, Any]]:
    import httpx

    from zstack_analyzer.service.annotations.schemas import BulkResult

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"csv": text, "dry_run": dry_run, "dataset": dataset, "namespace": namespace}
    try:
        answer = httpx.post(
            f"{server.rstrip('/')}/api/annotations/bulk", json=body, headers=headers, timeout=600
        )
    except httpx.HTTPError as exc:
        typer.echo(f"error: no answer from {server}: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if answer.status_code == 200:
        return BulkResult.model_validate(answer.json())
    try:
        problem = answer.json()
    except ValueError:
        problem = {"detail": answer.text[:300]}
    if "errors" in problem and isinstance(problem["errors"], list) and problem["errors"]:
        first = problem["errors"][0]
        if isinstance(first, dict) and "row" in first:
            return [e for e in problem["errors"] if isinstance(e, dict)]
    typer.echo(f"error: HTTP {answer.status_code}: {problem.get('detail', '')}", err=True)
    raise typer.Exit(code=1)


def export(
    dataset: Annotated[str, typer.Argument(help="Dataset id or name")],
    out: Annotated[Path, typer.Argument(help="New (or empty) folder to write")],
    ngff: Annotated[str, typer.Option(help="NGFF version: 0.4 (zarr v2) or 0.5 (zarr v3)")] = "0.4",
) -> None:
    """Write a dataset as OME-Zarr images with their annotations and an RO-Crate (ro-crate-metadata.json)."""
    from zstack_analyzer.errors import ZstackError
    from zstack_analyzer.service.annotations.export import export_dataset
    from zstack_analyzer.service.config import get_settings
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import Database, make_engine
    from zstack_analyzer.service.storage import make_storage

    if ngff not in ("0.4", "0.5"):
        msg = f"--ngff {ngff}: use 0.4 or 0.5"
        raise typer.BadParameter(msg)
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade_database(engine)
        summary = export_dataset(
            Database(engine),
            make_storage(settings),
            dataset,
            out,
            ngff=ngff,
            progress=lambda line: typer.echo(line, err=True),
        )
    except ZstackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    finally:
        engine.dispose()
    for name, reason in summary.failed:
        typer.echo(f"FAILED {name}: {reason}", err=True)
    typer.echo(f"wrote {out}: {len(summary.images)} image(s) of dataset {summary.dataset!r}")
    if summary.failed:
        raise typer.Exit(code=1)
