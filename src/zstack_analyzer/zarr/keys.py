"""The one grammar of store keys' indices: ASCII digits, at most 9 of them.

Why not ``str.isdigit`` and ``int``: ``isdigit`` is true for ``²`` (which
``int`` refuses: a 500) and for Arabic-Indic digits (which ``int`` reads:
``٠`` was served as scene 0), and ``int`` of 5,000 digits hits Python's
digit limit (another 500). No index of ours has ten digits, so anything
longer is no key at all.
"""

from __future__ import annotations

import re

__all__ = ["MAX_INDEX_DIGITS", "parse_index"]

#: Longest index accepted (a billion chunks along one axis is far past any image).
MAX_INDEX_DIGITS = 9
_INDEX = re.compile(rf"[0-9]{{1,{MAX_INDEX_DIGITS}}}")


def parse_index(part: str) -> int | None:
    """``part`` as a non-negative index if it is 1 to 9 ASCII digits, else ``None``.

    Examples
    --------
    >>> parse_index("12"), parse_index("²"), parse_index("٠"), parse_index("1" * 5000)
    (12, None, None, None)
    """
    if _INDEX.fullmatch(part) is None:
        return None
    return int(part)
