"""Search conditions over annotations: ``tag=``, ``kv=KEY:VALUE``, ``project=``, ``dataset=`` and ``q``.

Why ``images.id IN (SELECT image_id ...)``: each condition is answered from
an index of its own table (``uq_tag_links_image``, ``key_value_images``' or
``ix_key_values_search``, ``dataset_images``' primary key) into a set of ids, which the engine then
probes by primary key, for the page and the count alike; a correlated
``EXISTS`` made both engines walk every image and probe per row. Several
``tag=`` or ``kv=`` parameters all apply (AND). The caller's visibility is a
condition of the same query (``visible_images_filter``), and a container is
found by name only among those the caller can see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, any_, func, intersect, or_, select, union

from zstack_analyzer.service.annotations.models import (
    KEY_INDEX_CHARS,
    Dataset,
    DatasetImage,
    KeyValue,
    KeyValueImage,
    Project,
    ProjectDataset,
    Tag,
    TagLink,
    index_key,
)
from zstack_analyzer.service.auth.permissions import SINGLE_USER, Principal, visible_filter
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import BadParameterError

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "annotation_id_sets",
    "container_ids",
    "count_in_all",
    "kv_ids",
    "kv_ids_of",
    "parse_kv",
    "tag_ids",
    "tag_ids_of",
    "text_condition",
]

#: Marks an id set whose ids are distinct already (see :func:`kv_ids_of`).
_DISTINCT = "zstack_distinct_ids"


def parse_kv(raw: str) -> tuple[str, str | None]:
    """``"KEY:VALUE"`` as ``(key, value)``; ``"KEY"`` (no colon) as ``(key, None)``: any value.

    The first colon separates (a value may hold colons, a key may not).

    Examples
    --------
    >>> parse_kv("strain: N2"), parse_kv("time:12:30"), parse_kv("antibody")
    (('strain', 'N2'), ('time', '12:30'), ('antibody', None))
    """
    key, sep, value = raw.partition(":")
    key = key.strip()
    if not key:
        msg = f"kv: expected KEY:VALUE (or KEY), got {raw[:100]!r}"
        raise BadParameterError(msg)
    return key, (value.strip() if sep else None)


def tag_ids(name: str) -> Select[uuid.UUID | None]:
    """The ids of the images carrying a tag of this name (in any group whose tags the image can carry)."""
    return tag_ids_of(index_key(name))


def tag_ids_of(name_key: Any) -> Select[uuid.UUID | None]:
    """:func:`tag_ids` from the name's indexed copy (``index_key``), or a bind parameter for it."""
    tags = select(Tag.id).where(Tag.name_key == name_key)
    return select(TagLink.image_id).where(TagLink.tag_id.in_(tags), TagLink.image_id.is_not(None))


def kv_ids(key: str, value: str | None) -> Select[uuid.UUID | None]:
    """The ids of the images with a pair ``key`` = ``value`` (case-insensitive; ``None``: any value)."""
    whole = None
    if value is not None and len(value.strip()) > KEY_INDEX_CHARS:  # past the indexed prefix
        whole = value.strip()
    return kv_ids_of(index_key(key), None if value is None else index_key(value), whole)


def kv_ids_of(key_key: Any, value_key: Any | None, whole: Any | None) -> Select[uuid.UUID | None]:
    """:func:`kv_ids` from the indexed copies (``index_key``) of key and value, or bind parameters for them.

    ``value_key`` ``None``: any value; ``whole``: the whole value, for a value
    longer than the indexed prefix. An exact value within the prefix reads
    ``key_value_images`` (each image once, by its primary key), so the ids
    are distinct and a total counts them as they are (:func:`count_in_all`).
    """
    if value_key is not None and whole is None:
        return (
            select(KeyValueImage.image_id)
            .where(KeyValueImage.key_key == key_key, KeyValueImage.value_key == value_key)
            .execution_options(**{_DISTINCT: True})
        )
    conditions = [KeyValue.key_key == key_key, KeyValue.image_id.is_not(None)]
    if value_key is not None:
        conditions.append(KeyValue.value_key == value_key)
    if whole is not None:
        conditions.append(KeyValue.value == whole)
    return select(KeyValue.image_id).where(*conditions)


def _named(model: type[Project] | type[Dataset], name: str) -> ColumnElement[bool]:
    text = name.strip()
    by_name = func.lower(model.name) == text.lower()
    if (text.isascii() and text.isdigit()) and len(text) < 10:
        return or_(model.id == int(text), by_name)
    return by_name


def container_ids(kind: str, name: str, principal: Principal) -> Select[uuid.UUID]:
    """The ids of the images in a dataset (or a project's datasets) named ``name`` (or with that id) the caller sees."""
    if kind == "dataset":
        datasets = select(Dataset.id).where(
            _named(Dataset, name), visible_filter(principal, Dataset.owner_id, Dataset.group_id)
        )
    else:
        projects = select(Project.id).where(
            _named(Project, name), visible_filter(principal, Project.owner_id, Project.group_id)
        )
        datasets = select(ProjectDataset.dataset_id).where(ProjectDataset.project_id.in_(projects))
    return select(DatasetImage.image_id).where(DatasetImage.dataset_id.in_(datasets))


def text_condition(q: str, *, as_array: bool = False) -> ColumnElement[bool] | None:
    """Images with a tag name, a key or a value starting with ``q`` (case-insensitive).

    A prefix is a range on the indexed copies (``>= q`` and ``< q + U+FFFF``), so
    both engines answer it from their B-trees. The three id sets are one
    ``UNION``: the caller ORs this condition with the full-text match.

    Why ``as_array`` (PostgreSQL): ``search_vector @@ q OR images.id IN (...)``
    cannot be answered from indexes (PostgreSQL has no bitmap for a
    semi-join), so the count walked every image and probed the subqueries per
    row (1.2 s for ``q=dapi`` at 100,000 records, 16x the bare full-text
    query). ``images.id = ANY(ARRAY(...))`` is computed once and is an index
    condition, so the match becomes one ``BitmapOr`` of the GIN index and the
    primary key, the bare query's plan.
    """
    prefix = index_key(q)
    if not prefix:
        return None
    end = prefix + "\uffff"
    tag_ids = select(Tag.id).where(and_(Tag.name_key >= prefix, Tag.name_key < end))
    tagged = select(TagLink.image_id).where(
        TagLink.tag_id.in_(tag_ids), TagLink.image_id.is_not(None)
    )
    by_value = select(KeyValue.image_id).where(
        and_(KeyValue.value_key >= prefix, KeyValue.value_key < end),
        KeyValue.image_id.is_not(None),
    )
    by_key = select(KeyValue.image_id).where(
        and_(KeyValue.key_key >= prefix, KeyValue.key_key < end), KeyValue.image_id.is_not(None)
    )
    annotated = union(tagged, by_value, by_key)
    if as_array:
        return Image.id == any_(func.array(annotated.scalar_subquery()))
    return Image.id.in_(annotated)


def annotation_id_sets(
    *,
    tags: tuple[str, ...] = (),
    kvs: tuple[tuple[str, str | None], ...] = (),
    project: str | None = None,
    dataset: str | None = None,
    principal: Principal | None = None,
) -> list[Select[Any]]:
    """Every annotation condition of a search as the set of image ids it admits (all must hold)."""
    who = principal if principal is not None else SINGLE_USER
    sets: list[Select[Any]] = [tag_ids(name) for name in tags if index_key(name)]
    sets.extend(kv_ids(key, value) for key, value in kvs)
    if project is not None:
        sets.append(container_ids("project", project, who))
    if dataset is not None:
        sets.append(container_ids("dataset", dataset, who))
    return sets


def count_in_all(sets: list[Select[Any]]) -> Select[int]:
    """How many images are in every one of ``sets`` (at least one), counted from the sets alone.

    Why: for a caller who sees every image and a search of annotations only,
    the total needs no image row. Every id in a set is an image (each table's
    ``image_id`` is a foreign key with ``ON DELETE CASCADE``, enforced on both
    engines; ``key_value_images`` follows ``key_values`` by its triggers), so
    counting the intersection of the sets' index entries is the
    same number as counting images whose id is in each set, without the
    primary-key probe per match (5,000 probes were most of a ``kv=`` search's
    time on PostgreSQL at 100,000 images). One set of distinct ids (a
    ``kv=KEY:VALUE``, from ``key_value_images``) is counted as it is: an
    index-only ``count(*)``, as cheap as counting a bare table's entries.
    """
    if len(sets) > 1:
        return select(func.count()).select_from(intersect(*sets).subquery("annotated"))
    (ids,) = sets
    if ids.get_execution_options().get(_DISTINCT):
        return select(func.count()).select_from(ids.subquery("annotated"))
    # GROUP BY, not DISTINCT: the same ids, but PostgreSQL groups the sorted index
    # entries in 1.0 ms where its Unique node took 1.25 ms (5,020 of 100,000 images).
    (column,) = ids.selected_columns
    return select(func.count()).select_from(ids.group_by(column).subquery("annotated"))
