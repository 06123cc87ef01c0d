"""One decode budget for every path that turns stored bytes into pixels.

Why: a 1 MB file can hold a zlib stream that inflates to a GiB (one huge zarr
chunk, one huge TIFF strip, a zip member whose sizes lie). The declared-size
checks of :mod:`zstack_analyzer.limits` refuse what a header admits to; this
module bounds what decoding actually costs, whatever the header says, and
counts concurrent decodes together:

- **per block**: one decode (a strip, a tile, a zarr chunk, a whole plane)
  may not need more than ``block_bytes`` (refused with
  :class:`~zstack_analyzer.errors.LimitExceededError`, before it allocates);
- **per request**: what one request decodes only to throw away (the rows
  of a strip before the ones it wants, the rest of a plane decoded whole for
  one chunk of it; a chunk of a reduced level reads hundreds of those) may
  not add up to more than ``request_bytes``: CPU as much as memory. Decoded
  bytes a request uses are not counted, so a projection of a long stack is
  never refused for its length;
- **per process**: the bytes being decoded at once, by every thread, stay
  under ``total_bytes``; a decode that does not fit waits up to
  ``wait_seconds`` for others to finish, then gives up with
  :class:`~zstack_analyzer.errors.DecodeBusyError` (the service's 503 with
  ``Retry-After``).

A request's scope (:func:`decode_scope`) also carries a cancel flag: every
reservation checks it, so work whose client went away, or a server shutting
down, stops at its next decode (:class:`~zstack_analyzer.errors.DecodeCancelledError`).

Library callers get an unbounded process budget unless they call
:func:`configure` (the service does, from its settings). Reservations are
made in the thread that asks for the pixels, before any worker threads of a
decoder start, because scopes live in a :class:`contextvars.ContextVar`.

Examples
--------
>>> from zstack_analyzer.budget import DecodeBudget, decode_scope, reserve
>>> budget = DecodeBudget(total_bytes=1 << 20, block_bytes=1 << 20, request_bytes=1 << 30)
>>> with decode_scope(budget), reserve(4096, what="a tile"):
...     pass
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zstack_analyzer.errors import DecodeBusyError, DecodeCancelledError, LimitExceededError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = [
    "DecodeBudget",
    "DecodeScope",
    "charge",
    "check_block",
    "check_cancelled",
    "configure",
    "current_budget",
    "decode_scope",
    "reserve",
]

MiB = 1024 * 1024
_UNBOUNDED = 1 << 62


class DecodeBudget:
    """Bytes being decoded at once in this process, and the caps of one decode and one request.

    Parameters
    ----------
    total_bytes
        Decoded bytes held at once by every decode of the process together.
    block_bytes
        Largest single decode.
    request_bytes
        Most bytes one request (one :func:`decode_scope`) may decode and throw away.
    wait_seconds
        How long a decode that does not fit waits for others to finish.
    """

    def __init__(
        self,
        *,
        total_bytes: int = _UNBOUNDED,
        block_bytes: int = _UNBOUNDED,
        request_bytes: int = _UNBOUNDED,
        wait_seconds: float = 30.0,
    ) -> None:
        self.total_bytes = int(total_bytes)
        self.block_bytes = min(int(block_bytes), self.total_bytes)
        self.request_bytes = int(request_bytes)
        self.wait_seconds = float(wait_seconds)
        self.in_use = 0
        self.peak = 0
        #: Decode scopes (requests) open now.
        self.active = 0
        self._cond = threading.Condition()
        #: Set at shutdown: every decode of every scope stops at its next reservation.
        self.closing = threading.Event()

    def acquire(
        self, nbytes: int, *, what: str, path: Path | str | None, cancel: threading.Event | None
    ) -> None:
        """Take ``nbytes`` from the process budget, waiting for room; raise if it cannot fit."""
        deadline = time.monotonic() + self.wait_seconds
        with self._cond:
            while self.in_use + nbytes > self.total_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = (
                        f"{what}: the server is decoding {self.in_use / MiB:,.0f} MiB for other "
                        f"requests; {nbytes / MiB:,.1f} MiB more would pass its decode budget of "
                        f"{self.total_bytes / MiB:,.0f} MiB; try again shortly"
                    )
                    raise DecodeBusyError(msg, path=path)
                self._cond.wait(min(left, 0.25))
                if self.closing.is_set() or (cancel is not None and cancel.is_set()):
                    msg = f"{what}: cancelled"
                    raise DecodeCancelledError(msg, path=path)
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)

    def release(self, nbytes: int) -> None:
        """Give ``nbytes`` back and wake waiting decodes."""
        with self._cond:
            self.in_use -= nbytes
            self._cond.notify_all()


@dataclass
class DecodeScope:
    """One request's share: what it has decoded and thrown away so far, and its cancel flag."""

    budget: DecodeBudget
    spent: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Largest single decode of this scope (min with the budget's block cap).
    block_bytes: int | None = None


_process_budget = DecodeBudget()
_scope: contextvars.ContextVar[DecodeScope | None] = contextvars.ContextVar(
    "zstack_decode_scope", default=None
)


def configure(budget: DecodeBudget) -> DecodeBudget:
    """Make ``budget`` the process's budget (the service does it at start-up); returns the old one."""
    global _process_budget
    old, _process_budget = _process_budget, budget
    return old


def current_budget() -> DecodeBudget:
    """The budget reservations in this context draw on."""
    scope = _scope.get()
    return scope.budget if scope is not None else _process_budget


@contextlib.contextmanager
def decode_scope(
    budget: DecodeBudget | None = None, *, cancel: threading.Event | None = None
) -> Iterator[DecodeScope]:
    """Count the decodes made in this context (and threads started with its context) as one request."""
    scope = DecodeScope(budget or _process_budget)
    if cancel is not None:
        scope.cancel = cancel
    token = _scope.set(scope)
    with scope.budget._cond:
        scope.budget.active += 1
    try:
        yield scope
    finally:
        with scope.budget._cond:
            scope.budget.active -= 1
        _scope.reset(token)


def check_cancelled(what: str = "decode", path: Path | str | None = None) -> None:
    """Raise :class:`DecodeCancelledError` when this request was cancelled or the server is closing."""
    scope = _scope.get()
    budget = scope.budget if scope is not None else _process_budget
    if budget.closing.is_set() or (scope is not None and scope.cancel.is_set()):
        msg = f"{what}: cancelled (the client went away or the server is shutting down)"
        raise DecodeCancelledError(msg, path=path)


def check_block(nbytes: int, *, what: str, path: Path | str | None = None) -> None:
    """Refuse one decode of ``nbytes`` over the block cap (or a cancelled request), reserving nothing.

    Why: a decoder that reserves per batch checks its largest single block first,
    before it reads anything.
    """
    scope = _scope.get()
    budget = scope.budget if scope is not None else _process_budget
    check_cancelled(what, path)
    cap = budget.block_bytes if scope is None or scope.block_bytes is None else scope.block_bytes
    if nbytes > cap:
        raise LimitExceededError(_block_cap_message(what, nbytes, cap), path=path)


def _block_cap_message(what: str, nbytes: int, cap: int) -> str:
    return (
        f"{what}: decoding it needs {nbytes / MiB:,.1f} MiB, over the decode limit of "
        f"{cap / MiB:,.0f} MiB for one block"
    )


def charge(nbytes: int, *, what: str, path: Path | str | None = None) -> None:
    """Count ``nbytes`` decoded only to be thrown away against this request's total.

    Why apart from :func:`reserve`: memory is held while a decode runs, waste
    adds up over a request (a streamed strip holds a few MiB at a time but
    may inflate hundreds of MiB before the rows it wants). Decoders charge the
    waste before they decode where they know it, as they go where they do not.
    """
    scope = _scope.get()
    check_cancelled(what, path)
    if scope is None:
        return
    if scope.spent + nbytes > scope.budget.request_bytes:
        raise LimitExceededError(_request_cap_message(what, scope.budget), path=path)
    scope.spent += nbytes


def _request_cap_message(what: str, budget: DecodeBudget) -> str:
    return (
        f"{what}: this request would decode and throw away more than "
        f"{budget.request_bytes / MiB:,.0f} MiB (the per-request decode limit); the "
        f"file's layout makes what was asked too costly"
    )


@contextlib.contextmanager
def reserve(
    nbytes: int, *, what: str, path: Path | str | None = None, block: int | None = None
) -> Iterator[None]:
    """Hold ``nbytes`` of decode budget for the ``with`` block (decodes of ``what``).

    ``block`` is the largest single decode among them (default: all of ``nbytes``
    is one decode); it is what the block cap is checked against.

    Raises
    ------
    LimitExceededError
        One decode over the block cap, or the request's decodes over the request cap.
    DecodeBusyError
        No room in the process budget within its wait.
    DecodeCancelledError
        The request was cancelled or the server is shutting down.
    """
    nbytes = max(0, int(nbytes))
    scope = _scope.get()
    budget = scope.budget if scope is not None else _process_budget
    check_cancelled(what, path)
    cap = budget.block_bytes if scope is None or scope.block_bytes is None else scope.block_bytes
    single = nbytes if block is None else max(0, int(block))
    if single > cap:
        raise LimitExceededError(_block_cap_message(what, single, cap), path=path)
    if nbytes > budget.total_bytes:
        msg = (
            f"{what}: decoding it needs {nbytes / MiB:,.1f} MiB at once, more than the "
            f"server's whole decode budget of {budget.total_bytes / MiB:,.0f} MiB"
        )
        raise LimitExceededError(msg, path=path)
    budget.acquire(nbytes, what=what, path=path, cancel=scope.cancel if scope else None)
    try:
        yield
    finally:
        budget.release(nbytes)
