"""The reader contract: what every reader must do, checked the same way for each."""

from __future__ import annotations

import gc
import pickle
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pytest

from zstack_analyzer import ImageMetadata, SceneNotFoundError
from zstack_analyzer.axes import CANONICAL
from zstack_analyzer.registry import detect_reader

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.readers._base import ImageReader


def assert_reader_contract(
    reader_cls: type[ImageReader], path: Path, expected: np.ndarray | None = None
) -> None:
    """Check one file against the reader protocol.

    Planes and regions come back writable (the caller owns them), as from every reader.

    ``expected`` is the canonical T,C,Z,Y,X(,S) array of scene 0 when the test knows it.
    """
    assert detect_reader(path) is reader_cls
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with reader_cls(path) as reader:
            scenes = reader.scenes()
            assert len(scenes) >= 1
            for info in scenes:
                md = reader.metadata(info.index)
                assert isinstance(md, ImageMetadata)
                assert md.shape == info.shape
                assert md.file_format == reader_cls.format_name
                assert md.scenes == list(scenes)
                assert len(md.channels) == md.size_c
                assert md.bit_depth == np.dtype(md.dtype).itemsize * 8
                lazy = reader.to_dask(info.index)
                assert lazy.shape == info.shape
                assert lazy.dtype == np.dtype(md.dtype)
                assert lazy.ndim == len(CANONICAL) + (1 if md.samples_per_pixel > 1 else 0)
                # one chunk per plane (or smaller)
                assert all(
                    len(c) == n for c, n in zip(lazy.chunks[:3], lazy.shape[:3], strict=True)
                )
            first = scenes[0]
            plane = reader.read_plane(0, 0, 0, 0)
            assert plane.shape == first.shape[3:]
            # The caller owns what it is given: `plane -= background` must work on every reader.
            assert plane.flags.writeable, f"{reader_cls.__name__}.read_plane gave a read-only array"
            corner = reader.read_region(0, 0, 0, 0, (0, first.size_y), (0, first.size_x))
            assert corner.flags.writeable, (
                f"{reader_cls.__name__}.read_region gave a read-only array"
            )
            lazy0 = reader.to_dask(0)
            last = (first.size_t - 1, first.size_c - 1, first.size_z - 1)
            np.testing.assert_array_equal(reader.read_plane(0, *last), np.asarray(lazy0[last]))
            if expected is not None:
                np.testing.assert_array_equal(np.asarray(lazy0.compute()), expected)
                np.testing.assert_array_equal(plane, expected[0, 0, 0])
            with pytest.raises(SceneNotFoundError):
                reader.read_plane(0, first.size_t, 0, 0)
            with pytest.raises(SceneNotFoundError):
                reader.metadata(len(scenes))
            clone = pickle.loads(pickle.dumps(reader))
            try:
                np.testing.assert_array_equal(clone.read_plane(0, 0, 0, 0), plane)
            finally:
                clone.close()
            raw = reader.raw_metadata()
            assert isinstance(raw, Mapping), f"raw_metadata() gave {type(raw).__name__}"
            assert len(raw) > 0, "raw_metadata() is empty"
        assert reader.closed
        del reader, lazy0
        gc.collect()
