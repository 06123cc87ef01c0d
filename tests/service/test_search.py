"""GET /api/images/search on SQLite (FTS5) and PostgreSQL (tsvector + GIN): the same cases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text

from tests.service.conftest import upload, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    ObjectiveInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.service.db import crud
from zstack_analyzer.service.images_service import build_image

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.db.session import Database


def add_record(
    database: Database,
    filename: str,
    *,
    file_format: str = "CZI",
    channels: tuple[tuple[str | None, str | None], ...] = (),
    objective: ObjectiveInfo | None = None,
    microscope: MicroscopeInfo | None = None,
    size_z: int = 1,
    pixel_um: float | None = None,
    acquired_at: datetime | None = None,
    acquired_at_local: datetime | None = None,
    scene_name: str | None = None,
    vendor: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> str:
    """A record stored through crud.add_image, the path every creator of records uses."""
    metadata = ImageMetadata(
        filename=filename,
        file_format=file_format,
        size_x=64,
        size_y=48,
        size_z=size_z,
        size_c=max(1, len(channels)),
        dtype="uint16",
        bit_depth=16,
        physical_size=PhysicalSize(x_um=pixel_um, y_um=pixel_um),
        channels=[
            ChannelInfo(index=i, name=name, fluorophore=fluor)
            for i, (name, fluor) in enumerate(channels)
        ],
        objective=objective,
        microscope=microscope,
        acquired_at=acquired_at,
        acquired_at_local=acquired_at_local,
        scene_name=scene_name,
        vendor_metadata=vendor or {},
    )
    scenes = [SceneInfo(index=0, name=scene_name, size_z=size_z, dtype="uint16")]
    image = build_image(
        image_id=uuid.uuid4(),
        filename=filename,
        stored_name=f"{uuid.uuid4().hex}.czi",
        size_bytes=1000,
        sha256=uuid.uuid4().hex * 2,
        metadata=metadata,
        scenes=scenes,
    )
    if created_at is not None:
        image.created_at = created_at
    database.call(crud.add_image, image)
    return str(image.id)


OIL_63 = ObjectiveInfo(
    name="Plan-Apochromat 63x/1.40 Oil DIC M27", magnification=63, immersion="Oil"
)
WATER_40 = ObjectiveInfo(name="C-Apochromat 40x/1.2 W Korr", magnification=40, immersion="Water")
AIR_10 = ObjectiveInfo(name="EC Plan-Neofluar 10x/0.30", magnification=10, immersion="Air")


@pytest.fixture(scope="module")
def search_client(
    module_database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One app per engine for the read-only cases (they share one corpus)."""
    from tests.service.conftest import _testclient_class
    from zstack_analyzer.service.app import create_app

    data = tmp_path_factory.mktemp("search") / "data"
    settings = make_settings(data, database_url=module_database_url)
    with _testclient_class()(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def corpus(search_client: TestClient) -> dict[str, str]:
    """Five records with distinct metadata; returns name -> id."""
    database: Database = search_client.app.state.database  # type: ignore[attr-defined]
    base = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "march_dapi_63": add_record(
            database,
            "nuclei_march.czi",
            channels=(("DAPI", "DAPI"), ("AF488", "Alexa Fluor 488")),
            objective=OIL_63,
            microscope=MicroscopeInfo(manufacturer="Zeiss", model="LSM 980", software="ZEN blue"),
            size_z=30,
            pixel_um=0.1,
            acquired_at=datetime(2025, 3, 14, 10, 0, tzinfo=UTC),
            scene_name="Well B4",
            created_at=base,
        ),
        "april_dapi_63": add_record(
            database,
            "nuclei_april.czi",
            channels=(("DAPI", None),),
            objective=OIL_63,
            size_z=12,
            pixel_um=0.1,
            acquired_at=datetime(2025, 4, 2, 9, 0, tzinfo=UTC),
            created_at=base + timedelta(hours=1),
        ),
        "march_gfp_40": add_record(
            database,
            "embryo.nd2",
            file_format="ND2",
            channels=(("GFP", "EGFP"),),
            objective=WATER_40,
            microscope=MicroscopeInfo(manufacturer="Nikon", software="NIS-Elements AR 5.41"),
            size_z=80,
            pixel_um=0.3,
            acquired_at_local=datetime(2025, 3, 31, 23, 0),
            vendor={"Experiment": {"Operator": "Grace Hopper", "Plate": "PX-2291"}},
            created_at=base + timedelta(hours=2),
        ),
        "tiff_plain": add_record(
            database,
            "overview scan.tif",
            file_format="TIFF",
            objective=AIR_10,
            size_z=1,
            pixel_um=1.2,
            created_at=base + timedelta(hours=3),
        ),
        "lif_mcherry": add_record(
            database,
            "timelapse.lif",
            file_format="LIF",
            channels=(("Ch1", "mCherry"),),
            size_z=5,
            created_at=base + timedelta(hours=4),
        ),
    }


def ids(client: TestClient, **params: Any) -> list[str]:
    response = client.get("/api/images/search", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == body["count"] >= len(body["data"])
    return [item["id"] for item in body["data"]]


def names(corpus: dict[str, str], found: list[str]) -> set[str]:
    by_id = {v: k for k, v in corpus.items()}
    return {by_id[i] for i in found}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("dapi", {"march_dapi_63", "april_dapi_63"}),  # channel name
        ("alexa fluor", {"march_dapi_63"}),  # fluorophore
        ("mcherry", {"lif_mcherry"}),
        ("apochromat 63x", {"march_dapi_63", "april_dapi_63"}),  # objective words
        ("Apochromat", {"march_dapi_63", "april_dapi_63", "march_gfp_40"}),
        ("nis elements", {"march_gfp_40"}),  # software
        ("LSM 980", {"march_dapi_63"}),  # microscope model
        ("zeiss", {"march_dapi_63"}),
        ("well b4", {"march_dapi_63"}),  # scene name
        ("hopper", {"march_gfp_40"}),  # vendor metadata value
        ("PX-2291", {"march_gfp_40"}),
        ("overview", {"tiff_plain"}),  # filename
        ("nucl", {"march_dapi_63", "april_dapi_63"}),  # words are prefixes
        ("dapi march", {"march_dapi_63"}),  # every word must match
        ("dapi nikon", set()),
        ("GRACE", {"march_gfp_40"}),  # case-insensitive
    ],
)
def test_free_text(
    search_client: TestClient, corpus: dict[str, str], query: str, expected: set[str]
) -> None:
    client = search_client
    assert names(corpus, ids(client, q=query)) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"format": "czi"}, {"march_dapi_63", "april_dapi_63"}),
        ({"format": "ND2"}, {"march_gfp_40"}),
        ({"channel": "dapi"}, {"march_dapi_63", "april_dapi_63"}),
        ({"channel": "EGFP"}, {"march_gfp_40"}),  # fluorophore
        ({"channel": "Alexa Fluor 488"}, {"march_dapi_63"}),
        ({"channel": "DAP"}, set()),  # a channel is a whole name, not a prefix
        ({"objective": "63x/1.40"}, {"march_dapi_63", "april_dapi_63"}),
        ({"objective": "neofluar"}, {"tiff_plain"}),
        ({"objective": "100%"}, set()),  # % is a character, not a wildcard
        ({"magnification": 40}, {"march_gfp_40"}),
        ({"immersion": "OIL"}, {"march_dapi_63", "april_dapi_63"}),
        ({"min_size_z": 12}, {"march_dapi_63", "april_dapi_63", "march_gfp_40"}),
        ({"max_size_z": 5}, {"tiff_plain", "lif_mcherry"}),
        ({"min_size_z": 12, "max_size_z": 30}, {"march_dapi_63", "april_dapi_63"}),
        ({"pixel_size_min_um": 0.2}, {"march_gfp_40", "tiff_plain"}),
        ({"pixel_size_max_um": 0.1}, {"march_dapi_63", "april_dapi_63"}),
        (
            {"acquired_after": "2025-03-01", "acquired_before": "2025-03-31"},
            {"march_dapi_63", "march_gfp_40"},  # the last day is included
        ),
        ({"acquired_after": "2025-04-01T00:00:00Z"}, {"april_dapi_63"}),
        ({"acquired_before": "2025-03-14T10:00:00+00:00"}, set()),  # a datetime bound is exclusive
        # "every 63x oil image with a DAPI channel from last March"
        (
            {
                "magnification": 63,
                "immersion": "oil",
                "channel": "DAPI",
                "acquired_after": "2025-03-01",
                "acquired_before": "2025-03-31",
            },
            {"march_dapi_63"},
        ),
        ({"q": "apochromat", "format": "ND2"}, {"march_gfp_40"}),
    ],
)
def test_typed_filters(
    search_client: TestClient, corpus: dict[str, str], params: dict[str, Any], expected: set[str]
) -> None:
    client = search_client
    assert names(corpus, ids(client, **params)) == expected


def test_newest_first_with_paging(search_client: TestClient, corpus: dict[str, str]) -> None:
    client = search_client
    everything = ids(client)
    assert everything == [
        corpus[k]
        for k in ("lif_mcherry", "tiff_plain", "march_gfp_40", "april_dapi_63", "march_dapi_63")
    ]
    page = client.get("/api/images/search", params={"skip": 1, "limit": 2}).json()
    assert [item["id"] for item in page["data"]] == everything[1:3]
    assert page["total"] == 5
    # the list endpoint's item shape
    listed = client.get("/api/images/", params={"limit": 1}).json()["data"][0]
    assert set(page["data"][0]) == set(listed)


@pytest.mark.parametrize(
    "query",
    [
        '"',
        "AND(",
        'dapi"',
        "NEAR(dapi",
        "*",
        "dapi OR 1=1 --",
        "'; DROP TABLE images; --",
        "^",
        "{x}:",
        "NOT",
    ],
)
def test_hostile_free_text_is_only_text(
    search_client: TestClient, corpus: dict[str, str], query: str
) -> None:
    client = search_client
    response = client.get("/api/images/search", params={"q": query})
    assert response.status_code == 200, response.text
    found = names(corpus, [item["id"] for item in response.json()["data"]])
    if "dapi" in query:
        # the punctuation is dropped, the words still have to match
        assert found <= {"march_dapi_63", "april_dapi_63"}
    assert client.get("/api/images/search").json()["total"] == 5  # table still there


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"format": "bmp-ish"}, "format"),
        ({"acquired_after": "last march"}, "acquired_after"),
        ({"acquired_before": "2025-13-01"}, "acquired_before"),
        ({"min_size_z": 10, "max_size_z": 2}, "min_size_z"),
        ({"pixel_size_min_um": 1, "pixel_size_max_um": 0.5}, "pixel_size_min_um"),
        ({"acquired_after": "2025-05-01", "acquired_before": "2025-04-01"}, "acquired_after"),
        ({"min_size_z": "many"}, "min_size_z"),
        ({"magnification": -5}, "magnification"),
        ({"min_size_z": 10**30}, "min_size_z"),  # would overflow the engine's integer
        ({"skip": 10**30}, "skip"),
        ({"pixel_size_max_um": "nan"}, "pixel_size_max_um"),
        ({"acquired_after": "99999-01-01"}, "acquired_after"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    search_client: TestClient, params: dict[str, Any], named: str
) -> None:
    client = search_client
    response = client.get("/api/images/search", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert named in response.text


@pytest.mark.parametrize(
    "params",
    [
        {"channel": "da\x00pi"},  # PostgreSQL refuses NUL in text
        {"objective": "\x00"},
        {"immersion": "oil\x1b[0m"},
        {"acquired_before": "9999-12-31"},  # the day after is out of range
        {"q": "\x00dapi"},
    ],
)
def test_odd_text_in_typed_filters_is_not_an_error(
    search_client: TestClient, corpus: dict[str, str], params: dict[str, Any]
) -> None:
    response = search_client.get("/api/images/search", params=params)
    assert response.status_code == 200, response.text


def test_upload_and_delete_keep_the_index_in_step(client: TestClient, tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "zebrafish heart.ome.tif")
    image_id = upload(client, path).json()["id"]
    assert ids(client, q="zebrafish") == [image_id]
    assert ids(client, format="OME-TIFF", min_size_z=5, max_size_z=5) == [image_id]
    assert client.delete(f"/api/images/{image_id}").status_code == 204
    assert ids(client, q="zebrafish") == []
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.engine.connect() as connection:
        channel_rows = connection.execute(text("SELECT count(*) FROM image_channels")).scalar()
        if connection.dialect.name == "sqlite":
            # documents in the index itself (images_fts reads its text from images)
            fts_rows = connection.execute(text("SELECT count(*) FROM images_fts_docsize")).scalar()
            assert fts_rows == 0
    assert channel_rows == 0


def test_migration_backfills_existing_rows(tmp_path: Path, database_url: str | None) -> None:
    """Rows stored before 0004 are searchable after the upgrade."""
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import Database, make_engine

    url = database_url or f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        upgrade_database(engine, "0001")
        metadata = ImageMetadata(
            filename="old.czi",
            file_format="CZI",
            size_x=4,
            size_y=4,
            dtype="uint8",
            bit_depth=8,
            channels=[ChannelInfo(index=0, name="Hoechst 33342")],
            objective=OIL_63,
        ).model_dump(mode="json")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO images (id, filename, stored_name, format, size_bytes, sha256,"
                    " width, height, depth, channels, timepoints, samples_per_pixel, bit_depth,"
                    " dtype, metadata, scenes, thumbnail_ready, created_at) VALUES (:id,"
                    " 'old.czi', 'x.czi', 'CZI', 1, :sha, 4, 4, 1, 1, 1, 1, 8, 'uint8', :meta,"
                    " '[]', false, :now)"
                ),
                {
                    "id": uuid.uuid4().hex
                    if engine.dialect.name == "sqlite"
                    else str(uuid.uuid4()),
                    "sha": "0" * 64,
                    "meta": __import__("json").dumps(metadata),
                    "now": datetime.now(UTC),
                },
            )
        upgrade_database(engine)
        from zstack_analyzer.service.db.search import SearchFilters, search_images

        database = Database(engine)
        found, total = database.call(search_images, SearchFilters(q="hoechst"))
        assert total == 1
        assert found[0].filename == "old.czi"
        _, by_channel = database.call(search_images, SearchFilters(channel="hoechst 33342"))
        _, by_magnification = database.call(search_images, SearchFilters(magnification=63))
        assert (by_channel, by_magnification) == (1, 1)
    finally:
        engine.dispose()


def test_startup_repairs_an_index_a_table_rebuild_broke(tmp_path: Path, make_client: Any) -> None:
    """A later SQLite migration that rebuilds ``images`` drops its triggers and renumbers rowids.

    (SQLite only: PostgreSQL keeps its trigger and index with the table.)
    """
    settings = make_settings(tmp_path / "data")
    client = make_client(settings)
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    first = add_record(database, "first.czi", channels=(("DAPI", None),))
    with database.engine.begin() as connection:  # what a "move and copy" rebuild leaves
        for name in ("images_fts_insert", "images_fts_delete", "images_fts_update"):
            connection.execute(text(f"DROP TRIGGER {name}"))
        connection.execute(text("UPDATE images SET rowid = rowid + 1000"))
    second = add_record(database, "second.czi", channels=(("DAPI", None),))
    assert set(ids(client, q="dapi")) != {first, second}  # out of step
    client.__exit__(None, None, None)
    restarted = make_client(settings)
    assert set(ids(restarted, q="dapi")) == {first, second}
    third = add_record(
        restarted.app.state.database,  # type: ignore[attr-defined]
        "third.czi",
        channels=(("DAPI", None),),
    )
    assert set(ids(restarted, q="dapi")) == {first, second, third}  # triggers back
