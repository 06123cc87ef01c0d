"""The CSV bulk annotation (``apply_table``) on a migrated SQLite database, called directly.

Found by mutation testing: the existing tests (one table through the service, the
permission matrix) did not check the header names that decide how the first column
names images, tab-separated tables, row numbers after blank rows, the limits and
their messages, dataset lookup by id and by name, ambiguous filenames, namespaces,
positions of replaced pairs, or work split into chunks of images.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import (
    add_group,
    add_image,
    add_user,
    principal_of,
)
from zstack_analyzer.service.annotations import bulk
from zstack_analyzer.service.annotations.bulk import apply_table, parse_table
from zstack_analyzer.service.annotations.models import Dataset, DatasetImage, KeyValue, Tag, TagLink
from zstack_analyzer.service.auth.accounts import default_group_id
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import SINGLE_USER

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.annotations.schemas import BulkResult


def _errors(result: BulkResult) -> list[tuple[int, str]]:
    return [(e.row, e.message) for e in result.errors]


def _tags(session: Session, image_id: uuid.UUID) -> list[str]:
    query = (
        select(Tag.name)
        .join(TagLink, TagLink.tag_id == Tag.id)
        .where(TagLink.image_id == image_id)
        .order_by(TagLink.id)
    )
    return list(session.scalars(query))


def _pairs(session: Session, image_id: uuid.UUID) -> list[tuple[str | None, str, str, int]]:
    query = (
        select(KeyValue.namespace, KeyValue.key, KeyValue.value, KeyValue.position)
        .where(KeyValue.image_id == image_id)
        .order_by(KeyValue.position, KeyValue.id)
    )
    return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def _dataset(session: Session, name: str, images: list[uuid.UUID], **owner: int | None) -> int:
    dataset = Dataset(name=name, description="", **owner)
    session.add(dataset)
    session.flush()
    for image_id in images:
        session.add(DatasetImage(dataset_id=dataset.id, image_id=image_id))
    session.commit()
    return dataset.id


# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("header", "how"),
    [
        ("id", "id"),
        ("image_id", "id"),
        ("Image ID", "id"),
        (" UUID ", "id"),
        ("path", "path"),
        ("source_path", "path"),
        ("File_Path", "path"),
        ("filename", "filename"),
        ("file", "filename"),
        ("NAME", "filename"),
        ("file name", "filename"),
        ("image_name", "filename"),
    ],
)
def test_the_header_decides_how_images_are_named(header: str, how: str) -> None:
    # The value looks like another kind (a path with a UUID in it): the header wins.
    table = parse_table(f"{header},tag\n/data/{uuid.UUID(int=5)},t\n")
    assert table.errors == []
    assert [(r.ref, r.how) for r in table.rows] == [(f"/data/{uuid.UUID(int=5)}", how)]
    plain = parse_table(f"{header},tag\n{uuid.UUID(int=5)},t\n")
    assert plain.rows[0].how == how


def test_other_headers_let_each_value_decide() -> None:
    ident = str(uuid.UUID(int=7))
    table = parse_table(f"image,tag\n{ident},a\n/x/y.tif,b\ny.tif,c\n{ident.upper()},d\n")
    assert [(r.ref, r.how) for r in table.rows] == [
        (ident, "id"),
        ("/x/y.tif", "path"),
        ("y.tif", "filename"),
        (ident.upper(), "id"),
    ]


def test_tab_separated_tables_are_read_by_their_first_line() -> None:
    table = parse_table("filename\ttag\tstrain\na.tif\tx,y\tN2\n")
    assert table.errors == []
    assert [(r.ref, r.tags, r.pairs) for r in table.rows] == [
        ("a.tif", ["x,y"], [("strain", "N2")])
    ]
    # A tab in a later line only: still a CSV table.
    csv_table = parse_table("filename,tag\na.tif,x\ty\n")
    assert [(r.ref, r.tags) for r in csv_table.rows] == [("a.tif", ["x\ty"])]
    # A first line with tabs and commas is a CSV table.
    mixed = parse_table("filename,a\tb\nc.tif,v\n")
    assert [(r.ref, r.pairs) for r in mixed.rows] == [("c.tif", [("a\tb", "v")])]


def test_header_problems_are_errors_of_row_one() -> None:
    assert _messages(parse_table("")) == [(1, "the table has no header row")]
    need = "the header needs the image column and at least one tag or key column"
    assert _messages(parse_table("filename\na.tif\n")) == [(1, need)]
    assert parse_table("filename\na.tif\n").rows == []
    long_name = "k" * 256
    table = parse_table(f"filename,,{'k' * 255},{long_name}\na.tif,x,y,z\n")
    assert _messages(table) == [
        (1, "column 2 has no name"),
        (1, "column 4: name over 255 characters"),
    ]
    # The rows are still read (their pairs without the unnamed column).
    assert [r.pairs for r in table.rows] == [[("k" * 255, "y"), (long_name, "z")]]


def _messages(table: bulk.Table) -> list[tuple[int, str]]:
    return [(e.row, e.message) for e in table.errors]


def test_rows_are_numbered_as_in_a_spreadsheet() -> None:
    text = "\ufefffilename,tag,Strain\n\n a.tif , x ,  N2 \n , \nb.tif,,\n,y\n"
    table = parse_table(text)
    assert [(r.number, r.ref, r.tags, r.pairs) for r in table.rows] == [
        (3, "a.tif", ["x"], [("Strain", "N2")]),
        (5, "b.tif", [], []),
        (6, "", ["y"], []),
    ]
    assert _messages(table) == [(6, "the first column (the image) is empty")]
    assert parse_table("filename,tag\n").rows == []
    # The byte-order mark is no part of the first header (which then decides: a path).
    assert [r.how for r in parse_table("\ufeffpath,tag\nfoo.tif,x\n").rows] == ["path"]
    # Only the mark is stripped: a header "Xname" is no "name" (its values decide).
    assert [r.how for r in parse_table("Xname,tag\n/x/y.tif,t\n").rows] == ["path"]


def test_too_many_cells_and_too_long_values() -> None:
    value = "v" * 4096
    tag = "t" * 255
    text = (
        f"filename,tag,tags,key\n"
        f"a.tif,{tag},,{value}\n"
        f"b.tif,{tag}x,,{value}x\n"
        f"c.tif,,ok;{'u' * 256}; ,,extra\n"
    )
    table = parse_table(text)
    assert _messages(table) == [
        (3, "tag over 255 characters"),
        (3, "key: value over 4096 characters"),
        (4, "5 cells but the header has 4 columns"),
        (4, "tag over 255 characters"),
    ]
    assert table.rows[0].tags == [tag] and table.rows[0].pairs == [("key", value)]
    assert table.rows[1].tags == [] and table.rows[1].pairs == []
    assert table.rows[2].tags == ["ok"]


def test_tag_columns_split_and_deduplicate() -> None:
    table = parse_table("filename,TAG,Tags,tag\na.tif,Late;x, late ; Bright;;EARLY,early\n")
    # "tag" keeps a ';' whole; "tags" splits; a tag already on the row (any case) is skipped.
    assert table.rows[0].tags == ["Late;x", "late", "Bright", "EARLY"]
    assert table.rows[0].pairs == []


def test_row_limit_and_invalid_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "MAX_ROWS", 2)
    table = parse_table("filename,tag\na,x\n\nb,y\nc,z\nd,w\n")
    assert [r.ref for r in table.rows] == ["a", "b"]
    assert _messages(table) == [(5, "more than 2 rows")]
    exact = parse_table("filename,tag\na,x\nb,y\n")
    assert exact.errors == [] and len(exact.rows) == 2
    huge = "x" * 200_000
    broken = parse_table(f"filename,tag\na,x\nb,{huge}\nc,z\n")
    assert [r.ref for r in broken.rows] == ["a"]
    assert len(broken.errors) == 1
    assert broken.errors[0].row == 3
    assert broken.errors[0].message.startswith("not valid CSV: field larger than field limit")
    header = parse_table(f"{huge},tag\n")
    assert _messages(header) == [(1, "the table has no header row")]


# ---------------------------------------------------------------------------- applying


def test_single_user_table_applies_once(session: Session) -> None:
    a = add_image(session, "a.tif")
    b = add_image(session, "b.tif", source_path="/data/b.tif")
    table = (
        "image,tag,tags,Strain,treatment\n"
        f"{a},mitosis,late; bright,N2,DMSO\n"
        "/data/b.tif,Mitosis,,CB4856,\n"
        f"{a},MITOSIS,dim,PD1074,\n"
    )
    dry = apply_table(session, SINGLE_USER, table, dry_run=True)
    assert dry.dry_run is True and dry.applied is False and dry.rows == 3 and dry.errors == []
    assert [(c.row, c.image_id, c.filename, c.tags_added, c.key_values) for c in dry.changes] == [
        (
            2,
            str(a),
            "a.tif",
            ["mitosis", "late", "bright", "dim"],
            {"Strain": ["N2", "PD1074"], "treatment": ["DMSO"]},
        ),
        (3, str(b), "b.tif", ["Mitosis"], {"Strain": ["CB4856"]}),
    ]
    assert _tags(session, a) == [] and _pairs(session, a) == []
    assert session.scalars(select(Tag)).all() == []

    done = apply_table(session, SINGLE_USER, table)
    assert done.dry_run is False and done.applied is True and done.rows == 3
    session.rollback()  # what follows was committed, not only flushed
    assert [c.model_dump() for c in done.changes] == [c.model_dump() for c in dry.changes]
    assert _tags(session, a) == ["mitosis", "late", "bright", "dim"]
    assert _tags(session, b) == ["mitosis"]  # one tag per name in the group (first spelling)
    assert _pairs(session, a) == [
        (None, "Strain", "N2", 0),
        (None, "Strain", "PD1074", 1),
        (None, "treatment", "DMSO", 2),
    ]
    assert _pairs(session, b) == [(None, "Strain", "CB4856", 0)]
    tags = session.scalars(select(Tag).order_by(Tag.id)).all()
    assert {t.group_id for t in tags} == {default_group_id(session)}
    assert [t.name_key for t in tags] == ["mitosis", "late", "bright", "dim"]
    links = session.scalars(select(TagLink).where(TagLink.image_id == a)).all()
    # Records without a group are in ``default`` (the database gives new images that group).
    assert {(link.owner_id, link.group_id) for link in links} == {(None, default_group_id(session))}
    assert all(link.created_at is not None for link in links)
    stored = session.scalars(select(KeyValue).where(KeyValue.image_id == a)).all()
    assert {(kv.key_key, kv.value_key) for kv in stored} == {
        ("strain", "n2"),
        ("strain", "pd1074"),
        ("treatment", "dmso"),
    }
    assert all(kv.created_at is not None and kv.owner_id is None for kv in stored)

    again = apply_table(session, SINGLE_USER, table)
    assert again.applied is True and again.changes == [] and again.rows == 3
    assert len(_pairs(session, a)) == 3


def test_a_key_given_again_replaces_only_that_key(session: Session) -> None:
    a = add_image(session, "a.tif")
    apply_table(session, SINGLE_USER, f"id,strain,stage,Tag\n{a},N2,L4,first\n")
    apply_table(session, SINGLE_USER, f"id,stage\n{a},L1\n", namespace="lab")
    assert _pairs(session, a) == [
        (None, "strain", "N2", 0),
        (None, "stage", "L4", 1),
        ("lab", "stage", "L1", 2),
    ]
    changed = apply_table(session, SINGLE_USER, f"id,STRAIN,tag\n{a},PD1074,First\n")
    assert [(c.tags_added, c.key_values) for c in changed.changes] == [([], {"STRAIN": ["PD1074"]})]
    assert _pairs(session, a) == [
        (None, "stage", "L4", 1),
        ("lab", "stage", "L1", 2),
        (None, "STRAIN", "PD1074", 3),
    ]
    # The same values under the namespace: nothing to do; other values replace that namespace's.
    same = apply_table(session, SINGLE_USER, f"id,stage\n{a},L1\n", namespace=" lab ")
    assert same.changes == []
    apply_table(session, SINGLE_USER, f"id,stage\n{a},L2\n", namespace="lab")
    assert _pairs(session, a) == [
        (None, "stage", "L4", 1),
        (None, "STRAIN", "PD1074", 3),
        ("lab", "stage", "L2", 4),
    ]
    # A blank namespace is none.
    blank = apply_table(session, SINGLE_USER, f"id,stage\n{a},L4\n", namespace="  ")
    assert blank.changes == []
    # A key in another case with the same values: nothing to change.
    assert apply_table(session, SINGLE_USER, f"id,Stage\n{a},L4\n").changes == []
    # Values compared in order and exactly.
    case = apply_table(session, SINGLE_USER, f"id,stage\n{a},l4\n")
    assert [c.key_values for c in case.changes] == [{"stage": ["l4"]}]


def test_a_key_replaced_on_one_image_stays_on_the_others(session: Session) -> None:
    a = add_image(session, "a.tif")
    b = add_image(session, "b.tif")
    apply_table(session, SINGLE_USER, f"id,strain\n{a},N2\n{b},N2\n")
    apply_table(session, SINGLE_USER, f"id,strain\n{a},PD1074\n")
    assert _pairs(session, a) == [(None, "strain", "PD1074", 1)]
    assert _pairs(session, b) == [(None, "strain", "N2", 0)]
    empty = apply_table(session, SINGLE_USER, "")
    assert (empty.rows, empty.applied, _errors(empty)) == (
        0,
        False,
        [(1, "the table has no header row")],
    )


def test_existing_values_are_compared_in_position_order(session: Session) -> None:
    """Pairs written by other routes may have positions out of id order: positions decide."""
    from zstack_analyzer.service.annotations.models import index_key

    a = add_image(session, "a.tif")
    for position, value in ((5, "B"), (2, "A")):
        session.add(
            KeyValue(
                image_id=a,
                position=position,
                namespace=None,
                key="strain",
                value=value,
                key_key="strain",
                value_key=index_key(value),
            )
        )
    session.commit()
    same = apply_table(session, SINGLE_USER, f"id,strain\n{a},A\n{a},B\n")
    assert same.changes == []


def test_errors_name_their_rows_and_nothing_is_written(session: Session) -> None:
    a = add_image(session, "a.tif")
    add_image(session, "twin.tif")
    add_image(session, "twin.tif")
    missing = uuid.UUID(int=99)
    table = f"image,tag\n{a},new\n{missing},x\ntwin.tif,y\n/no/such.tif,z\n,w\n{'n' * 300}.tif,v\n"
    result = apply_table(session, SINGLE_USER, table, dry_run=True)
    assert result.dry_run is True and result.applied is False and result.rows == 6
    assert result.changes == []
    assert _errors(result) == [
        (3, f"no image with id '{missing}'"),
        (4, "2 images have filename 'twin.tif'; name it by id"),
        (5, "no image with path '/no/such.tif'"),
        (6, "the first column (the image) is empty"),
        (7, f"no image with filename {('n' * 300 + '.tif')[:200]!r}"),
    ]
    assert apply_table(session, SINGLE_USER, table).applied is False
    assert _tags(session, a) == []
    # An id column whose value is no UUID is an unknown image, not a crash.
    bad = apply_table(session, SINGLE_USER, "id,tag\nnot-a-uuid,x\n")
    assert _errors(bad) == [(2, "no image with id 'not-a-uuid'")]
    # Header errors and row errors come sorted by row.
    long_twin = "w" * 250
    add_image(session, long_twin)
    add_image(session, long_twin)
    twins = apply_table(session, SINGLE_USER, f"filename,tag\n{long_twin},x\n")
    assert _errors(twins) == [
        (2, f"2 images have filename {long_twin[:200]!r}; name it by id"),
    ]
    mixed = apply_table(session, SINGLE_USER, "filename,,tag\nnope.tif,,x\n")
    assert _errors(mixed) == [(1, "column 2 has no name"), (2, "no image with filename 'nope.tif'")]
    # NUL characters are dropped from the table.
    nul = apply_table(session, SINGLE_USER, f"id,ta\x00g\n{a},zero\x00\n")
    assert nul.errors == [] and _tags(session, a) == ["zero"]


def test_filenames_within_a_dataset(session: Session) -> None:
    a = add_image(session, "cell.tif")
    b = add_image(session, "cell.tif")
    c = add_image(session, "other.tif")
    plate = _dataset(session, "Plate", [a, c])
    _dataset(session, "Twin", [])
    _dataset(session, "Twin", [])
    table = "filename,tag\ncell.tif,x\n"
    assert _errors(apply_table(session, SINGLE_USER, table, dry_run=True)) == [
        (2, "2 images have filename 'cell.tif'; name it by id")
    ]
    for name in ("Plate", " Plate ", str(plate), "Pl\x00ate"):
        result = apply_table(session, SINGLE_USER, table, dataset=name, dry_run=True)
        assert result.errors == [], name
        assert [c.image_id for c in result.changes] == [str(a)]
    outside = apply_table(session, SINGLE_USER, f"filename,tag\n{b}.tif,x\n", dataset="Plate")
    assert _errors(outside) == [(2, f"no image with filename '{b}.tif' in the dataset")]
    assert _errors(apply_table(session, SINGLE_USER, table, dataset="Nope")) == [
        (1, "dataset: no dataset called 'Nope'"),
        (2, "2 images have filename 'cell.tif'; name it by id"),
    ]
    long_name = "D" * 150
    assert _errors(apply_table(session, SINGLE_USER, "id,tag\n", dataset=long_name)) == [
        (1, f"dataset: no dataset called {long_name[:100]!r}")
    ]
    assert _errors(apply_table(session, SINGLE_USER, "id,tag\n", dataset="Twin")) == [
        (1, "dataset: 2 datasets are called 'Twin'; give its id")
    ]
    twins = "T" * 120
    _dataset(session, twins, [])
    _dataset(session, twins, [])
    assert _errors(apply_table(session, SINGLE_USER, "id,tag\n", dataset=twins)) == [
        (1, f"dataset: 2 datasets are called {twins[:100]!r}; give its id")
    ]
    assert _errors(
        apply_table(session, SINGLE_USER, "filename,tag\ncell.tif,x\n", dataset="987")
    ) == [
        (1, "dataset: no dataset with id '987'"),
        (2, "2 images have filename 'cell.tif'; name it by id"),
    ]
    # Blank: no dataset; a number in other digits is a name.
    assert apply_table(session, SINGLE_USER, f"id,tag\n{a},y\n", dataset="  ").errors == []
    assert _errors(apply_table(session, SINGLE_USER, "id,tag\n", dataset="\u0661")) == [
        (1, "dataset: no dataset called '\u0661'")
    ]


def test_who_may_annotate_what(session: Session) -> None:
    private = add_group(session, "lab-private", Permission.PRIVATE)
    annotate = add_group(session, "lab-annotate", Permission.READ_ANNOTATE)
    read_only = add_group(session, "lab-read", Permission.READ_ONLY)
    alice = add_user(session, "alice", {private: False, annotate: False, read_only: False})
    bob = add_user(session, "bob", {private: False, annotate: False, read_only: False})
    theirs_private = add_image(session, "p.tif", owner_id=alice, group_id=private)
    theirs_annotate = add_image(session, "a.tif", owner_id=alice, group_id=annotate)
    theirs_read = add_image(session, "r.tif", owner_id=alice, group_id=read_only)
    mine = add_image(session, "m.tif", owner_id=bob, group_id=private)
    as_bob = principal_of(session, bob)
    table = f"id,tag,k\n{theirs_private},x,1\n{theirs_read},x,1\n{theirs_annotate},x,1\n"
    result = apply_table(session, as_bob, table)
    assert _errors(result) == [
        (2, f"no image with id '{theirs_private}'"),
        (3, f"image {theirs_read} (r.tif) is not yours to annotate"),
    ]
    ok = apply_table(session, as_bob, f"id,tag,k\n{theirs_annotate},Shared,1\n{mine},Shared,2\n")
    assert ok.errors == [] and ok.applied
    # Tags live in each image's group, made by bob; links and pairs carry owner and group.
    tag_rows = session.scalars(select(Tag).order_by(Tag.group_id)).all()
    assert [(t.name, t.group_id, t.owner_id) for t in tag_rows] == [
        ("Shared", private, bob),
        ("Shared", annotate, bob),
    ]
    link = session.scalars(select(TagLink).where(TagLink.image_id == theirs_annotate)).one()
    assert (link.owner_id, link.group_id) == (bob, annotate)
    pair = session.scalars(select(KeyValue).where(KeyValue.image_id == theirs_annotate)).one()
    assert (pair.owner_id, pair.group_id, pair.value) == (bob, annotate, "1")
    assert _tags(session, mine) == ["Shared"]
    # A dataset of alice's in the read-annotate group: bob sees it, by id and by name, and
    # names its images by filename in it (seeing is enough; changing it is not needed).
    shared = _dataset(session, "Shared", [theirs_annotate], owner_id=alice, group_id=annotate)
    for name in (str(shared), "Shared"):
        found = apply_table(session, as_bob, "filename,tag\na.tif,Seen\n", dataset=name)
        assert found.errors == [] and [c.image_id for c in found.changes] in (
            [str(theirs_annotate)],
            [],
        )
    assert "Seen" in _tags(session, theirs_annotate)
    # A dataset bob cannot see is unknown by id and by name.
    hidden = _dataset(session, "Hidden", [], owner_id=alice, group_id=private)
    assert _errors(apply_table(session, as_bob, "id,tag\n", dataset=str(hidden))) == [
        (1, f"dataset: no dataset with id '{hidden}'")
    ]
    assert _errors(apply_table(session, as_bob, "id,tag\n", dataset="Hidden")) == [
        (1, "dataset: no dataset called 'Hidden'")
    ]


def test_work_is_split_in_chunks(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "CHUNK", 2)
    ids = [add_image(session, f"f{n}.tif", source_path=f"/d/f{n}.tif") for n in range(5)]
    apply_table(session, SINGLE_USER, "id,k\n" + "".join(f"{i},old\n" for i in ids))
    rows = [f"{ids[0]},t0,new\n", f"{ids[1]},t1,new\n", "/d/f2.tif,t2,new\n"]
    rows += ["/d/f3.tif,t3,new\n", "f4.tif,t4,new\n"]
    result = apply_table(session, SINGLE_USER, "image,tag,k\n" + "".join(rows))
    assert result.errors == []
    assert [c.row for c in result.changes] == [2, 3, 4, 5, 6]
    for n, image_id in enumerate(ids):
        assert _tags(session, image_id) == [f"t{n}"]
        assert _pairs(session, image_id) == [(None, "k", "new", 1)]
    # Lookups in chunks: every row of five ids, paths and filenames is found.
    names = apply_table(
        session, SINGLE_USER, "filename,k\n" + "".join(f"f{n}.tif,x\n" for n in range(5))
    )
    assert names.errors == [] and len(names.changes) == 5
    paths = apply_table(
        session, SINGLE_USER, "path,k\n" + "".join(f"/d/f{n}.tif,y\n" for n in range(5))
    )
    assert paths.errors == [] and len(paths.changes) == 5
    for image_id in ids:
        assert _pairs(session, image_id) == [(None, "k", "y", 3)]
    # Filenames within a dataset, in chunks: each found once.
    _dataset(session, "All", ids)
    table = "filename,k\n" + "".join(f"f{n}.tif,z\n" for n in range(5))
    in_dataset = apply_table(session, SINGLE_USER, table, dataset="All")
    assert in_dataset.errors == [] and len(in_dataset.changes) == 5


def test_ids_that_are_no_uuid_do_not_hide_the_others(session: Session) -> None:
    ids = [add_image(session, f"f{n}.tif") for n in range(5)]
    bad = [f"not-a-uuid-{n}" for n in range(5)]
    rows = [f"{i},x\n" for i in ids] + [f"{b},x\n" for b in bad]
    result = apply_table(session, SINGLE_USER, "id,tag\n" + "".join(rows))
    assert _errors(result) == [(7 + n, f"no image with id 'not-a-uuid-{n}'") for n in range(5)]


def test_positions_follow_every_namespace(session: Session) -> None:
    a = add_image(session, "a.tif")
    apply_table(session, SINGLE_USER, f"id,x,y\n{a},1,2\n", namespace="other")
    apply_table(session, SINGLE_USER, f"id,z\n{a},3\n")
    assert _pairs(session, a) == [
        ("other", "x", "1", 0),
        ("other", "y", "2", 1),
        (None, "z", "3", 2),
    ]
    # A table with no change for an image writes nothing for it.
    nothing = apply_table(session, SINGLE_USER, f"id,tag,z\n{a},,3\n")
    assert nothing.changes == [] and nothing.rows == 1
