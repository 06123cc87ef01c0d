"""``annotations/export.py``: finding the dataset, file names, instruments and the export itself.

Found by mutation testing: the CLI test exports one plate through ``zstack export``; it
did not check a dataset named by digits or by a name two datasets share (and the
messages), names made safe, the instrument entity from the metadata, an image that
cannot be read (the export goes on, the failure is told), the crate's description,
date and per-image properties, or that an export for a caller leaves out, and does not
name, the images the caller cannot see.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from fastapi import HTTPException

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_group, add_image, add_user, principal_of
from tests.service.conftest import write_ome_tiff
from zstack_analyzer.roi.shapes import Shape
from zstack_analyzer.service.annotations import export
from zstack_analyzer.service.annotations.access import Target
from zstack_analyzer.service.annotations.comments import add_comment
from zstack_analyzer.service.annotations.keyvalues import replace_key_values
from zstack_analyzer.service.annotations.models import Attachment, Dataset, DatasetImage
from zstack_analyzer.service.annotations.rois import create_roi
from zstack_analyzer.service.annotations.schemas import KeyValueItem
from zstack_analyzer.service.annotations.tags import replace_tags
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import SINGLE_USER
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import BadParameterError

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy.orm import Session


def _dataset(session: Session, name: str, **columns: object) -> int:
    row = Dataset(name=name, description="", **columns)
    session.add(row)
    session.commit()
    return row.id


# ---------------------------------------------------------------------------- find


def test_find_dataset_by_id_or_a_unique_visible_name(session: Session) -> None:
    shared = add_group(session, "shared", Permission.READ_ONLY)
    private = add_group(session, "private", Permission.PRIVATE)
    alice = add_user(session, "alice", {shared: False, private: False})
    bob = add_user(session, "bob", {shared: False, private: False})
    as_bob = principal_of(session, bob)
    plate = _dataset(session, "Plate", owner_id=alice, group_id=shared)
    twin = _dataset(session, "Twin", owner_id=alice, group_id=shared)
    _dataset(session, "Twin", owner_id=alice, group_id=shared)
    hidden = _dataset(session, "Hidden", owner_id=alice, group_id=private)
    _dataset(session, "Twin", owner_id=alice, group_id=private)
    digits = _dataset(session, "\u0661", owner_id=alice, group_id=shared)
    assert export.find_dataset(session, as_bob, " Plate\x00 ").id == plate
    assert export.find_dataset(session, as_bob, f" {twin} ").id == twin
    assert export.find_dataset(session, as_bob, "\u0661").id == digits
    with pytest.raises(BadParameterError) as error:
        export.find_dataset(session, as_bob, "Twin")
    assert str(error.value) == "2 datasets called 'Twin'; give its id"
    with pytest.raises(BadParameterError) as error:
        export.find_dataset(session, SINGLE_USER, "Twin")
    assert str(error.value) == "3 datasets called 'Twin'; give its id"
    with pytest.raises(BadParameterError) as error:
        export.find_dataset(session, as_bob, "Hidden")
    assert str(error.value) == "no dataset called 'Hidden'"
    with pytest.raises(BadParameterError) as error:
        export.find_dataset(session, as_bob, "plate " + "x" * 200)
    assert str(error.value) == f"no dataset called {('plate ' + 'x' * 200)[:100]!r}"
    with pytest.raises(HTTPException) as caught:
        export.find_dataset(session, as_bob, str(hidden))
    assert (caught.value.status_code, caught.value.detail) == (
        404,
        f"no dataset with id '{hidden}'",
    )
    assert export.find_dataset(session, SINGLE_USER, "Hidden").id == hidden


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("filename", "slug"),
    [
        ("cells.ome.tiff", "cells"),
        ("Cells.OME.TIF", "Cells"),
        ("plate.ome.zarr", "plate"),
        ("a.b.czi", "a.b"),
        ("noext", "noext"),
        ("we ird/näme!.lif", "we_ird_n_me_"),
        (".tif", "image"),
        ("x" * 100 + ".nd2", "x" * 80),
    ],
)
def test_slug(filename: str, slug: str) -> None:
    image_id = "0123456789abcdef"
    assert export._slug(filename, image_id) == f"{slug}-01234567"


def test_instrument() -> None:
    assert export._instrument({}) is None
    assert export._instrument({"microscope": {}, "objective": {}}) is None
    assert export._instrument(
        {"microscope": {"manufacturer": "Zeiss", "model": "LSM 980", "name": None}}
    ) == {"@type": "Thing", "name": "Zeiss LSM 980"}
    assert export._instrument(
        {
            "microscope": {"name": "scope", "serial_number": 1234},
            "objective": {"magnification": 63, "immersion": "oil", "na": None},
        }
    ) == {
        "@type": "Thing",
        "name": "scope",
        "serialNumber": "1234",
        "description": "objective: magnification=63, immersion=oil",
    }
    assert export._instrument({"objective": {"na": None}}) == {
        "@type": "Thing",
        "name": "microscope",
    }
    assert export._instrument({"microscope": {"serial_number": ""}, "objective": {"na": 1.4}}) == {
        "@type": "Thing",
        "name": "microscope",
        "description": "objective: na=1.4",
    }


# ---------------------------------------------------------------------------- export


@pytest.fixture
def stored(session: Session, tmp_path: Path) -> Iterator[tuple[object, object, dict[str, object]]]:
    """A dataset of four images: readable, unreadable, another's hidden one, one with ROIs."""
    from zstack_analyzer.service.db.session import Database, make_engine
    from zstack_analyzer.storage.local import LocalStorage

    group = add_group(session, "lab", Permission.READ_ANNOTATE)
    private = add_group(session, "private", Permission.PRIVATE)
    alice = add_user(session, "alice", {group: False, private: False})
    bob = add_user(session, "bob", {group: False, private: False})
    storage = LocalStorage(tmp_path / "images", tmp_path / "tmp")
    storage.ensure_dirs()
    stack = write_ome_tiff(tmp_path / "stack.ome.tif", (1, 2, 8, 10))
    metadata = {"microscope": {"manufacturer": "(Zeiss)", "model": "LSM 980 X!"}, "objective": {}}
    ids = {}
    # Ids in the reverse order of the names: the export goes by name.
    for name, owner, where, readable, first in (
        ("b cells.ome.tif", bob, group, True, "e"),
        ("a broken.ome.tif", bob, group, False, "f"),
        ("c secret.ome.tif", alice, private, True, "d"),
        ("d roi.ome.tif", bob, group, True, "c"),
    ):
        image_id = add_image(
            session,
            name,
            id=uuid.UUID(first * 8 + uuid.uuid4().hex[8:]),
            owner_id=owner,
            group_id=where,
            width=10,
            height=8,
            depth=2,
            channels=1,
            image_metadata=metadata,
            sha256=name[0] * 64,
        )
        row = session.get(Image, image_id)
        assert row is not None
        if readable:
            shutil.copyfile(stack, storage.path(row.stored_name))
        ids[name[0]] = image_id
    dataset = Dataset(name="Plate", description="", owner_id=bob, group_id=group)
    session.add(dataset)
    session.flush()
    session.add_all(DatasetImage(dataset_id=dataset.id, image_id=i) for i in ids.values())
    session.commit()
    as_bob = principal_of(session, bob)
    cells = session.get(Image, ids["b"])
    replace_tags(session, as_bob, Target("image", cells), ["mitosis", "DAPI"])
    replace_key_values(session, as_bob, Target("image", cells), [KeyValueItem(key="k", value="v")])
    add_comment(session, as_bob, Target("dataset", dataset), "about the plate")
    session.add(
        Attachment(
            dataset_id=dataset.id,
            filename="protocol.pdf",
            stored_name=uuid.uuid4().hex,
            media_type="application/pdf",
            size_bytes=3,
            sha256="e" * 64,
            owner_id=bob,
            group_id=group,
        )
    )
    session.commit()
    replace_tags(session, as_bob, Target("dataset", dataset), ["screen"])
    square = Shape("rectangle", {"x": 1.0, "y": 1.0, "width": 3.0, "height": 2.0}, z=0, t=0)
    create_roi(session, session.get(Image, ids["d"]), as_bob, name="cell", scene=0, shapes=[square])
    url = str(session.get_bind().url)  # type: ignore[union-attr]
    database = Database(make_engine(url))
    info = {"ids": ids, "dataset": dataset.id, "bob": as_bob}
    yield database, storage, info
    database.engine.dispose()


def test_export_for_a_caller(
    stored: tuple[object, object, dict[str, object]], tmp_path: Path
) -> None:
    from rocrate.rocrate import ROCrate

    database, storage, info = stored
    ids: dict[str, uuid.UUID] = info["ids"]  # type: ignore[assignment]
    out = tmp_path / "out"
    said: list[str] = []
    summary = export.export_dataset(
        database,  # type: ignore[arg-type]
        storage,  # type: ignore[arg-type]
        "Plate",
        out,
        principal=info["bob"],  # type: ignore[arg-type]
        progress=said.append,
    )
    cells = f"images/b_cells-{str(ids['b'])[:8]}.ome.zarr"
    roi = f"images/d_roi-{str(ids['d'])[:8]}.ome.zarr"
    assert summary.dataset == "Plate"
    assert summary.images == [cells, roi]
    [(name, reason)] = summary.failed
    assert name == "a broken.ome.tif" and reason.startswith("UnsupportedFormatError: ")
    # Nothing of the image bob cannot see: not written, not named.
    assert not any("secret" in line for line in said)
    assert said == [
        f"a broken.ome.tif -> images/a_broken-{str(ids['a'])[:8]}.ome.zarr",
        f"b cells.ome.tif -> {cells}",
        f"d roi.ome.tif -> {roi}",
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "annotations",
        "dataset.json",
        "images",
        "ro-crate-metadata.json",
        "rois",
    ]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        [cells.split("/")[1], roi.split("/")[1]]
    )
    crate = ROCrate(out)
    assert crate.name == "Plate"
    assert crate.description == "Dataset Plate exported by zstack-analyzer"
    assert len(crate.root_dataset["datePublished"]) == 10
    text = (out / "dataset.json").read_text("utf-8")
    assert text.startswith('{\n  "dataset": {\n    "id": ')  # indented by 2
    notes = json.loads(text)
    described = crate.get("dataset.json")
    assert described["name"] == "Annotations of the dataset"
    assert described["encodingFormat"] == "application/json"
    assert notes["dataset"] == {"id": info["dataset"], "name": "Plate"}
    assert notes["tags"] == ["screen"] and notes["key_values"] == []
    assert [c["text"] for c in notes["comments"]] == ["about the plate"]
    [attached] = notes["attachments"]
    assert (attached["filename"], attached["size_bytes"], attached["owner"]) == (
        "protocol.pdf",
        3,
        "bob",
    )
    assert attached["created_at"].startswith(str(datetime.now(UTC).year))
    entity = crate.get(cells + "/")
    assert entity["name"] == "b cells.ome.tif"
    assert entity["encodingFormat"] == "https://ngff.openmicroscopy.org/0.4"
    assert entity["identifier"] == str(ids["b"]) and entity["sha256"] == "b" * 64
    assert entity["keywords"] == ["DAPI", "mitosis"]
    assert entity["instrument"].id == "#instrument-zeiss-lsm-980-x"
    assert crate.get("#instrument-zeiss-lsm-980-x")["name"] == "(Zeiss) LSM 980 X!"
    text = (out / entity["subjectOf"].id).read_text("utf-8")
    assert text.startswith('{\n  "image": {\n    "id": ')
    image_notes = json.loads(text)
    assert (out / cells / ".zattrs").is_file() and not (out / cells / "zarr.json").exists()
    assert image_notes["image"] == {
        "id": str(ids["b"]),
        "filename": "b cells.ome.tif",
        "format": "OME-TIFF",
        "sha256": "b" * 64,
    }
    assert image_notes["key_values"] == [{"key": "k", "value": "v", "namespace": None}]
    notes_entity = crate.get(entity["subjectOf"].id)
    assert notes_entity["about"].id == cells + "/"
    assert notes_entity["name"] == "Annotations of b cells.ome.tif"
    assert notes_entity["encodingFormat"] == "application/json"
    rois = [e for e in crate.data_entities if e.id.startswith("rois/")]
    assert [e.id for e in rois] == [f"rois/d_roi-{str(ids['d'])[:8]}.geojson"]
    assert rois[0]["about"].id == roi + "/" and rois[0]["name"] == "ROIs of d roi.ome.tif"
    assert rois[0]["encodingFormat"] == "application/geo+json"
    shapes = json.loads((out / rois[0].id).read_text("utf-8"))
    assert [f["properties"]["name"] for f in shapes["features"]] == ["cell"]
    with database.sessions() as db:  # type: ignore[attr-defined]
        assert export.image_rois_geojson(db, str(ids["b"])) is None
    with pytest.raises(BadParameterError) as error:
        export.export_dataset(database, storage, "Plate", out)  # type: ignore[arg-type]
    assert str(error.value) == f"{out}: exists and is not empty"


def test_export_as_the_single_user_with_a_description(
    stored: tuple[object, object, dict[str, object]], tmp_path: Path
) -> None:
    database, storage, info = stored
    with database.sessions() as db:  # type: ignore[attr-defined]
        db.get(Dataset, info["dataset"]).description = "A plate."
        db.commit()
    out = tmp_path / "empty"
    out.mkdir()
    summary = export.export_dataset(database, storage, str(info["dataset"]), out, ngff="0.5")  # type: ignore[arg-type]
    assert len(summary.images) == 3 and len(summary.failed) == 1
    from rocrate.rocrate import ROCrate

    crate = ROCrate(out)
    assert crate.description == "A plate."
    entity = crate.get(summary.images[0] + "/")
    assert entity["encodingFormat"] == "https://ngff.openmicroscopy.org/0.5"
    assert (out / summary.images[0] / "zarr.json").is_file()
