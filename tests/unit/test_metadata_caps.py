"""Every string a file gives us is capped once, in ImageMetadata, and the cut is reported."""

from __future__ import annotations

import json

from zstack_analyzer.metadata import (
    MAX_TEXT_CHARS,
    MAX_WARNINGS,
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    ObjectiveInfo,
    SceneInfo,
)
from zstack_analyzer.vendor import TRUNCATION_MARK

LONG = "x" * 5_000_000


def _metadata(**fields: object) -> ImageMetadata:
    base: dict[str, object] = {
        "filename": "a.tif",
        "file_format": "TIFF",
        "size_x": 4,
        "size_y": 4,
        "dtype": "uint8",
        "bit_depth": 8,
    }
    return ImageMetadata(**(base | fields))


def test_every_text_field_is_capped_and_noted() -> None:
    md = _metadata(
        filename=LONG,
        scene_name=LONG,
        channels=[ChannelInfo(index=0, name=LONG, fluorophore=LONG)],
        objective=ObjectiveInfo(name=LONG),
        microscope=MicroscopeInfo(model=LONG, software=LONG),
        scenes=[SceneInfo(index=0, name=LONG, size_x=4, size_y=4, dtype="uint8")],
        provenance={"physical_size.x_um": LONG},
        vendor_metadata={"Description": LONG, "nested": {"more": [LONG] * 50}},
    )
    text = json.dumps(md.model_dump(mode="json"))
    assert len(text) < 100 * 1024
    for value in (
        md.filename,
        md.scene_name,
        md.channels[0].name,
        md.channels[0].fluorophore,
        md.objective.name if md.objective else None,
        md.microscope.model if md.microscope else None,
        md.scenes[0].name,
        md.provenance["physical_size.x_um"],
    ):
        assert value is not None
        assert len(value) == MAX_TEXT_CHARS
        assert value.endswith(TRUNCATION_MARK)
    [note] = [w for w in md.warnings if "truncated" in w]
    assert "scene_name" in note and "channels[0].name" in note
    assert len(json.dumps(md.vendor_metadata)) <= 64 * 1024


def test_assignment_is_capped_too_and_short_text_untouched() -> None:
    md = _metadata(scene_name="DAPI stack")
    assert md.scene_name == "DAPI stack"
    assert md.warnings == []
    md.scene_name = LONG
    assert len(md.scene_name) == MAX_TEXT_CHARS
    assert any("scene_name" in w for w in md.warnings)


def test_warnings_are_bounded() -> None:
    md = _metadata(warnings=[f"warning {i}" for i in range(10_000)])
    assert len(md.warnings) == MAX_WARNINGS
    assert md.warnings[-1].startswith("... and ")
