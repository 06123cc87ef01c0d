"""Every string a file gives us is capped once, in ImageMetadata, and the cut is reported."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

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

if TYPE_CHECKING:
    from collections.abc import Callable

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


ONE_OVER = "y" * (MAX_TEXT_CHARS + 1)
AT_LIMIT = "z" * MAX_TEXT_CHARS
SCENE = {"index": 0, "size_x": 4, "size_y": 4, "dtype": "uint8"}

#: Each place a file's text can reach, alone: (fields of the record, read the place back).
PLACES: dict[str, tuple[Callable[[str], dict[str, object]], Callable[[ImageMetadata], str]]] = {
    "filename": (lambda s: {"filename": s}, lambda md: md.filename),
    "scene_name": (lambda s: {"scene_name": s}, lambda md: md.scene_name or ""),
    "channel name": (
        lambda s: {"channels": [ChannelInfo(index=0, name=s)]},
        lambda md: md.channels[0].name or "",
    ),
    "channel contrast": (
        lambda s: {"channels": [{"index": 0, "contrast_method": s}]},
        lambda md: md.channels[0].contrast_method or "",
    ),
    "objective immersion": (
        lambda s: {"objective": ObjectiveInfo(immersion=s)},
        lambda md: md.objective.immersion or "" if md.objective else "",
    ),
    "microscope serial": (
        lambda s: {"microscope": {"serial_number": s}},
        lambda md: md.microscope.serial_number or "" if md.microscope else "",
    ),
    "scene name": (
        lambda s: {"scenes": [SceneInfo(**SCENE, name=s)]},  # type: ignore[arg-type]
        lambda md: md.scenes[0].name or "",
    ),
    "scene dimension": (
        lambda s: {"scenes": [SceneInfo(**SCENE, extra_dims={s: 2})]},  # type: ignore[arg-type]
        lambda md: next(iter(md.scenes[0].extra_dims)),
    ),
    "dimension": (lambda s: {"extra_dims": {s: 3}}, lambda md: next(iter(md.extra_dims))),
    "provenance key": (lambda s: {"provenance": {s: "file"}}, lambda md: next(iter(md.provenance))),
    "provenance value": (
        lambda s: {"provenance": {"size_x": s}},
        lambda md: md.provenance["size_x"],
    ),
    "warning": (lambda s: {"warnings": [s]}, lambda md: md.warnings[0]),
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_one_character_over_is_cut_wherever_it_is(place: str) -> None:
    """Each place alone, one character over the limit: cut and noted (the quick check must see it)."""
    build, read = PLACES[place]
    md = _metadata(**build(ONE_OVER))
    assert len(read(md)) == MAX_TEXT_CHARS
    assert read(md).endswith(TRUNCATION_MARK)
    assert any("truncated" in w for w in md.warnings)


@pytest.mark.parametrize("place", sorted(PLACES))
def test_text_of_the_limit_is_kept_whole_wherever_it_is(place: str) -> None:
    build, read = PLACES[place]
    md = _metadata(**build(AT_LIMIT))
    assert read(md) == AT_LIMIT
    assert not any("truncated" in w for w in md.warnings)
