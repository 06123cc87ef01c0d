"""The JSON shortcut of the vendor budget never calls a too-big block small.

Why: ``ImageMetadata`` skips the per-value walk :func:`_vendor_too_big` when
:func:`_vendor_json_small` says the block is certainly within its budget
(issue 22: the walk cost as much as the record's validation). A wrong
"small" would let a block past its cap, so the shortcut is run against the
walk on boundary values and random nestings.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zstack_analyzer.metadata import ImageMetadata, _vendor_json_small, _vendor_too_big
from zstack_analyzer.vendor import VENDOR_MAX_BYTES


class Colour(enum.StrEnum):
    RED = "red"


class Opaque:
    """A leaf JSON cannot hold: the shortcut must not answer."""


@pytest.mark.parametrize(
    ("value", "budget"),
    [
        ({"a": "x" * 4094}, VENDOR_MAX_BYTES),
        ({"a": "x" * 4097}, VENDOR_MAX_BYTES),
        ({"a": "\0" * 1000}, 1000),
        ({"a": '"' * 3000}, VENDOR_MAX_BYTES),
        ([0] * 2000, 8 * 2000 - 1),
        ({1: None, 2: True, 3: 0.5}, 47),
        ({"a": Opaque()}, VENDOR_MAX_BYTES),
        ({"when": datetime(2020, 1, 1), "c": Colour.RED, "b": b"raw"}, 23),
        ([], 0),
    ],
)
def test_small_only_when_the_walk_says_so(value: Any, budget: int) -> None:
    if _vendor_json_small(value, budget):
        assert not _vendor_too_big(value, budget)


def test_a_typical_excerpt_takes_the_shortcut() -> None:
    vendor = {"pixel_type": "Gray16", "Channels": [{"@Name": "DAPI"}], "Scaling (m)": {"X": "1e-7"}}
    assert _vendor_json_small(vendor, VENDOR_MAX_BYTES)


def test_a_block_over_budget_is_still_capped() -> None:
    md = ImageMetadata(
        filename="a.czi",
        file_format="CZI",
        size_x=1,
        size_y=1,
        dtype="uint8",
        bit_depth=8,
        vendor_metadata={f"k{i}": "v" * 100 for i in range(2000)},
    )
    assert any("vendor_metadata" in w for w in md.warnings)


LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["x" * 4096, "x" * 4097, '"' * 900, "\\" * 700, Colour.RED]),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=6).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=6),
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES, budget=st.integers(min_value=0, max_value=40_000))
def test_random_values(value: Any, budget: int) -> None:
    if _vendor_json_small(value, budget):
        assert not _vendor_too_big(value, budget)
