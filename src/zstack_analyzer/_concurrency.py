"""One capacity limiter per event loop, so ``max_concurrency`` caps what it says.

Why not one limiter per object: an anyio ``CapacityLimiter`` belongs to the event
loop it was first used in, and the async facades promise to serve
``asyncio.run`` after ``asyncio.run`` and several loops at once. Why not one per
call (the old code): a fresh limiter for every call limits nothing. So each
facade keeps a limiter per running loop, dropped when the loop is collected.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import anyio
import anyio.lowlevel

__all__ = ["LoopLimiters"]


class LoopLimiters:
    """A :class:`anyio.CapacityLimiter` of ``total_tokens`` for each running event loop.

    Examples
    --------
    >>> import anyio
    >>> limiters = LoopLimiters(2)
    >>> async def same() -> bool:
    ...     return limiters.get() is limiters.get()
    >>> anyio.run(same)
    True
    """

    def __init__(self, total_tokens: int) -> None:
        if total_tokens < 1:
            msg = f"max_concurrency must be at least 1, not {total_tokens}"
            raise ValueError(msg)
        self.total_tokens = total_tokens
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[Any, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> anyio.CapacityLimiter:
        """The limiter of the running event loop (made on first use in that loop)."""
        loop = anyio.lowlevel.current_token().native_token
        with self._lock:
            limiter = self._by_loop.get(loop)
            if limiter is None:
                limiter = anyio.CapacityLimiter(self.total_tokens)
                self._by_loop[loop] = limiter
            return limiter
