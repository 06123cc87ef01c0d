"""The ``image_quality`` rows (``service/db/quality.py``) on a migrated SQLite database.

What the service tests leave open (they measure real uploads in a child process, which is
slow): a replacement of earlier rows, NaN stored as NULL, an error cut to its column and
replacing the measures, rows of an older version counting as missing, the backfill's
order and limit, and the flags at their thresholds (errors left out, each flag once).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from tests.mutation_kills.service_db import (
    add_image,
    image_row,
    session,  # noqa: F401 - a fixture used by name
)
from tests.service.conftest import (
    create_pg_database,
    drop_pg_database,
    postgres_admin,  # noqa: F401 - a fixture used by name
    postgres_template,  # noqa: F401 - a fixture used by name
)
from zstack_analyzer.quality.stack import ChannelQuality, SceneQuality
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.quality import (
    QUALITY_VERSION,
    ImageQuality,
    flags_of_mask,
    get_quality,
    images_without_quality,
    quality_flag_mask,
    quality_flags_for,
    store_quality,
    store_quality_error,
)
from zstack_analyzer.service.db.session import make_engine, make_session_factory

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

START = datetime(2026, 1, 1, tzinfo=UTC)


def _channel(saturated: float | None, edge: bool, snr: float | None) -> ChannelQuality:
    return ChannelQuality(
        channel=0,
        name="DAPI",
        best_focus_z=0 if edge else 1,
        focus_edge=edge,
        focus=[1.0, 2.0],
        brenner=[1.0, 2.0],
        intensity_z=[3.0, 4.0],
        intensity_t=[3.5],
        z_falloff_rate=None,
        bleaching_rate=None,
        bleaching_rate_per_s=None,
        saturated_fraction=saturated,
        min_fraction=0.0,
        snr=snr,
        planes=[[]],
    )


def _scene(scene: int, saturated: float | None, edge: bool, snr: float | None) -> SceneQuality:
    return SceneQuality(scene=scene, size_t=1, size_z=2, channels=[_channel(saturated, edge, snr)])


def _image(db: Session, n: int) -> uuid.UUID:
    return add_image(db, f"img{n}.czi", created_at=START + timedelta(hours=n))


def test_measures_replace_earlier_rows_and_errors_replace_measures(
    session: Session,  # noqa: F811
) -> None:
    image = _image(session, 0)
    store_quality(session, image, [_scene(0, 0.5, True, 2.0), _scene(1, 0.0, False, 9.0)])
    store_quality(session, image, [_scene(0, float("nan"), False, float("inf"))])
    session.expire_all()
    assert get_quality(session, image, 1) is None  # the earlier scene 1 is gone
    row = get_quality(session, image, 0)
    assert row is not None
    assert row.version == QUALITY_VERSION
    assert row.max_saturated_fraction is None
    assert row.focus_edge is False
    assert row.min_snr is None
    assert row.error is None
    assert row.data["scene"] == 0
    assert row.data["channels"][0]["saturated_fraction"] is None  # NaN: null in JSON
    assert row.data["channels"][0]["snr"] is None
    assert "planes" not in row.data["channels"][0]
    assert row.computed_at is not None

    store_quality_error(session, image, "x" * 1500)
    session.expire_all()
    rows = session.scalars(select(ImageQuality).where(ImageQuality.image_id == image)).all()
    assert len(rows) == 1
    assert (rows[0].scene, rows[0].error, rows[0].data) == (0, "x" * 1000, {})
    assert rows[0].version == QUALITY_VERSION
    assert rows[0].focus_edge is False
    store_quality(session, image, [_scene(2, 0.1, True, 1.0)])
    session.expire_all()
    rows = session.scalars(select(ImageQuality).where(ImageQuality.image_id == image)).all()
    assert [(r.scene, r.error, r.max_saturated_fraction, r.min_snr) for r in rows] == [
        (2, None, 0.1, 1.0)
    ]


def test_images_without_quality_oldest_first_with_older_versions(
    session: Session,  # noqa: F811
) -> None:
    ids = [_image(session, n) for n in range(5)]
    store_quality(session, ids[1], [_scene(0, 0.0, False, 9.0)])
    store_quality_error(session, ids[3], "unreadable")  # failed: not asked again
    store_quality(session, ids[4], [_scene(0, 0.0, False, 9.0)])
    session.execute(
        update(ImageQuality)
        .where(ImageQuality.image_id == ids[4])
        .values(version=QUALITY_VERSION - 1)
    )
    session.commit()
    assert [i.id for i in images_without_quality(session)] == [ids[0], ids[2], ids[4]]
    assert [i.id for i in images_without_quality(session, limit=2)] == [ids[0], ids[2]]
    # A row of a newer version than this code's counts as measured too.
    session.execute(
        update(ImageQuality)
        .where(ImageQuality.image_id == ids[4])
        .values(version=QUALITY_VERSION + 1)
    )
    session.commit()
    assert [i.id for i in images_without_quality(session)] == [ids[0], ids[2]]
    # Made at the same moment: by id (here inserted the other way round).
    late = START + timedelta(days=1)
    high = add_image(session, "high.czi", created_at=late, id=uuid.UUID(int=(1 << 128) - 1))
    low = add_image(session, "low.czi", created_at=late, id=uuid.UUID(int=1))
    assert [i.id for i in images_without_quality(session)] == [ids[0], ids[2], low, high]


def test_images_without_quality_default_to_100(session: Session) -> None:  # noqa: F811
    for n in range(101):
        session.add(
            image_row(f"f{n}", stored_name=f"s{n}", created_at=START + timedelta(seconds=n))
        )
    session.commit()
    found = images_without_quality(session)
    assert len(found) == 100
    assert [i.filename for i in found[:2]] == ["f0", "f1"]


def _flags_both_ways(db: Session, image_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """``quality_flags_for``, checked against the mask column of the same images."""
    by_rows = quality_flags_for(db, image_ids)
    masks = dict(
        db.execute(
            select(Image.id, quality_flag_mask().label("mask")).where(Image.id.in_(image_ids))
        ).all()
    )
    for image_id in image_ids:
        assert flags_of_mask(masks[image_id]) == by_rows.get(image_id, []), image_id
    return by_rows


def test_flags_at_their_thresholds(session: Session) -> None:  # noqa: F811
    ids = [_image(session, n) for n in range(6)]
    # At the thresholds: saturated at 1 %, weak signal at a signal-to-background of 3.
    store_quality(session, ids[0], [_scene(0, 0.01, False, 3.0)])
    # Just inside: nothing.
    store_quality(session, ids[1], [_scene(0, 0.0099, False, 3.01)])
    # Two scenes with the same problems: each flag once; focus at an edge in one scene.
    store_quality(session, ids[2], [_scene(0, 0.5, True, 1.0), _scene(1, 0.2, True, 2.0)])
    # A failed measurement is no flag; nor is an image never measured (ids[4]).
    store_quality_error(session, ids[3], "unreadable")
    # Only some measures known.
    store_quality(session, ids[5], [_scene(0, None, False, None), _scene(1, None, True, None)])
    flags = _flags_both_ways(session, ids)
    assert flags == {
        ids[0]: ["saturated", "weak signal"],
        ids[2]: ["saturated", "focus at edge", "weak signal"],
        ids[5]: ["focus at edge"],
    }
    masks = dict(
        session.execute(
            select(Image.id, quality_flag_mask().label("mask")).where(Image.id.in_(ids))
        ).all()
    )
    assert [masks[i] for i in ids] == [5, 0, 7, None, None, 2]
    assert quality_flags_for(session, []) == {}
    assert quality_flags_for(session, [ids[5], ids[1]]) == {ids[5]: ["focus at edge"]}
    assert flags_of_mask(0) == []
    assert flags_of_mask(7) == ["saturated", "focus at edge", "weak signal"]
    assert flags_of_mask(2) == ["focus at edge"]


@pytest.mark.postgres
def test_images_made_at_the_same_moment_come_by_id_on_postgresql(
    postgres_admin: str,  # noqa: F811 - the fixture imported above
    postgres_template: str,  # noqa: F811 - the fixture imported above
) -> None:
    """Why PostgreSQL: SQLite walks ``ix_images_created_at_id`` and gives ties by id anyway;
    PostgreSQL sorts a small table, ties in the order the rows were written."""
    url = create_pg_database(postgres_admin, postgres_template)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as db:
            ids = [
                add_image(db, f"t{n}.czi", created_at=START, id=uuid.UUID(int=n + 1))
                for n in (5, 3, 0, 4, 1, 2)
            ]
            assert [i.id for i in images_without_quality(db)] == sorted(ids)
    finally:
        engine.dispose()
        drop_pg_database(postgres_admin, url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest) -> Iterator[Session]:
    """A session on a migrated database of its own: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("session")
        return
    admin = request.getfixturevalue("postgres_admin")
    url = create_pg_database(admin, request.getfixturevalue("postgres_template"))
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as db:
            yield db
    finally:
        engine.dispose()
        drop_pg_database(admin, url)


def test_quality_of_an_image_deleted_meanwhile_is_dropped_quietly(
    any_db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    """The image went while its quality was measured: nothing stored, nothing raised, no ERROR.

    A refusal for an image that still exists (two rows for one scene) is raised, and
    its earlier rows stay.
    """
    gone, kept = _image(any_db, 0), _image(any_db, 1)
    store_quality(any_db, kept, [_scene(0, 0.5, True, 2.0)])
    any_db.execute(delete(Image).where(Image.id == gone))
    any_db.commit()
    caplog.set_level(logging.DEBUG, logger="zstack_analyzer")
    store_quality(any_db, gone, [_scene(0, 0.5, True, 2.0), _scene(1, 0.0, False, 9.0)])
    store_quality_error(any_db, gone, "unreadable")
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []
    said = [
        r.getMessage() for r in caplog.records if r.name == "zstack_analyzer.service.db.quality"
    ]
    assert len(said) == 2
    assert all(str(gone) in line and "deleted" in line for line in said)
    any_db.expire_all()
    assert any_db.scalars(select(ImageQuality).where(ImageQuality.image_id == gone)).all() == []
    # The session goes on, and a genuine refusal still surfaces.
    with pytest.raises(IntegrityError):
        store_quality(any_db, kept, [_scene(0, 0.0, False, 9.0), _scene(0, 0.1, False, 8.0)])
    any_db.rollback()
    row = get_quality(any_db, kept, 0)
    assert row is not None
    assert (row.max_saturated_fraction, row.focus_edge) == (0.5, True)
