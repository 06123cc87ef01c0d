"""Name a generated endpoint's id parameter after its path template (``{image_id}``, ...).

Why: the annotation and container routes are made in a loop, one set per kind,
so their code names the id ``raw_id``; the path says ``{image_id}``,
``{dataset_id}`` or ``{project_id}``. ``Path(alias=...)`` bridged the two, but
FastAPI >= 0.165 builds its parameter adapters lazily with pydantic, which warns
(``UnsupportedFieldAttributeWarning``) that an alias means nothing there. A real
parameter of the path's name needs no alias: :func:`named_path_id` gives the
endpoint a signature with ``{kind}_id`` in place of ``raw_id`` and hands the
value back to the code as ``raw_id``. (The ``format`` query parameters of
search and render are simply called ``format`` for the same reason.)
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["named_path_id"]

F = TypeVar("F", bound=Callable[..., Any])

#: The parameter name the generated endpoints use for the id in their path.
RAW = "raw_id"


def named_path_id(name: str) -> Callable[[F], F]:
    """Decorator: the endpoint's ``raw_id`` parameter is called ``name`` for FastAPI.

    The annotation (``Path(...)`` constraints) and position stay as written; put it
    below the router's decorator and any marks that read the endpoint.
    """

    def rename(endpoint: F) -> F:
        signature = inspect.signature(endpoint)
        if RAW not in signature.parameters or name in signature.parameters:
            msg = f"{endpoint.__qualname__}: needs a {RAW!r} and no {name!r} parameter"
            raise TypeError(msg)
        parameters = [
            p.replace(name=name) if p.name == RAW else p for p in signature.parameters.values()
        ]
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                kwargs[RAW] = kwargs.pop(name)
                return await endpoint(*args, **kwargs)

            wrapper = async_wrapper
        else:

            @functools.wraps(endpoint)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                kwargs[RAW] = kwargs.pop(name)
                return endpoint(*args, **kwargs)

            wrapper = sync_wrapper
        # inspect.signature (and so FastAPI) reads __signature__ before following __wrapped__.
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[union-attr]
        return cast("F", wrapper)

    return rename
