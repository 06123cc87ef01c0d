"""Passwords, token secrets and page labels (``passwords.py``, ``tokens.py``, ``labels.py``).

Why direct calls: each is a few pure functions (argon2id at its lowest cost here) or two
queries; the values (hashes, refusals, lengths, names) are the behaviour.
"""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from tests.mutation_kills.service_db import add_group, add_user, session
from zstack_analyzer.service.auth import passwords
from zstack_analyzer.service.auth.labels import Labels, labels_for
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.passwords import (
    MAX_PASSWORD_CHARS,
    Argon2Parameters,
    configure,
    hash_password,
    needs_rehash,
    verify_password,
)
from zstack_analyzer.service.auth.tokens import TOKEN_PREFIX, hash_secret, new_secret, new_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

__all__ = ["session"]

FAST = Argon2Parameters(time_cost=1, memory_kib=8192, parallelism=1)


@pytest.fixture
def fast() -> Iterator[None]:
    before = passwords._parameters
    configure(FAST)
    yield
    configure(before)


def test_argon2_defaults() -> None:
    assert Argon2Parameters() == Argon2Parameters(time_cost=3, memory_kib=65536, parallelism=4)
    assert MAX_PASSWORD_CHARS == 1024


def test_hash_and_verify(fast: None) -> None:
    del fast
    hashed = hash_password("secret words")
    assert hashed.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert verify_password(hashed, "secret words") is True
    assert verify_password(hashed, "secret word") is False
    assert verify_password("not a hash", "secret words") is False
    assert verify_password(hashed, "x" * 1025) is False
    longest = "y" * 1024
    assert verify_password(hash_password(longest), longest) is True
    for bad in ("", "z" * 1025):
        with pytest.raises(ValueError, match=r"^a password must have 1 to 1024 characters$"):
            hash_password(bad)


def test_no_hash_matches_nothing_not_even_the_dummy(fast: None) -> None:
    del fast
    assert verify_password(None, "not-a-password-of-anyone") is False
    assert verify_password(None, "anything") is False
    assert verify_password("", "not-a-password-of-anyone") is False
    assert verify_password(passwords._dummy_hash(), "not-a-password-of-anyone") is True


def test_configure_sets_the_cost_of_new_hashes(fast: None) -> None:
    del fast
    weak = hash_password("pw")
    assert needs_rehash(weak) is False
    hasher = passwords._hasher()
    configure(FAST)  # the same: the hasher is kept
    assert passwords._hasher() is hasher
    stronger = Argon2Parameters(time_cost=2, memory_kib=16384, parallelism=2)
    configure(stronger)
    assert passwords._parameters == stronger
    assert passwords._hasher() is not hasher
    assert needs_rehash(weak) is True
    assert verify_password(weak, "pw") is True  # old hashes still verify
    assert "$m=16384,t=2,p=2$" in hash_password("pw")
    assert "$m=16384,t=2,p=2$" in passwords._dummy_hash()


def test_token_secrets() -> None:
    assert TOKEN_PREFIX == "zst_"  # noqa: S105
    secret = new_secret()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert new_secret() != secret
    token = new_token()
    assert token.startswith("zst_")
    assert re.fullmatch(r"zst_[A-Za-z0-9_-]{43}", token)
    assert hash_secret("abc") == hashlib.sha256(b"abc").hexdigest()
    assert hash_secret("é") == hashlib.sha256("é".encode()).hexdigest()
    # A lone surrogate (possible in a header decoded as text) hashes instead of raising.
    assert hash_secret("\ud800") == hashlib.sha256(b"\xed\xa0\x80").hexdigest()


def test_labels_of_a_page(session: Session) -> None:
    lab = add_group(session, "lab", Permission.READ_ONLY)
    other = add_group(session, "other", Permission.PRIVATE)
    alice = add_user(session, "alice", {})
    bob = add_user(session, "bob", {})
    images = [
        SimpleNamespace(owner_id=alice, group_id=lab),
        SimpleNamespace(owner_id=None, group_id=None),
        SimpleNamespace(owner_id=bob, group_id=other),
        SimpleNamespace(owner_id=999, group_id=998),
    ]
    labels = labels_for(session, iter(images))
    assert labels.users == {alice: "alice", bob: "bob"}
    assert labels.groups == {lab: "lab", other: "other"}
    assert [labels.of(image) for image in images] == [  # type: ignore[arg-type]
        ("alice", "lab"),
        (None, None),
        ("bob", "other"),
        (None, None),
    ]
    assert labels_for(session, [images[1]]) == Labels({}, {})  # type: ignore[list-item]
    zero = Labels({0: "u0"}, {0: "g0"})
    assert zero.of(SimpleNamespace(owner_id=0, group_id=0)) == ("u0", "g0")  # type: ignore[arg-type]
    none_key = Labels({None: "u"}, {None: "g"})  # type: ignore[dict-item]
    assert none_key.of(SimpleNamespace(owner_id=None, group_id=None)) == (None, None)  # type: ignore[arg-type]
