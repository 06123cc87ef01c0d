"""A page of summaries read in SQL says what the whole records say.

Why: the image list, a dataset's images and the search route build their
pages from :mod:`~zstack_analyzer.service.image_summaries` (one statement: the
summary columns, the scene count, the whole-slide variant's vendor value, the
owner's and group's names and the quality flags as subqueries), no longer
from ORM records. The reference here is the record's own view
(``to_public``, what ``GET /api/images/{id}`` answers) with its quality flags
(``quality_flags_for``). Each of
those derived values has its own SQL on each engine (``jsonb_array_length`` or
``json_array_length``, a JSON path, an aggregate bit mask); a wrong one gives
a wrong badge or count on one engine only. Checked on SQLite and PostgreSQL
against known values and against the records' own summaries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import insert, update

from tests.service.test_search import add_record
from zstack_analyzer.service.annotations.models import Dataset, DatasetImage
from zstack_analyzer.service.auth.labels import labels_for
from zstack_analyzer.service.auth.models import Group, Permission, User
from zstack_analyzer.service.auth.permissions import (
    SINGLE_USER,
    GroupRole,
    Principal,
    visible_images_filter,
)
from zstack_analyzer.service.db.migrations import upgrade_database
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.db.quality import ImageQuality, quality_flags_for
from zstack_analyzer.service.db.search import SearchFilters, search_images
from zstack_analyzer.service.db.session import Database, make_engine
from zstack_analyzer.service.image_summaries import (
    search_summaries,
    summaries_page,
    summary_columns,
)
from zstack_analyzer.service.images_service import to_public
from zstack_analyzer.service.schemas import ImageSummary

if TYPE_CHECKING:
    from collections.abc import Iterator


DICOM_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
LAB, OWNER = 301, 401
HIDDEN = 302  # a group the member below is not in: its dataset holds one of the lab's images
#: Records made at the same minute as the one before them: a page orders ties by id.
TIES = {"odd.tif", "named.dcm"}
#: filename -> (format, vendor metadata, the variant a list must show)
FILES: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "slide.svs": ("TIFF", {"slide_format": "svs"}, "SVS"),
    "slide.ndpi": ("TIFF", {"slide_format": "NDPI"}, "NDPI"),
    "plain.tif": ("TIFF", {"software": "ImageJ"}, None),
    "odd.tif": ("TIFF", {"slide_format": 7}, None),  # not a string: no variant, no error
    "wsi.dcm": ("DICOM", {"sop_class": DICOM_WSI}, "DICOM WSI"),
    "named.dcm": ("DICOM", {"sop_class": "VL Whole Slide Microscopy Image Storage"}, "DICOM WSI"),
    "ct.dcm": ("DICOM", {"sop_class": "1.2.840.10008.5.1.4.1.1.2"}, None),
    # A CZI's vendor block may hold the same key: only TIFF and DICOM have variants.
    "stack.czi": ("CZI", {"slide_format": "svs"}, None),
}
#: filename -> (scene, saturated share, focus at an edge, SNR, error) rows of image_quality
QUALITY: dict[str, list[tuple[int, float | None, bool, float | None, str | None]]] = {
    # Two scenes, each with a different problem: all three flags, in the badge's order.
    "slide.svs": [(0, 0.002, True, 50.0, None), (1, 0.05, False, 2.0, None)],
    "slide.ndpi": [(0, 0.01, False, 3.0, None)],  # exactly at both thresholds: flagged
    "plain.tif": [(0, 0.009, False, 3.5, None)],  # just inside both: no flag
    "wsi.dcm": [(0, 0.9, True, 0.5, "read error")],  # failed measure: not flagged
    "ct.dcm": [(0, None, False, None, None)],  # measured, nothing known: no flag
}
FLAGS = {
    "slide.svs": ["saturated", "focus at edge", "weak signal"],
    "slide.ndpi": ["saturated", "weak signal"],
}
SCENES = {"slide.svs": 3, "wsi.dcm": 2}  # every other record has one scene
IN_PLACE = "/archive/lab/stack.czi"


@pytest.fixture(autouse=True, scope="module")
def _columns_built_here() -> None:
    """Build the summary columns anew (they are cached per dialect for the process).

    Why: a process that built them before (another module, or the parent a
    mutation tester forks from) would hand these tests its expressions, and a
    change to how they are built would go unseen.
    """
    summary_columns.cache_clear()


@pytest.fixture(scope="module")
def archive(
    module_database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A migrated database with :data:`FILES`, their quality rows, scenes, owner and group."""
    url = (
        module_database_url or f"sqlite:///{tmp_path_factory.mktemp('summaries') / 'summaries.db'}"
    )
    engine = make_engine(url)
    try:
        upgrade_database(engine)
        yield _populate(Database(engine))
    finally:
        engine.dispose()


def _populate(database: Database) -> Database:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    minutes = 0
    ids = {}
    for name, (file_format, vendor, _variant) in FILES.items():
        minutes += name not in TIES
        made = start + timedelta(minutes=minutes)
        ids[name] = uuid.UUID(
            add_record(database, name, file_format=file_format, vendor=vendor, created_at=made)
        )
    with database.sessions() as session:
        session.execute(
            insert(Group),
            [
                {"id": LAB, "name": "lab", "permissions": Permission.READ_ONLY.value},
                {"id": HIDDEN, "name": "hidden", "permissions": Permission.PRIVATE.value},
            ],
        )
        hidden = Dataset(name="Secret plate", group_id=HIDDEN)
        session.add(hidden)
        session.flush()
        session.add(DatasetImage(dataset_id=hidden.id, image_id=ids["slide.svs"]))
        session.execute(insert(User), [{"id": OWNER, "username": "ada"}])
        for name, rows in QUALITY.items():
            for scene, saturated, edge, snr, error in rows:
                session.add(
                    ImageQuality(
                        image_id=ids[name],
                        scene=scene,
                        max_saturated_fraction=saturated,
                        focus_edge=edge,
                        min_snr=snr,
                        error=error,
                        data={},
                    )
                )
        for name, count in SCENES.items():
            scenes = [{"index": i, "name": f"s{i}"} for i in range(count)]
            session.execute(update(Image).where(Image.id == ids[name]).values(scenes=scenes))
        # Owned and grouped: the slides; the CZI is registered in place.
        session.execute(
            update(Image)
            .where(Image.id.in_([ids["slide.svs"], ids["wsi.dcm"]]))
            .values(owner_id=OWNER, group_id=LAB)
        )
        session.execute(update(Image).where(Image.id == ids["ct.dcm"]).values(group_id=LAB))
        session.execute(
            update(Image)
            .where(Image.id == ids["stack.czi"])
            .values(stored_in_place=True, source_path=IN_PLACE)
        )
        # A record whose source path is set but that is a copy: the path is not shown.
        session.execute(
            update(Image).where(Image.id == ids["plain.tif"]).values(source_path="/old/place")
        )
        session.commit()
    return database


def _lean(database: Database, filters: SearchFilters, **kw: Any) -> tuple[list[ImageSummary], int]:
    """``search_summaries`` with the first page of 100 and no visibility narrowing unless given."""
    options: dict[str, Any] = {"skip": 0, "limit": 100, "visible": None, **kw}
    return database.call(lambda session: search_summaries(session, filters, **options))


def _records(
    database: Database, filters: SearchFilters, **kw: Any
) -> tuple[list[ImageSummary], int]:
    def run(session: Any) -> tuple[list[ImageSummary], int]:
        rows, total = search_images(session, filters, **kw)
        labels = labels_for(session, rows)
        flags = quality_flags_for(session, [row.id for row in rows])
        fields = set(ImageSummary.model_fields)
        summaries = [
            ImageSummary(
                **{
                    **to_public(row, labels).model_dump(include=fields),
                    "quality_flags": flags.get(row.id, []),
                }
            )
            for row in rows
        ]
        return summaries, total

    return database.call(run)


def _newest_first(database: Database) -> list[str]:
    """Every filename in page order: newest first, ties by id (the rule written out)."""
    from sqlalchemy import select

    rows = database.call(
        lambda session: session.execute(select(Image.filename, Image.created_at, Image.id)).all()
    )
    by_id = sorted(rows, key=lambda row: row.id)
    return [row.filename for row in sorted(by_id, key=lambda row: row.created_at, reverse=True)]


def test_the_fixture_has_ties(archive: Database) -> None:
    """Guards the order checks: tied records whose ids are not in insertion order."""
    from sqlalchemy import func, select

    assert len(_newest_first(archive)) == len(FILES)
    tied = archive.call(
        lambda session: session.scalar(
            select(func.count()).select_from(
                select(Image.created_at)
                .group_by(Image.created_at)
                .having(func.count() > 1)
                .subquery()
            )
        )
    )
    assert tied == len(TIES)


def test_every_derived_value(archive: Database) -> None:
    summaries, total = _lean(archive, SearchFilters())
    assert total == len(FILES)
    by_name = {s.filename: s for s in summaries}
    assert [s.filename for s in summaries] == _newest_first(archive)
    for name, (file_format, _vendor, variant) in FILES.items():
        summary = by_name[name]
        assert summary.format == file_format, name
        assert summary.format_variant == variant, name
        assert summary.quality_flags == FLAGS.get(name, []), name
        assert summary.scene_count == SCENES.get(name, 1), name
        assert summary.created_at.tzinfo is not None, name
    assert (by_name["slide.svs"].owner, by_name["slide.svs"].group) == ("ada", "lab")
    assert (by_name["slide.svs"].owner_id, by_name["slide.svs"].group_id) == (OWNER, LAB)
    assert (by_name["ct.dcm"].owner, by_name["ct.dcm"].group) == (None, "lab")
    # Records made without accounts belong to the default group.
    assert (by_name["stack.czi"].owner, by_name["stack.czi"].group) == (None, "default")
    assert by_name["stack.czi"].stored_in_place is True
    assert by_name["stack.czi"].source_path == IN_PLACE
    assert by_name["plain.tif"].stored_in_place is False
    assert by_name["plain.tif"].source_path is None


def _without_flag_order(summaries: list[ImageSummary]) -> list[dict[str, Any]]:
    """Summaries as dicts, the flags as a set (the records' path lists them in row order)."""
    return [{**s.model_dump(), "quality_flags": set(s.quality_flags)} for s in summaries]


SEARCHES = [
    SearchFilters(),
    SearchFilters(format="TIFF"),
    SearchFilters(format="DICOM"),
    SearchFilters(q="slide"),
    SearchFilters(saturated_min=0.01),
    SearchFilters(focus_edge=True),
    SearchFilters(snr_max=3.0),
    SearchFilters(q="nothing-like-this"),
]


@pytest.mark.parametrize("filters", SEARCHES, ids=[repr(f) for f in SEARCHES])
@pytest.mark.parametrize(("skip", "limit"), [(0, 100), (1, 2), (3, 1), (20, 5)])
def test_the_same_page_as_the_records(
    archive: Database, filters: SearchFilters, skip: int, limit: int
) -> None:
    lean, lean_total = _lean(archive, filters, skip=skip, limit=limit)
    whole, whole_total = _records(archive, filters, skip=skip, limit=limit)
    assert lean_total == whole_total
    assert _without_flag_order(lean) == _without_flag_order(whole)


def test_visibility_applies(archive: Database) -> None:
    """A group member sees the lab's images only, on the page and in the total."""
    member = Principal(
        user_id=OWNER + 1,
        username="bob",
        groups={LAB: GroupRole(group_id=LAB, name="lab", level=Permission.READ_ONLY)},
        via="api-token",
    )
    summaries, total = _lean(
        archive, SearchFilters(), visible=visible_images_filter(member), principal=member
    )
    assert sorted(s.filename for s in summaries) == ["ct.dcm", "slide.svs", "wsi.dcm"]
    assert total == 3
    # The lab's slide is in a dataset of a group the member is not in: by that dataset,
    # the member finds nothing; the admin finds the slide.
    secret = SearchFilters(dataset="secret plate")
    assert _lean(archive, secret, visible=visible_images_filter(member), principal=member) == (
        [],
        0,
    )
    found, found_total = _lean(
        archive, secret, visible=visible_images_filter(SINGLE_USER), principal=SINGLE_USER
    )
    assert ([s.filename for s in found], found_total) == (["slide.svs"], 1)
    everyone, everyone_total = _lean(
        archive, SearchFilters(), visible=visible_images_filter(SINGLE_USER)
    )
    assert (len(everyone), everyone_total) == (len(FILES), len(FILES))


def test_a_plain_list_page(archive: Database) -> None:
    """``summaries_page`` (the image list, a dataset's images): conditions, paging, total."""
    from zstack_analyzer.service.db.crud import image_list_conditions

    def page(q: str | None, skip: int, limit: int) -> tuple[list[str], int]:
        conditions = image_list_conditions(q, visible_images_filter(SINGLE_USER))
        summaries, total = archive.call(
            lambda session: summaries_page(session, conditions, skip=skip, limit=limit)
        )
        return [s.filename for s in summaries], total

    newest_first = _newest_first(archive)
    assert page(None, 0, 100) == (newest_first, len(FILES))
    assert page(None, 2, 3) == (newest_first[2:5], len(FILES))
    assert page("SLIDE.", 0, 100) == (["slide.ndpi", "slide.svs"], 2)  # any case
    # Ties are paged by id, page after page.
    assert [page(None, n, 1)[0][0] for n in range(len(FILES))] == newest_first
    assert page("slide.", 1, 100) == (["slide.svs"], 2)
    assert page("%", 0, 100) == ([], 0)  # matched literally
    assert page(None, 50, 10) == ([], len(FILES))
    whole, _ = _records(archive, SearchFilters(), limit=100)
    lean, _ = archive.call(
        lambda session: summaries_page(
            session, image_list_conditions(None, None), skip=0, limit=100
        )
    )
    assert _without_flag_order(lean) == _without_flag_order(whole)
