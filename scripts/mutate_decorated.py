"""Let mutmut's generator mutate the bodies of decorated module-level functions too.

Why: mutmut skips every decorated function (``MutationVisitor._skip_node_and_children``),
because copying one for its trampoline would run the decorator again for every copy (a
FastAPI ``@router.get`` registering the same route once per mutant) and because a decorator
like ``@property`` breaks the trampoline. So the body of every FastAPI route function, the
code that picks status codes, checks permissions and fills fields, was scored in no module.

What this changes, applied by ``scripts/mutate_session.py``'s generator only (mutmut's own
``mutmut run`` in ``scripts/mutate.py`` is untouched), for functions at module level only:

* The body of a decorated function is mutated with mutmut's own node mutations. Its
  decorators (run once, at import) and its parameter list are not: FastAPI reads the
  parameters (names, annotations, defaults) of the trampoline, which are the original's,
  and passes every one of them explicitly, so a mutated default in a copy could never act.
* The trampoline keeps the decorators, in their order, above mutmut's ``_mutmut_mutated``
  decorator: they wrap the trampoline, which ``functools.wraps`` gives the original's name,
  annotations and ``__wrapped__`` (so ``inspect.signature`` and FastAPI's
  ``inspect.unwrap(...).__globals__`` see the original function). The ``__mutmut_orig``
  copy and the mutants are plain functions without decorators: no route is registered twice.

Methods (a decorated method may be a ``@property``) keep mutmut's behaviour, and so do
functions with a decorator of ``NEVER`` (numba's compilers, caches). Mutants of a
decorated function are named like any other (``x_upload_image__mutmut_3``), so verdicts,
reports and the ``[equivalent]`` lists work unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import libcst as cst

if TYPE_CHECKING:
    from collections.abc import Sequence


#: Decorators whose functions stay unmutated (by the last part of the decorator's name):
#: numba compiles the function it decorates (a trampoline cannot be compiled), and a cache
#: would serve a result computed under one mutant to the next mutant or the clean checks.
NEVER = frozenset(
    {"njit", "jit", "vectorize", "cache", "lru_cache", "cached_property", "property"}
    | {"overload", "singledispatch"}
)


def _name(decorator: cst.BaseExpression) -> str:
    """``numba.njit(nogil=True)`` -> ``njit``; ``router.get(...)`` -> ``get``."""
    if isinstance(decorator, cst.Call):
        decorator = decorator.func
    if isinstance(decorator, cst.Attribute):
        return decorator.attr.value
    return decorator.value if isinstance(decorator, cst.Name) else ""


def _mutable(function: cst.FunctionDef) -> bool:
    """A decorated function whose body this module mutates (none of its decorators is NEVER)."""
    return not _plain(function) and not any(
        _name(d.decorator) in NEVER for d in function.decorators
    )


def _plain(function: cst.FunctionDef) -> bool:
    """True for what mutmut already handles: no decorator, or one staticmethod/classmethod."""
    if not function.decorators:
        return True
    if len(function.decorators) != 1:
        return False
    decorator = function.decorators[0].decorator
    return isinstance(decorator, cst.Name) and decorator.value in ("staticmethod", "classmethod")


def install() -> None:
    """Patch mutmut's generator (in this process, and in the pool it forks) as described above."""
    from libcst.metadata import PositionProvider
    from mutmut.mutation import file_mutation
    from mutmut.mutation.file_mutation import MutationVisitor

    skip = MutationVisitor._skip_node_and_children
    arrange = file_mutation.function_trampoline_arrangement

    def skip_node_and_children(self: Any, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.Module):
            decorated = [s for s in node.body if isinstance(s, cst.FunctionDef) and _mutable(s)]
            self._deco_functions = {id(f) for f in decorated}
            self._deco_params = {id(f.params) for f in decorated}
        if id(node) in getattr(self, "_deco_params", ()):
            return True  # the trampoline's parameters are what callers see
        if isinstance(node, cst.FunctionDef) and id(node) in getattr(self, "_deco_functions", ()):
            position = self.get_metadata(PositionProvider, node, None)
            if position and position.start.line in self._ignored_node_lines:
                self.ignored_functions.add(node.name.value)  # "# pragma: no mutate block"
                return True
            # Otherwise the body is mutated (its Decorator nodes are still skipped).
            return node.name.value in file_mutation.NEVER_MUTATE_FUNCTION_NAMES
        return bool(skip(self, node))

    def function_trampoline_arrangement(
        function: cst.FunctionDef, mutants: Any, class_name: str | None
    ) -> tuple[Sequence[Any], Sequence[Any], Sequence[Any], Sequence[str]]:
        empty, nodes, assign, names = arrange(function, mutants, class_name)
        if class_name is None and _mutable(function):
            # nodes[0] is the decorated trampoline; the original's copy and the mutants
            # must not run the decorators again.
            nodes = [nodes[0], *(n.with_changes(decorators=[]) for n in nodes[1:])]
        return empty, nodes, assign, names

    MutationVisitor._skip_node_and_children = skip_node_and_children  # type: ignore[method-assign]
    file_mutation.function_trampoline_arrangement = function_trampoline_arrangement  # type: ignore[assignment]
