"""``named_path_id`` (``routes/_path_id.py``): the id parameter named after the path.

What the broader tests leave open: the refusal (its message) of an endpoint without
``raw_id`` or with the new name taken, the signature FastAPI reads (position and
annotation kept), and the value handed back as ``raw_id`` by sync and async endpoints.
"""

from __future__ import annotations

import inspect

import anyio
import pytest

from zstack_analyzer.service.routes._path_id import named_path_id


def _sync(prefix: str, raw_id: int, *, flag: bool = False) -> str:
    return f"{prefix}:{raw_id}:{flag}"


async def _async(raw_id: str, suffix: str = "!") -> str:
    return raw_id + suffix


def test_a_sync_endpoint_gets_its_id_back_as_raw_id() -> None:
    renamed = named_path_id("image_id")(_sync)
    signature = inspect.signature(renamed)
    assert list(signature.parameters) == ["prefix", "image_id", "flag"]
    assert signature.parameters["image_id"].annotation == "int"
    assert signature.parameters["image_id"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert renamed.__name__ == "_sync"
    assert renamed("p", image_id=7, flag=True) == "p:7:True"
    assert not inspect.iscoroutinefunction(renamed)


def test_an_async_endpoint_stays_async() -> None:
    renamed = named_path_id("dataset_id")(_async)
    assert inspect.iscoroutinefunction(renamed)
    assert list(inspect.signature(renamed).parameters) == ["dataset_id", "suffix"]
    assert anyio.run(lambda: renamed(dataset_id="ds-1", suffix="?")) == "ds-1?"


def test_an_endpoint_without_raw_id_or_with_the_name_taken_is_refused() -> None:
    def no_raw(image_id: str) -> str:
        return image_id

    def both(raw_id: str, image_id: str) -> str:
        return raw_id + image_id

    for endpoint in (no_raw, both):
        with pytest.raises(TypeError) as caught:
            named_path_id("image_id")(endpoint)
        assert str(caught.value) == (
            f"{endpoint.__qualname__}: needs a 'raw_id' and no 'image_id' parameter"
        )
