"""The picture routes' parameters and index checks (service/routes/render.py), called directly.

Found by mutation testing: the route tests send one bad value per parameter and
check the 422's code, not its detail; the bounds of every index (0 and size - 1
accepted, -1 and size refused), the range in the message, the defaults of sizes a
stored scene does not list, the cap of composited channels that colours and
windows are counted against, and the parsing of each list parameter were not
pinned one by one.
"""

from __future__ import annotations

from typing import Any

import pytest

from zstack_analyzer.errors import SceneNotFoundError
from zstack_analyzer.service.config import Settings
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import BadParameterError
from zstack_analyzer.service.routes.render import (
    RenderParams,
    _check,
    _etag_headers,
    _parse_colors,
    _parse_ints,
    _parse_windows,
)

SIZES = {"size_t": 2, "size_c": 3, "size_z": 4, "size_y": 5, "size_x": 6}


def _image(scenes: list[dict[str, Any]] | None = None, **columns: Any) -> Image:
    return Image(filename="f.tif", scenes=[SIZES] if scenes is None else scenes, **columns)


def _params(**values: Any) -> RenderParams:
    return RenderParams(**values)


def _refused(image: Image, params: RenderParams, **indices: int | None) -> str:
    with pytest.raises(SceneNotFoundError) as caught:
        _check(image, params, **indices)
    return str(caught.value)


def test_parse_ints() -> None:
    assert _parse_ints(None, "channels") is None
    assert _parse_ints("  ", "channels") is None
    assert _parse_ints("1, 2,-3", "channels") == (1, 2, -3)
    with pytest.raises(BadParameterError) as caught:
        _parse_ints("1;2", "channels")
    assert str(caught.value) == "channels: expected comma-separated integers, got '1;2'"
    with pytest.raises(BadParameterError) as caught:
        _parse_ints("x" * 100, "channels")
    assert str(caught.value) == f"channels: expected comma-separated integers, got {'x' * 64!r}"


def test_parse_colors() -> None:
    assert _parse_colors(None) is None
    assert _parse_colors(" ") is None
    assert _parse_colors(" #00FF00 ,ff00Ff") == ("00ff00", "ff00ff")
    for bad in ("X00ff00", "00ff00 ff00ff", "00ff0"):
        with pytest.raises(BadParameterError) as caught:
            _parse_colors(bad)
        expected = f"colors: expected RRGGBB hex colours separated by commas, got {bad!r}"
        assert str(caught.value) == expected
    with pytest.raises(BadParameterError) as caught:
        _parse_colors("g" * 100)
    assert str(caught.value).endswith(f"got {'g' * 64!r}")


def test_parse_windows() -> None:
    assert _parse_windows(None) is None
    assert _parse_windows("") is None
    assert _parse_windows("100:4000, 0.5:1e3") == ((100.0, 4000.0), (0.5, 1000.0))
    for bad in ("5:5", "5:3", "a:b", "5", "1:2:3"):
        with pytest.raises(BadParameterError) as caught:
            _parse_windows(f"0:1,{bad}")
        assert str(caught.value) == (
            f"windows: expected low:high pairs with low < high, got {bad!r}"
        )
    with pytest.raises(BadParameterError) as caught:
        _parse_windows("9" * 40 + ":1")
    assert str(caught.value).endswith(f"got {('9' * 40 + ':1')[:32]!r}")


def test_render_params_keep_every_value() -> None:
    params = RenderParams(
        scene=1,
        t=2,
        channels="0,2",
        colors="ff0000,00ff00",
        windows="0:1,2:3",
        gamma=2,
        format="jpeg",
    )
    assert (params.scene, params.t, params.channels) == (1, 2, (0, 2))
    assert params.colors == ("ff0000", "00ff00")
    assert params.windows == ((0.0, 1.0), (2.0, 3.0))
    assert params.gamma == 2.0 and isinstance(params.gamma, float)
    assert params.image_format == "jpeg"
    default = RenderParams()
    assert (default.scene, default.t, default.channels, default.colors, default.windows) == (
        0,
        0,
        None,
        None,
        None,
    )
    assert (default.gamma, default.image_format) == (1.0, "png")
    with pytest.raises(BadParameterError, match=r"^channels: "):
        RenderParams(channels="a")


def test_check_accepts_the_bounds_and_names_the_range() -> None:
    image = _image()
    _check(image, _params(t=1, channels="0,2"), z=3, y=4, x=5)
    _check(image, _params(t=0, channels="0"), z=0, y=0, x=0)
    _check(image, _params(), z=None)
    assert _refused(image, _params(t=2)) == "f.tif: timepoint t 2 is out of range (0..1)"
    assert _refused(image, _params(t=-1)) == "f.tif: timepoint t -1 is out of range (0..1)"
    assert _refused(image, _params(), z=4) == "f.tif: z 4 is out of range (0..3)"
    assert _refused(image, _params(), z=-1) == "f.tif: z -1 is out of range (0..3)"
    assert _refused(image, _params(), y=5) == "f.tif: y 5 is out of range (0..4)"
    assert _refused(image, _params(), x=6) == "f.tif: x 6 is out of range (0..5)"
    assert _refused(image, _params(channels="3")) == "f.tif: channel 3 is out of range (0..2)"
    assert _refused(image, _params(channels="-1")) == "f.tif: channel -1 is out of range (0..2)"


def test_check_scenes() -> None:
    assert _refused(_image(), _params(scene=1)) == "f.tif: scene 1 is out of range (0..0)"
    three = _image([SIZES, SIZES, SIZES])
    _check(three, _params(scene=2))
    assert _refused(three, _params(scene=3)) == "f.tif: scene 3 is out of range (0..2)"
    assert _refused(three, _params(scene=-1)) == "f.tif: scene -1 is out of range (0..2)"
    none = _image([], timepoints=2, channels=1, depth=3, height=4, width=5)
    _check(none, _params(t=1), z=2)  # scene 0 without scenes: the summary columns
    assert _refused(none, _params(scene=1)) == "f.tif: scene 1 is out of range (0..0)"


def test_check_sizes_a_scene_does_not_list_are_one() -> None:
    image = _image([{"size_x": 6}])
    _check(image, _params(channels="0"), z=0, y=0, x=5)
    assert _refused(image, _params(t=1)) == "f.tif: timepoint t 1 is out of range (0..0)"
    assert _refused(image, _params(), z=1) == "f.tif: z 1 is out of range (0..0)"
    assert _refused(image, _params(), y=1) == "f.tif: y 1 is out of range (0..0)"
    assert _refused(image, _params(channels="1")) == "f.tif: channel 1 is out of range (0..0)"
    assert _refused(_image([{"size_y": 6}]), _params(), x=1) == "f.tif: x 1 is out of range (0..0)"


def test_check_counts_colours_and_windows_per_channel() -> None:
    image = _image()
    _check(image, _params(colors="ff0000,00ff00,0000ff", windows="0:1,0:1,0:1"))
    _check(image, _params(channels="1", colors="ff0000", windows="0:1"))
    with pytest.raises(BadParameterError) as caught:
        _check(image, _params(colors="ff0000,00ff00"))
    assert str(caught.value) == "colors: 2 given for 3 channel(s); give one per channel"
    with pytest.raises(BadParameterError) as caught:
        _check(image, _params(channels="0,1", windows="0:1"))
    assert str(caught.value) == "windows: 1 given for 2 channel(s); give one per channel"
    many = _image([{**SIZES, "size_c": 9}])
    _check(many, _params(colors=",".join(["ff0000"] * 7)))
    with pytest.raises(BadParameterError, match=r"^colors: 8 given for 7 channel"):
        _check(many, _params(colors=",".join(["ff0000"] * 8)))


def test_etag_headers(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, api_token=None)
    settings.render.max_age_seconds = 77
    assert _etag_headers("abc", settings) == {
        "ETag": '"abc"',
        "Cache-Control": "private, max-age=77",
    }
