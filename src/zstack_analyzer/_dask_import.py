"""Import ``dask.array`` without the optional packages it imports only to recognise their types.

Why: ``import dask.array`` imports xarray (and with it pandas) when xarray is
installed, only so that ``from_array`` can recognise an ``xarray.DataArray``,
and scipy so that its sparse matrices count as chunk types. In an environment
that has them (the dev extra brings them through bioio, napari and scikit-image)
that was 50 MiB of the 129 MiB peak RSS and 600 of the 1,200 modules of a process
that lazily opens one file (bench record ``lazy-open/c``, target under 100 MiB).

What: the first import of ``dask.array`` through :func:`dask_array` runs with
``xarray`` and ``scipy`` hidden from the importing thread (each one that is not
imported yet), then puts back what dask would have got from them, resolved
when first needed instead:

- ``dask.array.core.xr``: an object whose ``DataArray`` is xarray's once xarray
  is imported. Before that no object can be a ``DataArray``, so dask's
  ``isinstance`` check gives the same answer without importing xarray.
- scipy's sparse matrix and array types as dask chunk types: one registered
  class whose subclass check asks ``scipy.sparse`` once that is imported.
- ``dask.array.fft.scipy``: scipy, imported on first attribute use (dask only
  tests it against ``None``).

Anything else that dask would have seen differently is caught by
``tests/unit/test_lean_imports.py``, which compares the module globals the two
ways of importing leave behind (a dask release that needs more fails there). Other threads import normally throughout:
only the importing thread has the packages hidden, and only for this import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["dask_array"]

logger = logging.getLogger(__name__)

#: Packages dask.array imports eagerly only to recognise their types (see the module docstring).
DEFERRED = ("xarray", "scipy")

_lock = threading.Lock()


class _Hide(importlib.abc.MetaPathFinder):
    """Makes ``names`` (and their submodules) unimportable, for one thread only."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.thread = threading.get_ident()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if threading.get_ident() == self.thread and fullname.split(".")[0] in self.names:
            msg = f"{fullname} is imported when first used (zstack_analyzer._dask_import)"
            raise ModuleNotFoundError(msg, name=fullname)
        return None


class _NotImportedYet:
    """Stands for a class of a package nobody has imported: nothing is an instance of it."""


class _XarrayOnceImported:
    """What ``dask.array.core`` holds as ``xr``: xarray's attributes, without importing it early."""

    def __getattr__(self, name: str) -> Any:
        module = sys.modules.get("xarray")
        if module is None:
            if name == "DataArray":  # dask's only use: isinstance(x, xr.DataArray)
                return _NotImportedYet
            module = importlib.import_module("xarray")
        return getattr(module, name)


class _ScipyOnFirstUse:
    """What ``dask.array.fft`` holds as ``scipy``: the package, imported on first attribute use."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("scipy"), name)


class _ScipySparseType(type):
    """Metaclass of the chunk type that stands for scipy's sparse matrices and arrays."""

    def _sparse_types(cls) -> tuple[type, ...]:
        sparse = sys.modules.get("scipy.sparse")
        if sparse is None:  # no sparse matrix exists before scipy.sparse is imported
            return ()
        return tuple(
            t for t in (getattr(sparse, "spmatrix", None), getattr(sparse, "sparray", None)) if t
        )

    def __subclasscheck__(cls, subclass: type) -> bool:
        types = cls._sparse_types()
        return bool(types) and issubclass(subclass, types)

    def __instancecheck__(cls, instance: object) -> bool:
        return cls.__subclasscheck__(type(instance))


class ScipySparseChunk(metaclass=_ScipySparseType):
    """Registered with dask in place of ``scipy.sparse.spmatrix`` and ``sparray``."""


def _put_back(hidden: tuple[str, ...]) -> None:
    """Give dask what it would have taken from the hidden packages (module docstring)."""
    core = sys.modules["dask.array.core"]
    if "xarray" in hidden and getattr(core, "xr", False) is None:
        core.xr = _XarrayOnceImported()  # type: ignore[attr-defined]
    if "scipy" in hidden:
        from dask.array.chunk_types import register_chunk_type

        register_chunk_type(ScipySparseChunk)
        fft = sys.modules.get("dask.array.fft")
        if fft is not None and getattr(fft, "scipy", False) is None:
            fft.scipy = _ScipyOnFirstUse()  # type: ignore[attr-defined]


def _import_hiding(hidden: tuple[str, ...]) -> ModuleType | None:
    """``dask.array`` imported with ``hidden`` unimportable in this thread; ``None`` if it needs them.

    Why ``None`` and not the error: a dask release that imports one of them
    unconditionally must cost memory, never a lazy open. What the attempt left
    half-imported of dask is dropped, so the caller's plain import starts
    clean (``tests/unit/test_lean_imports.py`` still fails loudly on such a
    release, so we hear of it).
    """
    finder = _Hide(hidden)
    before = set(sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module("dask.array")
    except ImportError as exc:
        for name in set(sys.modules) - before:
            if name.split(".")[0] == "dask":
                del sys.modules[name]
        logger.debug("dask.array needs one of %s at import: importing it plainly (%s)", hidden, exc)
        return None
    finally:
        sys.meta_path.remove(finder)


def dask_array() -> ModuleType:
    """``dask.array``; the first import in the process leaves xarray and scipy for later.

    Our code imports dask.array through this function wherever it builds an
    array, so the process imports it once, leanly, whoever asks first; an
    application that imported dask.array (or xarray and scipy) itself already
    paid for them and gets the module as it is.

    Examples
    --------
    >>> da = dask_array()
    >>> int(da.ones((2, 3), chunks=1).sum().compute())
    6
    """
    with _lock:
        if "dask.array" in sys.modules:
            return importlib.import_module("dask.array")
        hidden = tuple(
            name
            for name in DEFERRED
            if name not in sys.modules and importlib.util.find_spec(name) is not None
        )
        module = _import_hiding(hidden)
        if module is None:  # see _import_hiding: the plain way, as dask expects it
            return importlib.import_module("dask.array")
        _put_back(hidden)
        return module
