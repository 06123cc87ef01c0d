"""Bulk annotation from a table (``zstack annotate CSV`` and ``POST /api/annotations/bulk``), like ``omero metadata populate``.

The table has a header row. Its first column names images: by id (a UUID),
by path (the file's source path, any value with a ``/``), or by filename
(within ``dataset`` when given, else among all images the caller can see;
a filename that names several images is an error). Its header decides when it
is ``id``, ``path`` or ``filename``; any other header lets each value decide.

Every other column is a key-value pair named by its header, except ``tag``
(one tag per cell; the column may repeat) and ``tags`` (several, separated by
``;``). Empty cells are skipped.

What it does: tags are added (existing ones stay); a key given for an image
replaces that image's pairs of the same key (and namespace), keeping the
others, so running a table twice changes nothing the second time. All rows
apply or none: any faulty row (unknown image, not yours to annotate, a value
too long) is reported with its row number (the header is row 1, as in a
spreadsheet) and nothing is written. A dry run reports what would change.

Why one function for the route and the CLI: both give the same answers and
the same row numbers, and the work is set-based (a few queries per 500
images), so 10,000 rows take seconds, not a request per row.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException
from sqlalchemy import and_, delete, insert, select

from zstack_analyzer.service.annotations.access import load_container
from zstack_analyzer.service.annotations.models import (
    Dataset,
    DatasetImage,
    KeyValue,
    Tag,
    TagLink,
    index_key,
)
from zstack_analyzer.service.annotations.schemas import (
    MAX_NAME,
    MAX_VALUE,
    BulkChange,
    BulkError,
    BulkResult,
)
from zstack_analyzer.service.auth.permissions import Action, Principal, allows
from zstack_analyzer.service.db.models import Image, utcnow
from zstack_analyzer.service.errors import BadParameterError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

__all__ = ["MAX_ROWS", "apply_table", "parse_table"]

#: Most data rows in one table.
MAX_ROWS = 200_000
#: Images per ``IN (...)`` query.
CHUNK = 500
_TAG_COLUMNS = {"tag", "tags"}
_ID_HEADERS = {"id", "image_id", "image id", "uuid"}
_PATH_HEADERS = {"path", "source_path", "file_path"}
_NAME_HEADERS = {"filename", "file", "name", "file name", "image_name"}


@dataclass(frozen=True, slots=True)
class ImageRef:
    """What the table needs of an image: who may annotate it, and how to name it."""

    id: uuid.UUID
    filename: str
    source_path: str | None
    owner_id: int | None
    group_id: int | None


#: The columns of :class:`ImageRef` (no metadata JSON is loaded for a table's images).
_REF_COLUMNS = (Image.id, Image.filename, Image.source_path, Image.owner_id, Image.group_id)


def _refs(session: Session, condition: Any) -> list[ImageRef]:
    return [ImageRef(*row) for row in session.execute(select(*_REF_COLUMNS).where(condition))]


@dataclass
class Row:
    """One data row: how it names its image, and what it adds."""

    number: int
    ref: str
    how: str  # "id" | "path" | "filename"
    tags: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Table:
    """A parsed table: its rows and the errors found while parsing."""

    rows: list[Row]
    errors: list[BulkError]


def _how(header: str, value: str) -> str:
    name = header.strip().lower()
    if name in _ID_HEADERS:
        return "id"
    if name in _PATH_HEADERS:
        return "path"
    if name in _NAME_HEADERS:
        return "filename"
    try:
        uuid.UUID(value)
    except ValueError:
        return "path" if "/" in value else "filename"
    return "id"


def _dialect(text: str) -> type[csv.Dialect]:
    first = text.split("\n", 1)[0]
    return csv.excel_tab if "\t" in first and "," not in first else csv.excel


def parse_table(text: str) -> Table:
    """Rows of a CSV (or tab-separated) table; header problems are errors of row 1."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), dialect=_dialect(text))
    errors: list[BulkError] = []
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        return Table([], [BulkError(row=1, message="the table has no header row")])
    header = [cell.strip() for cell in header]
    if len(header) < 2:
        message = "the header needs the image column and at least one tag or key column"
        return Table([], [BulkError(row=1, message=message)])
    for position, name in enumerate(header[1:], start=2):
        if not name:
            errors.append(BulkError(row=1, message=f"column {position} has no name"))
        elif len(name) > MAX_NAME:
            errors.append(
                BulkError(row=1, message=f"column {position}: name over {MAX_NAME} characters")
            )
    rows: list[Row] = []
    number = 1
    try:
        for cells in reader:
            number += 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) >= MAX_ROWS:
                errors.append(BulkError(row=number, message=f"more than {MAX_ROWS} rows"))
                break
            rows.append(_row(number, header, cells, errors))
    except csv.Error as exc:
        errors.append(BulkError(row=number + 1, message=f"not valid CSV: {exc}"))
    return Table(rows, errors)


def _row(number: int, header: list[str], cells: list[str], errors: list[BulkError]) -> Row:
    ref = cells[0].strip() if cells else ""
    row = Row(number=number, ref=ref, how=_how(header[0], ref))
    if not ref:
        errors.append(BulkError(row=number, message="the first column (the image) is empty"))
    if len(cells) > len(header):
        errors.append(
            BulkError(
                row=number, message=f"{len(cells)} cells but the header has {len(header)} columns"
            )
        )
    for name, raw in zip(header[1:], cells[1:], strict=False):
        value = raw.strip()
        if not value or not name:
            continue
        column = name.lower()
        if column in _TAG_COLUMNS:
            parts = [p.strip() for p in value.split(";")] if column == "tags" else [value]
            for tag in parts:
                if len(tag) > MAX_NAME:
                    errors.append(BulkError(row=number, message=f"tag over {MAX_NAME} characters"))
                elif tag and index_key(tag) not in {index_key(t) for t in row.tags}:
                    row.tags.append(tag)
        elif len(value) > MAX_VALUE:
            errors.append(
                BulkError(row=number, message=f"{name}: value over {MAX_VALUE} characters")
            )
        else:
            row.pairs.append((name, value))
    return row


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _resolve_dataset(session: Session, principal: Principal, dataset: str | None) -> int | None:
    """The dataset id named by id or by name (one the caller can see), or ``None``."""
    if dataset is None or not dataset.strip():
        return None
    text = dataset.replace("\x00", "").strip()
    if text.isascii() and text.isdigit():
        return load_container(session, principal, "dataset", text, Action.VIEW).id
    from zstack_analyzer.service.annotations.containers import visible_containers

    found = list(
        session.scalars(
            select(Dataset.id).where(Dataset.name == text, visible_containers(principal, "dataset"))
        )
    )
    if not found:
        msg = f"dataset: no dataset called {text[:100]!r}"
        raise BadParameterError(msg)
    if len(found) > 1:
        msg = f"dataset: {len(found)} datasets are called {text[:100]!r}; give its id"
        raise BadParameterError(msg)
    return int(found[0])


def _lookup(
    session: Session, principal: Principal, rows: list[Row], dataset_id: int | None
) -> tuple[dict[int, ImageRef], list[BulkError]]:
    """``row number -> image`` for every row, or an error naming the row."""
    by_how: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_how[row.how].add(row.ref)
    ids: dict[str, list[ImageRef]] = {}
    paths: dict[str, list[ImageRef]] = defaultdict(list)
    names: dict[str, list[ImageRef]] = defaultdict(list)
    valid_ids: list[tuple[str, uuid.UUID]] = []
    for ref in by_how["id"]:
        try:
            valid_ids.append((ref, uuid.UUID(ref)))
        except ValueError:
            continue
    for chunk_start in range(0, len(valid_ids), CHUNK):
        pairs = valid_ids[chunk_start : chunk_start + CHUNK]
        found = {i.id: i for i in _refs(session, Image.id.in_([u for _, u in pairs]))}
        for ref, key in pairs:
            if key in found:
                ids[ref] = [found[key]]
    for chunk in _chunks(sorted(by_how["path"])):
        for image in _refs(session, Image.source_path.in_(chunk)):
            paths[str(image.source_path)].append(image)
    for chunk in _chunks(sorted(by_how["filename"])):
        condition: ColumnElement[bool] = Image.filename.in_(chunk)
        if dataset_id is not None:
            condition = and_(
                condition,
                Image.id.in_(
                    select(DatasetImage.image_id).where(DatasetImage.dataset_id == dataset_id)
                ),
            )
        for image in _refs(session, condition):
            names[image.filename].append(image)
    table = {"id": ids, "path": paths, "filename": names}
    resolved: dict[int, ImageRef] = {}
    errors: list[BulkError] = []
    where = " in the dataset" if dataset_id is not None else ""
    for row in rows:
        candidates = [
            i for i in table[row.how].get(row.ref, []) if allows(principal, i, Action.VIEW)
        ]
        if not candidates:
            errors.append(
                BulkError(
                    row=row.number, message=f"no image with {row.how} {row.ref[:200]!r}{where}"
                )
            )
        elif len(candidates) > 1:
            message = (
                f"{len(candidates)} images have {row.how} {row.ref[:200]!r}{where}; name it by id"
            )
            errors.append(BulkError(row=row.number, message=message))
        elif not allows(principal, candidates[0], Action.ANNOTATE):
            message = (
                f"image {candidates[0].id} ({candidates[0].filename}) is not yours to annotate"
            )
            errors.append(BulkError(row=row.number, message=message))
        else:
            resolved[row.number] = candidates[0]
    return resolved, errors


@dataclass
class Plan:
    """What one image gets: tags to add, and keys to set (in first-row order)."""

    image: ImageRef
    first_row: int
    tags: list[str] = field(default_factory=list)
    pairs: dict[str, list[str]] = field(default_factory=dict)


def _plans(rows: list[Row], resolved: dict[int, ImageRef]) -> dict[uuid.UUID, Plan]:
    plans: dict[uuid.UUID, Plan] = {}
    for row in rows:
        image = resolved[row.number]
        plan = plans.setdefault(image.id, Plan(image=image, first_row=row.number))
        known = {index_key(t) for t in plan.tags}
        plan.tags.extend(t for t in row.tags if index_key(t) not in known)
        for key, value in row.pairs:
            plan.pairs.setdefault(key, []).append(value)
    return plans


def _existing(
    session: Session, image_ids: list[uuid.UUID], namespace: str | None
) -> tuple[dict[uuid.UUID, set[str]], dict[uuid.UUID, dict[str, list[str]]], dict[uuid.UUID, int]]:
    """Tags (name keys), pairs of this namespace (by key key) and the next position, per image."""
    tag_keys: dict[uuid.UUID, set[str]] = defaultdict(set)
    pairs: dict[uuid.UUID, dict[str, list[str]]] = defaultdict(dict)
    next_position: dict[uuid.UUID, int] = defaultdict(int)
    for start in range(0, len(image_ids), CHUNK):
        chunk = image_ids[start : start + CHUNK]
        query = select(TagLink.image_id, Tag.name_key).join(Tag, Tag.id == TagLink.tag_id)
        for image_id, name_key in session.execute(query.where(TagLink.image_id.in_(chunk))):
            if image_id is not None:
                tag_keys[image_id].add(name_key)
        kv_query = select(
            KeyValue.image_id,
            KeyValue.key_key,
            KeyValue.value,
            KeyValue.position,
            KeyValue.namespace,
        )
        for image_id, key_key, value, position, ns in session.execute(
            kv_query.where(KeyValue.image_id.in_(chunk)).order_by(KeyValue.position, KeyValue.id)
        ):
            if image_id is None:
                continue
            next_position[image_id] = max(next_position[image_id], position + 1)
            if ns == namespace:
                pairs[image_id].setdefault(key_key, []).append(value)
    return tag_keys, pairs, next_position


def _change(plan: Plan, tag_keys: set[str], pairs: dict[str, list[str]]) -> BulkChange:
    added = [t for t in plan.tags if index_key(t) not in tag_keys]
    changed = {k: v for k, v in plan.pairs.items() if pairs.get(index_key(k)) != v}
    return BulkChange.model_construct(  # our own values: no validation needed
        row=plan.first_row,
        image_id=str(plan.image.id),
        filename=plan.image.filename,
        tags_added=added,
        key_values=changed,
    )


def apply_table(
    session: Session,
    principal: Principal,
    text: str,
    *,
    dry_run: bool = False,
    dataset: str | None = None,
    namespace: str | None = None,
) -> BulkResult:
    r"""Annotate the images a table names (see the module docstring); what changed, or the errors.

    Examples
    --------
    >>> apply_table(session, SINGLE_USER, "filename,tag,strain\ncells.tif,mitosis,N2\n")  # doctest: +SKIP
    BulkResult(dry_run=False, applied=True, rows=1, changes=[...], errors=[])
    """
    namespace = namespace.strip() or None if namespace else None
    table = parse_table(text.replace("\x00", ""))
    errors = list(table.errors)
    try:
        dataset_id = _resolve_dataset(session, principal, dataset)
    except BadParameterError as exc:
        errors.append(BulkError(row=1, message=str(exc)))
        dataset_id = None
    except HTTPException as exc:  # load_container: no such (visible) dataset
        errors.append(BulkError(row=1, message=f"dataset: {exc.detail}"))
        dataset_id = None
    valid_rows = [r for r in table.rows if r.ref]
    resolved, lookup_errors = _lookup(session, principal, valid_rows, dataset_id)
    errors.extend(lookup_errors)
    errors.sort(key=lambda e: e.row)
    if errors:
        return BulkResult(
            dry_run=dry_run, applied=False, rows=len(table.rows), changes=[], errors=errors
        )
    plans = _plans(valid_rows, resolved)
    image_ids = list(plans)
    tag_keys, pairs, next_position = _existing(session, image_ids, namespace)
    work = [(plans[i], _change(plans[i], tag_keys[i], pairs[i])) for i in image_ids]
    work = [(plan, c) for plan, c in work if c.tags_added or c.key_values]
    if not dry_run and work:
        _write(session, principal, work, pairs, next_position, namespace)
    return BulkResult.model_construct(
        dry_run=dry_run,
        applied=not dry_run,
        rows=len(table.rows),
        changes=[change for _, change in work],
        errors=[],
    )


def _write(
    session: Session,
    principal: Principal,
    work: list[tuple[Plan, BulkChange]],
    existing: dict[uuid.UUID, dict[str, list[str]]],
    next_position: dict[uuid.UUID, int],
    namespace: str | None,
) -> None:
    """Write the changes in one transaction (tags first: see ``tags.ensure_tags``)."""
    from zstack_analyzer.service.annotations.tags import ensure_tags, group_for_tags

    groups = {
        group_id: group_for_tags(session, group_id)
        for group_id in {plan.image.group_id for plan, _ in work}
    }
    by_group: dict[int, list[str]] = defaultdict(list)
    for plan, change in work:
        by_group[groups[plan.image.group_id]].extend(change.tags_added)
    tags_by_group = {
        group_id: ensure_tags(session, group_id, _distinct(names), principal.user_id)
        for group_id, names in by_group.items()
        if names
    }
    now = utcnow()
    owner = principal.user_id
    links: list[dict[str, object]] = []
    new_pairs: list[dict[str, object]] = []
    drops: dict[str, list[uuid.UUID]] = defaultdict(list)
    for plan, change in work:
        image = plan.image
        group_tags = tags_by_group.get(groups[image.group_id], {})
        links.extend(
            {
                "tag_id": group_tags[index_key(name)].id,
                "image_id": image.id,
                "owner_id": owner,
                "group_id": image.group_id,
                "created_at": now,
            }
            for name in change.tags_added
        )
        position = next_position[image.id]
        had = existing.get(image.id, {})
        for key, values in change.key_values.items():
            key_key = index_key(key)
            if key_key in had:  # only pairs that exist need deleting
                drops[key_key].append(image.id)
            for value in values:
                new_pairs.append(
                    {
                        "image_id": image.id,
                        "position": position,
                        "namespace": namespace,
                        "key": key,
                        "value": value,
                        "key_key": key_key,
                        "value_key": index_key(value),
                        "owner_id": owner,
                        "group_id": image.group_id,
                        "created_at": now,
                    }
                )
                position += 1
    namespace_is = (
        KeyValue.namespace.is_(None) if namespace is None else KeyValue.namespace == namespace
    )
    for key_key, ids in drops.items():
        for start in range(0, len(ids), CHUNK):
            session.execute(
                delete(KeyValue).where(
                    and_(
                        KeyValue.key_key == key_key,
                        namespace_is,
                        KeyValue.image_id.in_(ids[start : start + CHUNK]),
                    )
                )
            )
    # Core executemany: the rows are complete, the ORM's bulk path only added work.
    connection = session.connection()
    if links:
        connection.execute(insert(TagLink.__table__), links)  # type: ignore[arg-type]
    if new_pairs:
        connection.execute(insert(KeyValue.__table__), new_pairs)  # type: ignore[arg-type]
    session.commit()


def _distinct(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for name in names:
        if index_key(name) not in seen:
            seen.add(index_key(name))
            result.append(name)
    return result
