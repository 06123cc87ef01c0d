"""``zstack export DATASET OUT/``: a dataset as OME-Zarr images, annotations and an RO-Crate.

What ``OUT/`` holds, ready for a repository submission:

- ``images/<name>.ome.zarr``: each image through the converter (``zarr.writer.convert``);
- ``annotations/<name>.json``: its tags, key-value pairs, comments, datasets
  and attachment list (``dataset.json``: the dataset's own);
- ``rois/<name>.geojson``: its ROIs, when the ROI room provides them
  (:func:`image_rois_geojson`, the hook);
- ``ro-crate-metadata.json``: an RO-Crate (ro-crate-py) describing every file,
  the instruments (microscope, objective) and the annotations.

Why in the service package: it reads the records as the server stores them;
the CLI only parses options and prints progress.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zstack_analyzer.service.annotations.access import aware, load_container
from zstack_analyzer.service.annotations.attachments import target_attachments
from zstack_analyzer.service.annotations.comments import target_comments
from zstack_analyzer.service.annotations.keyvalues import target_key_values
from zstack_analyzer.service.annotations.models import Dataset, DatasetImage
from zstack_analyzer.service.annotations.tags import target_tags
from zstack_analyzer.service.auth.permissions import SINGLE_USER, Action, Principal
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import BadParameterError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sqlalchemy.orm import Session

    from zstack_analyzer.service.annotations.access import Target
    from zstack_analyzer.service.db.session import Database
    from zstack_analyzer.storage.base import ObjectStorage

__all__ = ["ExportSummary", "export_dataset", "find_dataset", "image_rois_geojson"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportSummary:
    """What an export wrote, and the images it could not."""

    dataset: str
    images: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def image_rois_geojson(session: Session, image_id: str) -> dict[str, Any] | None:
    """The image's ROIs as a GeoJSON FeatureCollection, or ``None`` when it has none.

    ``None`` rather than an empty collection so that an export writes a ``rois/`` file only
    for images that have ROIs.
    """
    from zstack_analyzer.service.annotations.rois import image_rois_geojson as collection

    result = collection(session, image_id)
    return result if result.get("features") else None


def find_dataset(session: Session, principal: Principal, ref: str) -> Dataset:
    """The dataset named ``ref`` (an id, or a name only one visible dataset has)."""
    from zstack_analyzer.service.annotations.containers import visible_containers

    text = ref.replace("\x00", "").strip()
    if text.isascii() and text.isdigit():
        row = load_container(session, principal, "dataset", text, Action.VIEW)
        assert isinstance(row, Dataset)  # noqa: S101  (kind "dataset")
        return row
    found = list(
        session.scalars(
            select(Dataset).where(Dataset.name == text, visible_containers(principal, "dataset"))
        )
    )
    if len(found) != 1:
        what = "no dataset" if not found else f"{len(found)} datasets"
        msg = f"{what} called {text[:100]!r}" + ("; give its id" if found else "")
        raise BadParameterError(msg)
    return found[0]


def _slug(filename: str, image_id: str) -> str:
    stem = filename
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return f"{_UNSAFE.sub('_', stem)[:80] or 'image'}-{image_id[:8]}"


def _annotations(session: Session, target: Target) -> dict[str, Any]:
    return {
        "tags": [t.name for t in target_tags(session, target)],
        "key_values": [kv.model_dump() for kv in target_key_values(session, target)],
        "comments": [c.model_dump(mode="json") for c in target_comments(session, target)],
        "attachments": [a.model_dump(mode="json") for a in target_attachments(session, target)],
    }


def _instrument(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The microscope and objective of an image, as an RO-Crate contextual entity's properties."""
    microscope = metadata.get("microscope") or {}
    objective = metadata.get("objective") or {}
    parts = [microscope.get("manufacturer"), microscope.get("model"), microscope.get("name")]
    name = " ".join(str(p) for p in parts if p) or None
    if not name and not objective:
        return None
    props: dict[str, Any] = {"@type": "Thing", "name": name or "microscope"}
    if microscope.get("serial_number"):
        props["serialNumber"] = str(microscope["serial_number"])
    if objective:
        described = {k: v for k, v in objective.items() if v is not None}
        if described:
            props["description"] = "objective: " + ", ".join(
                f"{k}={v}" for k, v in described.items()
            )
    return props


def export_dataset(
    database: Database,
    storage: ObjectStorage,
    ref: str,
    out: Path,
    *,
    principal: Principal = SINGLE_USER,
    ngff: str = "0.4",
    progress: Callable[[str], None] | None = None,
) -> ExportSummary:
    """Write dataset ``ref`` to ``out`` (a new or empty folder); see the module docstring."""
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    from zstack_analyzer.service.annotations.access import Target
    from zstack_analyzer.service.images_service import readable_source
    from zstack_analyzer.zarr.writer import convert

    if out.exists() and any(out.iterdir()):
        msg = f"{out}: exists and is not empty"
        raise BadParameterError(msg)
    say = progress or (lambda _line: None)
    with database.sessions() as session:
        dataset = find_dataset(session, principal, ref)
        images = list(
            session.scalars(
                select(Image)
                .join(DatasetImage, DatasetImage.image_id == Image.id)
                .where(DatasetImage.dataset_id == dataset.id)
                .order_by(Image.filename, Image.id)
            )
        )
        summary = ExportSummary(dataset=dataset.name)
        (out / "images").mkdir(parents=True, exist_ok=True)
        crate = ROCrate()
        crate.name = dataset.name
        crate.description = (
            dataset.description or f"Dataset {dataset.name} exported by zstack-analyzer"
        )
        crate.root_dataset["datePublished"] = aware(dataset.updated_at).date().isoformat()
        dataset_notes = {"dataset": {"id": dataset.id, "name": dataset.name}}
        dataset_notes.update(_annotations(session, Target("dataset", dataset)))
        crate.add_file(
            io.StringIO(json.dumps(dataset_notes, indent=2)),
            dest_path="dataset.json",
            properties={"name": "Annotations of the dataset", "encodingFormat": "application/json"},
        )
        instruments: dict[str, Any] = {}
        for image in images:
            image_id = str(image.id)
            slug = _slug(image.filename, image_id)
            zarr_name = f"images/{slug}.ome.zarr"
            if not allows_view(principal, image):
                continue  # not written, and not named in the progress lines either
            say(f"{image.filename} -> {zarr_name}")
            try:
                source = readable_source(image, storage)
                convert(source, out / zarr_name, ngff=ngff)  # type: ignore[arg-type]
            except Exception as exc:  # one unreadable image does not stop the export
                summary.failed.append((image.filename, f"{type(exc).__name__}: {exc}"))
                continue
            summary.images.append(zarr_name)
            notes = {
                "image": {
                    "id": image_id,
                    "filename": image.filename,
                    "format": image.format,
                    "sha256": image.sha256,
                },
                **_annotations(session, Target("image", image)),
            }
            notes_name = f"annotations/{slug}.json"
            notes_entity = crate.add_file(
                io.StringIO(json.dumps(notes, indent=2)),
                dest_path=notes_name,
                properties={
                    "name": f"Annotations of {image.filename}",
                    "encodingFormat": "application/json",
                    "about": {"@id": zarr_name + "/"},
                },
            )
            props: dict[str, Any] = {
                "name": image.filename,
                "encodingFormat": f"https://ngff.openmicroscopy.org/{ngff}",
                "identifier": image_id,
                "sha256": image.sha256,
                "keywords": notes["tags"],
                "subjectOf": {"@id": notes_entity.id},
            }
            instrument = _instrument(image.image_metadata)
            if instrument is not None:
                key = f"#instrument-{_UNSAFE.sub('-', instrument['name']).strip('-').lower()}"
                if key not in instruments:
                    instruments[key] = crate.add(ContextEntity(crate, key, properties=instrument))
                props["instrument"] = {"@id": key}
            rois = image_rois_geojson(session, image_id)
            if rois is not None:
                rois_name = f"rois/{slug}.geojson"
                crate.add_file(
                    io.StringIO(json.dumps(rois)),
                    dest_path=rois_name,
                    properties={
                        "name": f"ROIs of {image.filename}",
                        "encodingFormat": "application/geo+json",
                        "about": {"@id": zarr_name + "/"},
                    },
                )
            crate.add_dataset(dest_path=zarr_name, properties=props)
    crate.write(out)  # the JSON files (from memory) and ro-crate-metadata.json
    return summary


def allows_view(principal: Principal, image: Image) -> bool:
    """Whether ``principal`` may see ``image`` (an export never includes what the caller cannot)."""
    from zstack_analyzer.service.auth.permissions import can_view

    return can_view(principal, image)
