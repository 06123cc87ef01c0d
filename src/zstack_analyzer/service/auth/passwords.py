"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's second recommendation).

Why argon2-cffi: a well-kept binding of the reference implementation; its
``PasswordHasher`` encodes the parameters in the hash, so they can be raised
later and old hashes rehashed on the next login (:func:`needs_rehash`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_NEW_PASSWORD_CHARS",
    "Argon2Parameters",
    "configure",
    "hash_password",
    "needs_rehash",
    "verify_password",
]


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """Cost of new hashes (argon2-cffi's defaults = RFC 9106's low-memory recommendation)."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


#: Longer passwords are refused before hashing (argon2 would hash megabytes happily).
MAX_PASSWORD_CHARS = 1024
#: The one strength rule of a new password, however it is set (over HTTP by an admin or
#: its owner, or ``zstack user add/passwd``). Not applied to logins: an older, shorter
#: password still logs in until it is changed.
MIN_NEW_PASSWORD_CHARS = 8

#: A hash nobody's password matches, verified when the user does not exist, so a wrong
#: username costs the same time as a wrong password (no account enumeration by timing).
_DUMMY_PASSWORD = "not-a-password-of-anyone"  # noqa: S105


_parameters = Argon2Parameters()


def configure(parameters: Argon2Parameters) -> None:
    """Set the cost of new hashes (from ``accounts.password_*`` settings, at start-up).

    Verification always uses the parameters stored in the hash; a hash made
    with other parameters is rehashed at its next successful login.
    """
    global _parameters  # process-wide, set from the settings by entry points
    if parameters != _parameters:
        _parameters = parameters
        _hasher.cache_clear()
        _dummy_hash.cache_clear()


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher(
        time_cost=_parameters.time_cost,
        memory_cost=_parameters.memory_kib,
        parallelism=_parameters.parallelism,
    )


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash(_DUMMY_PASSWORD)


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; parameters inside the string)."""
    if not password or len(password) > MAX_PASSWORD_CHARS:
        msg = f"a password must have 1 to {MAX_PASSWORD_CHARS} characters"
        raise ValueError(msg)
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; a missing hash is checked against a dummy (same cost)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _hasher().check_needs_rehash(password_hash)
