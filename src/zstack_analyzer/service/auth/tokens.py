"""High-entropy secrets (API tokens, session ids, CSRF tokens), stored only as SHA-256.

Why SHA-256 and not argon2 for tokens: a token is 256 random bits, so there is
nothing to brute-force; a fast hash lets every request be checked by an index
lookup. Passwords, chosen by people, go through argon2id (``passwords.py``).
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "hash_secret", "new_secret", "new_token"]

#: Personal API tokens start with this, so a leaked one is recognisable (secret scanners).
TOKEN_PREFIX = "zst_"  # noqa: S105  (a prefix, not a secret)


def new_secret() -> str:
    """A URL-safe random secret of 256 bits."""
    return secrets.token_urlsafe(32)


def new_token() -> str:
    """A new personal API token (shown once, never stored)."""
    return f"{TOKEN_PREFIX}{new_secret()}"


def hash_secret(secret: str) -> str:
    """The hex SHA-256 stored for ``secret`` (lookup key of tokens and sessions)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
