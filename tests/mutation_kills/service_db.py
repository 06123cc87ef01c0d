"""A real SQLite database at head (the project's own migrations), for service functions called directly.

Why not the whole service: the mutation runs call ``apply_table``, the ROI service and
the image-record helpers once per mutant; building the app (settings, storage, workers)
for each costs seconds under load, while these functions only need a session on the
schema the migrations make. The database is migrated once per process and copied for
each test.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from zstack_analyzer.service.auth.models import Group, Membership, Permission, User
from zstack_analyzer.service.auth.permissions import GroupRole, Principal
from zstack_analyzer.service.db.models import Image

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

_TEMPLATE: dict[str, Path] = {}


def _template() -> Path:
    """The migrated database of this process (made once; forks of it, as mutmut's, reuse it).

    Outside pytest's temporary folders on purpose: pytest keeps only its last three
    base folders, and mutmut runs a pytest session per mutant in forks of one process.
    """
    path = _TEMPLATE.get("path")
    if path is None or not path.is_file():
        from zstack_analyzer.service.db.migrations import upgrade_database
        from zstack_analyzer.service.db.session import make_engine

        path = Path(tempfile.mkdtemp(prefix="zstack-kills-db-")) / "zstack.db"
        engine = make_engine(f"sqlite:///{path}")
        try:
            upgrade_database(engine)
        finally:
            engine.dispose()
        _TEMPLATE["path"] = path
    return path


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    """A session on this test's own copy of the migrated database."""
    from zstack_analyzer.service.db.session import make_engine, make_session_factory

    path = tmp_path / "zstack.db"
    shutil.copyfile(_template(), path)
    engine = make_engine(f"sqlite:///{path}")
    with make_session_factory(engine)() as db:
        yield db
    engine.dispose()


def add_group(session: Session, name: str, level: Permission) -> int:
    """A group at ``level``; its id."""
    group = Group(name=name, permissions=level.value)
    session.add(group)
    session.commit()
    return group.id


def add_user(session: Session, name: str, groups: dict[int, bool]) -> int:
    """A user who is a member of ``groups`` (``group id -> is owner``); its id."""
    user = User(username=name, display_name=name.title())
    session.add(user)
    session.flush()
    for group_id, owner in groups.items():
        session.add(Membership(user_id=user.id, group_id=group_id, is_owner=owner))
    session.commit()
    return user.id


def principal_of(session: Session, user_id: int) -> Principal:
    """The principal a session of ``user_id`` would be (its groups and roles from the database)."""
    user = session.get(User, user_id)
    assert user is not None
    roles = {}
    for membership in session.query(Membership).filter_by(user_id=user_id):
        group = session.get(Group, membership.group_id)
        assert group is not None
        roles[group.id] = GroupRole(
            group.id, group.name, Permission(group.permissions), is_owner=membership.is_owner
        )
    return Principal(user_id=user_id, username=user.username, groups=roles, via="session")


def image_row(filename: str, **columns: Any) -> Image:
    """An unsaved image row with every required column filled (no file behind it).

    Why one builder: the tests that need rows in bulk or with odd values (1001 images, a
    nameless one, given ids and creation times) give only what they test; the rest is
    a plausible 16-bit OME-TIFF stack.
    """
    values: dict[str, Any] = {
        "filename": filename,
        "stored_name": uuid.uuid4().hex,
        "format": "OME-TIFF",
        "size_bytes": 1000,
        "sha256": "0" * 64,
        "width": 32,
        "height": 24,
        "depth": 5,
        "channels": 2,
        "timepoints": 1,
        "samples_per_pixel": 1,
        "bit_depth": 16,
        "dtype": "uint16",
        "scenes": [],
    }
    values.update(columns)
    return Image(**values)


def add_image(
    session: Session,
    filename: str,
    *,
    owner_id: int | None = None,
    group_id: int | None = None,
    source_path: str | None = None,
    **columns: Any,
) -> uuid.UUID:
    """An image record (what the annotation and ROI services read), committed; its id."""
    image = image_row(
        filename, owner_id=owner_id, group_id=group_id, source_path=source_path, **columns
    )
    session.add(image)
    session.commit()
    return image.id
