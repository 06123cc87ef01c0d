"""Which container ingest files into, and what a container says the caller may do.

Why (``annotations/containers.py`` ``find_or_create``, ``container_public``): in a
read-write group another member's container may be changed and is used, but the caller's
own of that name comes first, even a newer one; the oldest wins within each. The API's
``can_change`` and ``owned_by_you`` are what the HTTP filer chooses by, so they must say
the same as the in-process choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_group, add_user, principal_of
from tests.service.conftest import (
    create_pg_database,
    drop_pg_database,
    postgres_admin,  # noqa: F401 - a fixture used by name
    postgres_template,  # noqa: F401 - a fixture used by name
)
from zstack_analyzer.service.annotations import containers
from zstack_analyzer.service.annotations.models import Dataset
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import SINGLE_USER
from zstack_analyzer.service.auth.placement import Placement
from zstack_analyzer.service.db.session import make_engine

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

    from zstack_analyzer.service.auth.permissions import Principal

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session


def _new(session: Session, owner: Principal, group: int, name: str) -> int:
    placement = Placement(owner.user_id, group, "g")
    return containers.create_container(session, owner, "dataset", placement, name=name).id


def _row(session: Session, dataset_id: int) -> Dataset:
    row = session.get(Dataset, dataset_id)
    assert row is not None
    return row


def test_the_callers_own_first_then_the_oldest_they_may_change(session: Session) -> None:
    rw = add_group(session, "g-rw", Permission.READ_WRITE)
    alice = principal_of(session, add_user(session, "alice", {rw: False}))
    bob = principal_of(session, add_user(session, "bob", {rw: False}))
    at_bob = Placement(bob.user_id, rw, "g")

    alices = _new(session, alice, rw, "Plate")
    _new(session, alice, rw, "Plate")  # a newer one of hers
    # Only hers: bob may change them, the oldest is used (nothing made).
    assert containers.find_or_create(session, bob, "dataset", "Plate", at_bob).id == alices
    # His own, though newer than both of hers, comes first; the oldest of his.
    bobs = _new(session, bob, rw, "Plate")
    _new(session, bob, rw, "Plate")
    assert containers.find_or_create(session, bob, "dataset", "Plate", at_bob).id == bobs
    # alice still gets her oldest.
    at_alice = Placement(alice.user_id, rw, "g")
    assert containers.find_or_create(session, alice, "dataset", "Plate", at_alice).id == alices


def test_one_the_caller_may_only_see_is_never_taken(session: Session) -> None:
    """Read-annotate: bob sees alice's dataset but may not change it, so his own is made."""
    ra = add_group(session, "g-ra", Permission.READ_ANNOTATE)
    alice = principal_of(session, add_user(session, "alice", {ra: False}))
    bob = principal_of(session, add_user(session, "bob", {ra: False}))
    alices = _new(session, alice, ra, "Plate")
    made = containers.find_or_create(
        session, bob, "dataset", "Plate", Placement(bob.user_id, ra, "g")
    )
    assert made.id != alices
    assert (made.name, made.owner_id, made.group_id) == ("Plate", bob.user_id, ra)


@pytest.fixture
def pg_session(
    postgres_admin: str,  # noqa: F811 - the fixture imported above
    postgres_template: str,  # noqa: F811 - the fixture imported above
) -> Iterator[Session]:
    """A session on a PostgreSQL copy of the migrated template."""
    from sqlalchemy.orm import Session as OrmSession

    url = create_pg_database(postgres_admin, postgres_template)
    engine = make_engine(url)
    try:
        with OrmSession(engine) as opened:
            yield opened
    finally:
        engine.dispose()
        drop_pg_database(postgres_admin, url)


@pytest.mark.postgres
def test_the_oldest_is_taken_after_an_update_moved_it_in_the_table(pg_session: Session) -> None:
    """PostgreSQL writes an updated row anew, after the others: the oldest is chosen by id."""
    session = pg_session
    rw = add_group(session, "g-rw", Permission.READ_WRITE)
    alice = principal_of(session, add_user(session, "alice", {rw: False}))
    bob = principal_of(session, add_user(session, "bob", {rw: False}))
    oldest = _new(session, alice, rw, "Plate")
    _new(session, alice, rw, "Plate")
    # Renamed and back: each update writes a new row version (and index entry) after the others.
    for name in ("Plate (old)", "Plate"):
        _row(session, oldest).name = name
        session.commit()
    at_bob = Placement(bob.user_id, rw, "g")
    assert containers.find_or_create(session, bob, "dataset", "Plate", at_bob).id == oldest


def test_the_single_user_owns_the_ownerless(session: Session) -> None:
    """none/token mode: containers have no owner, and the one user owns them all."""
    group = add_group(session, "g-one", Permission.READ_WRITE)
    rw_user = principal_of(session, add_user(session, "carol", {group: False}))
    carols = _new(session, rw_user, group, "D")
    ownerless = containers.create_container(
        session, SINGLE_USER, "dataset", Placement(None, group, "g"), name="D"
    ).id
    placement = Placement(None, group, "g")
    assert containers.find_or_create(session, SINGLE_USER, "dataset", "D", placement).id == (
        ownerless
    )
    (row,) = containers.container_public(
        session, SINGLE_USER, "dataset", [_row(session, ownerless)]
    )
    assert (row.can_change, row.owned_by_you) == (True, True)
    (row,) = containers.container_public(session, SINGLE_USER, "dataset", [_row(session, carols)])
    assert row.owned_by_you is False


def test_can_change_and_owned_by_you_by_group_level(session: Session) -> None:
    ra = add_group(session, "g-ra", Permission.READ_ANNOTATE)
    rw = add_group(session, "g-rw", Permission.READ_WRITE)
    alice = principal_of(session, add_user(session, "alice", {ra: False, rw: False}))
    bob = principal_of(session, add_user(session, "bob", {ra: False, rw: False}))
    in_ra = _new(session, alice, ra, "A")
    in_rw = _new(session, alice, rw, "B")
    rows = [_row(session, i) for i in (in_ra, in_rw)]

    def says(principal: Principal) -> list[tuple[str, bool, bool]]:
        public = containers.container_public(session, principal, "dataset", rows)
        return [(p.name, p.can_change, p.owned_by_you) for p in public]

    assert says(alice) == [("A", True, True), ("B", True, True)]
    assert says(bob) == [("A", False, False), ("B", True, False)]
