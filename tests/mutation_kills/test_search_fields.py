"""What the search indexes hold for a record (``service/db/search_fields.py``), field by field.

What the search tests through the service leave open: the limits (text length, vendor
value length, nesting depth, list length, key lengths), which values are skipped (booleans,
nested mappings, empty strings, non-dict channels) and how a time without a zone is taken.
Pure functions: no database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zstack_analyzer.service.db.search_fields import (
    MAX_SEARCH_TEXT,
    MAX_VENDOR_VALUE,
    derive_fields,
    derive_record_fields,
    parse_datetime,
    words,
)


def test_words_are_lower_cased_runs_of_letters_and_digits() -> None:
    assert words("Plan-Apo 63x/1.40 Oil_immersion ÄB") == [
        "plan",
        "apo",
        "63x",
        "1",
        "40",
        "oil",
        "immersion",
        "äb",
    ]
    assert words("__ -- //") == []


def test_times_without_a_zone_are_utc_and_others_are_converted() -> None:
    assert parse_datetime("2026-03-04T05:06:07") == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    plus_two = parse_datetime("2026-03-04T05:06:07+02:00")
    assert plus_two == datetime(2026, 3, 4, 3, 6, 7, tzinfo=UTC)
    assert plus_two is not None and plus_two.utcoffset() == timedelta(0)
    assert plus_two.tzinfo is UTC
    for bad in ("", "yesterday", None, 12, datetime(2026, 1, 1, tzinfo=UTC)):
        assert parse_datetime(bad) is None, bad


def test_channels_objective_and_times() -> None:
    metadata = {
        "channels": [
            {"name": " DAPI ", "fluorophore": "Hoechst"},
            "not a channel",
            {"name": "", "fluorophore": 5},
            {"name": "GFP"},
        ],
        "objective": {
            "name": "  Plan-Apochromat 63x ",
            "magnification": 63,
            "immersion": " OIL ",
            "na": 1.4,
            "extra": {"nested": "hidden"},
            "none": None,
        },
        "microscope": {"model": "LSM 980", "serial": 1234},
        "file_format": "CZI",
        "scene_name": "Position 7",
        "scenes": [{"name": "Well A1"}, {"name": 3}, "plain"],
        "acquired_at": "not a time",
        "acquired_at_local": "2026-05-06T07:08:09",
    }
    derived = derive_fields(metadata, "embryo_7.czi")
    assert derived.channels == [(0, "dapi", "hoechst"), (2, None, None), (3, "gfp", None)]
    assert derived.objective == "plan-apochromat 63x"
    assert derived.magnification == 63.0
    assert isinstance(derived.magnification, float)
    assert derived.immersion == "oil"
    assert derived.acquired_at == datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert derived.search_text == (
        "embryo 7 czi dapi hoechst gfp plan apochromat 63x 63 oil 1 4 lsm 980 1234"
        " czi position 7 well a1"
    )
    # The zoned time wins over the local reading.
    both = derive_fields(
        {"acquired_at": "2026-05-06T07:08:09+01:00", "acquired_at_local": "2026-01-01T00:00:00"},
        "x",
    )
    assert both.acquired_at == datetime(2026, 5, 6, 6, 8, 9, tzinfo=UTC)


def test_odd_values_are_skipped_and_keys_are_cut() -> None:
    derived = derive_fields(
        {
            "objective": {"name": "x" * 300, "immersion": "w" * 100},
            "microscope": "not a mapping",
            "channels": None,
            "scenes": None,
            "vendor_metadata": None,
        },
        "f",
    )
    assert derived.objective == "x" * 255
    assert derived.magnification is None
    assert derive_fields({"objective": {"magnification": True}}, "").magnification is None
    assert derived.immersion == "w" * 64
    assert derived.acquired_at is None
    assert derived.channels == []
    assert derived.search_text == "f " + "x" * 300 + " " + "w" * 100
    plain = derive_fields({"objective": {"magnification": "63"}}, "")
    assert plain.magnification is None
    assert plain.objective is None
    assert plain.immersion is None
    assert plain.search_text == "63"  # in the text, not a number
    assert derive_fields({"objective": {"magnification": 1.5}}, "").magnification == 1.5


def test_vendor_values_their_depth_list_and_length_limits() -> None:
    def nested(levels: int, leaf: str) -> object:
        """``leaf`` inside ``levels`` mappings."""
        value: object = leaf
        for level in range(levels):
            value = {f"k{level}": value}
        return value

    vendor = {
        "deep": nested(7, "bottom"),  # a leaf at depth 8 of the vendor mapping: kept
        "deeper": nested(8, "lost"),  # depth 9: cut
        "items": [f"i{n}" for n in range(70)],
        "long": "v" * (MAX_VENDOR_VALUE + 50),
        "number": 42,
        "ratio": 0.5,
        "flag": True,
        "nothing": None,
        "KeyWord": "value",
    }
    text = derive_fields({"vendor_metadata": vendor}, "f").search_text.split()
    assert "bottom" in text
    assert "lost" not in text
    # A list is a level too.
    listed = derive_fields({"vendor_metadata": [nested(7, "kept"), nested(8, "cut")]}, "")
    assert listed.search_text == "kept"
    assert [w for w in text if w.startswith("i") and w[1:].isdigit()] == [
        f"i{n}" for n in range(64)
    ]
    assert "v" * MAX_VENDOR_VALUE in text
    assert "v" * (MAX_VENDOR_VALUE + 1) not in text
    assert "42" in text
    assert text[text.index("42") + 1 : text.index("42") + 3] == ["0", "5"]
    assert "true" not in text
    assert "none" not in text
    assert "keyword" not in text  # keys are not searched
    assert "value" in text


def test_the_text_is_cut_at_its_limit() -> None:
    vendor = {f"k{n}": f"word{n:05d}" for n in range(4000)}
    text = derive_fields({"vendor_metadata": vendor}, "f").search_text
    assert len(text) == MAX_SEARCH_TEXT
    assert text.startswith("f word00000 word00001")


def test_a_stored_record_adds_its_scene_column_to_its_metadata() -> None:
    """The insert hook's and migration 0019's derivation: the scene names come from their column."""
    metadata = {"channels": [{"name": "GFP"}], "scenes": [{"name": "Stale Copy"}]}
    derived = derive_record_fields(metadata, [{"name": "Well A1"}, "plain"], "plate.czi")
    assert derived.search_text == "plate czi gfp well a1"
    assert derived.channels == [(0, "gfp", None)]
    assert metadata["scenes"] == [{"name": "Stale Copy"}]  # the record's JSON is left as it is
    # A record without a metadata row, a scene list or a file name derives to nothing.
    assert derive_record_fields(None, None, None).search_text == ""
    assert derive_record_fields({"channels": [{"name": "DAPI"}]}, None, None).search_text == "dapi"
