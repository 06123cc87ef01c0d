"""The virtual OME-Zarr of stored images, read over real HTTP by zarr (fsspec) and ome-zarr-py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
import zarr

from tests.omezarr.helpers import (
    dim_stack,
    expected_level,
    first_multiscale,
    ngff_planes_from_loader,
    validate_image,
)
from tests.service.live import live_server
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer import open_image

if TYPE_CHECKING:
    from pathlib import Path

CALIBRATED = {"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0}


def _upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as fh:
        response = client.post("/api/images/upload", files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("virtual")
    return {
        "scenes": write_ome_tiff(
            folder / "two.ome.tif",
            [encoded_stack(1, 2, 3, 1100, 700), encoded_stack(2, 1, 2, 40, 30)],
            metadata=[CALIBRATED, {}],
        ),
        "tiled": write_ome_tiff(
            folder / "tall.ome.tif",
            [encoded_stack(1, 1, 1, 4500, 600, dtype="uint8")],
            tile=(256, 256),
            compression="zlib",
        ),
    }


def test_zarr_and_ome_zarr_py_read_the_virtual_store(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    with live_server(tmp_path / "data") as base, httpx.Client(base_url=base, timeout=120) as client:
        image_id = _upload(client, files["scenes"])
        url = f"{base}/api/images/{image_id}/zarr/"
        with open_image(files["scenes"]) as reader:
            scene0 = np.asarray(reader.to_dask(0).compute())
            scene1 = np.asarray(reader.to_dask(1).compute())

        group = zarr.open_group(url, mode="r", zarr_format=2)
        multiscale = first_multiscale(validate_image(group, "0.4"), "0.4")
        assert [d.path for d in multiscale.datasets] == ["0/0", "0/1", "0/2"]
        assert multiscale.datasets[1].coordinateTransformations[0].scale == [1, 1, 2.0, 1.0, 1.0]
        assert [a.unit for a in multiscale.axes][2:] == ["micrometer"] * 3
        np.testing.assert_array_equal(group["0/0"][:], scene0)
        np.testing.assert_array_equal(group["0/1"][:], expected_level(scene0, 1))
        np.testing.assert_array_equal(group["0/2"][:], expected_level(scene0, 2))
        assert group["0/2"].shape == (1, 2, 3, 275, 175)

        other = zarr.open_group(f"{url}1/", mode="r", zarr_format=2)
        validate_image(other, "0.4")
        np.testing.assert_array_equal(other["0"][:], scene1)

        location = parse_url(url)
        assert location is not None
        node = next(iter(Reader(location)()))
        assert [d.shape for d in node.data] == [
            (1, 2, 3, 1100, 700),
            (1, 2, 3, 550, 350),
            (1, 2, 3, 275, 175),
        ]
        np.testing.assert_array_equal(np.asarray(node.data[0][0, 1, 2]), scene0[0, 1, 2])
        assert node.metadata["channel_names"] == ["C0", "C1"]

        # Our own reader opens OME-Zarr by URL too (here: the virtual store itself).
        with open_image(url) as remote:
            assert remote.metadata(0).get_voxel_size_micrometers() == (0.5, 0.5, 2.0)
            assert remote.level_count(0) == 3
            np.testing.assert_array_equal(remote.read_plane(0, 0, 1, 1), scene0[0, 1, 1])


def test_tiles_etags_missing_keys_and_the_render_cache(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    data_dir = tmp_path / "data"
    with live_server(data_dir) as base, httpx.Client(base_url=base, timeout=120) as client:
        image_id = _upload(client, files["tiled"])
        root = f"/api/images/{image_id}/zarr"
        zarray = client.get(f"{root}/0/0/.zarray")
        assert zarray.status_code == 200
        assert zarray.headers["content-type"] == "application/json"
        assert zarray.json()["chunks"] == [1, 1, 1, 256, 256]
        assert zarray.json()["shape"] == [1, 1, 1, 4500, 600]

        with open_image(files["tiled"]) as reader:
            plane = reader.read_plane(0, 0, 0, 0)
        chunk = client.get(f"{root}/0/0/0/0/0/17/2")
        assert chunk.headers["content-type"] == "application/octet-stream"
        tile = np.frombuffer(chunk.content, dtype=np.uint8).reshape(256, 256)
        np.testing.assert_array_equal(tile[:148, :88], plane[17 * 256 :, 512:])
        assert not tile[148:].any() and not tile[:, 88:].any()  # edge chunk padded with 0

        etag = chunk.headers["etag"]
        again = client.get(f"{root}/0/0/0/0/0/17/2", headers={"If-None-Match": etag})
        assert again.status_code == 304

        top = client.get(f"{root}/0/4/0/0/0/0/0")
        assert top.status_code == 200
        expected_top = expected_level(plane[None, None, None], 4)[0, 0, 0]
        # Level 4 is 282 x 38: chunks are 256 x 38 (a chunk never exceeds its level).
        got = np.frombuffer(top.content, dtype=np.uint8).reshape(256, 38)
        np.testing.assert_array_equal(got, expected_top[:256])
        cached = list((data_dir / "cache").rglob("vz1-s0-l*"))
        assert {p.name.split("-")[2] for p in cached} == {"l1", "l2", "l3", "l4"}

        for missing in ("0/9/.zarray", "0/0/0/0/0/99/0", "3/.zgroup", "0/0/.zgroup", "nonsense"):
            response = client.get(f"{root}/{missing}")
            assert response.status_code == 404, missing
            assert response.json()["code"] == "no_such_key"
        unknown = client.get("/api/images/00000000-0000-0000-0000-000000000000/zarr/.zgroup")
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "image_not_found"


def test_auth_and_cors_apply(tmp_path: Path, files: dict[str, Path]) -> None:
    origin = "http://vizarr.example"
    with (
        live_server(
            tmp_path / "data",
            api_token="s3cret",  # noqa: S106
            cors_origins=[origin],
        ) as base,
        httpx.Client(base_url=base, timeout=120) as client,
    ):
        auth = {"Authorization": "Bearer s3cret"}
        with files["scenes"].open("rb") as fh:
            up = client.post(
                "/api/images/upload", files={"file": ("two.ome.tif", fh)}, headers=auth
            )
        image_id = up.json()["id"]
        key = f"/api/images/{image_id}/zarr/.zattrs"
        assert client.get(key).status_code == 401
        collection = f"/api/images/{image_id}.ome.zarr/OME/METADATA.ome.xml"
        assert client.get(collection).status_code == 401
        assert client.get(collection, headers=auth).status_code == 200
        ok = client.get(key, headers={**auth, "Origin": origin})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == origin
        assert "etag" in ok.headers["access-control-expose-headers"].lower()
        group = zarr.open_group(
            f"{base}/api/images/{image_id}/zarr/",
            mode="r",
            zarr_format=2,
            storage_options={"headers": auth},
        )
        assert group["0/0"].shape == (1, 2, 3, 1100, 700)


def test_the_ome_zarr_url_is_a_collection_of_every_series(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    """``/api/images/{id}.ome.zarr/``: bioformats2raw layout 3, every series read by real clients."""
    import ome_types
    from defusedxml import ElementTree
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw

    with live_server(tmp_path / "data") as base, httpx.Client(base_url=base, timeout=120) as client:
        image_id = _upload(client, files["scenes"])
        url = f"{base}/api/images/{image_id}.ome.zarr/"
        root = zarr.open_group(url, mode="r", zarr_format=2)
        collection = BioFormats2Raw.from_zarr(root)
        assert collection.attributes.bioformats2raw_layout == 3
        assert collection.image_paths == ["0", "1"]
        assert root["OME"].attrs["series"] == ["0", "1"]

        xml = client.get(f"/api/images/{image_id}.ome.zarr/OME/METADATA.ome.xml")
        assert xml.status_code == 200
        assert xml.headers["content-type"].startswith("application/xml")
        ome = ElementTree.fromstring(xml.content)
        validated = ome_types.from_xml(xml.text, validate=True)  # the OME 2016-06 schema
        assert [image.name for image in validated.images] == ["Image0", "Image1"]
        ns = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
        images = ome.findall("ome:Image", ns)
        assert [(i.get("ID"), i.get("Name")) for i in images] == [
            ("Image:0", "Image0"),
            ("Image:1", "Image1"),
        ]
        sizes = [
            tuple(int(p.get(f"Size{a}")) for a in "TCZYX")
            for p in (i.find("ome:Pixels", ns) for i in images)
            if p is not None
        ]
        assert sizes == [(1, 2, 3, 1100, 700), (2, 1, 2, 40, 30)]

        for series in ("0", "1"):
            expected = ngff_planes_from_loader(files["scenes"], int(series))
            validate_image(root[series], "0.4")
            location = parse_url(f"{url}{series}/")
            assert location is not None
            node = next(iter(Reader(location)()))
            np.testing.assert_array_equal(np.asarray(node.data[0]), expected)
            assert node.metadata["name"] == f"Image{series}"

        # The single-scene URL is unchanged: scene 0 at the root, no OME group there.
        assert "multiscales" in client.get(f"/api/images/{image_id}/zarr/.zattrs").json()
        assert client.get(f"/api/images/{image_id}/zarr/OME/.zattrs").status_code == 404
        single = client.get(f"/api/images/{image_id}/zarr/.zattrs").headers["etag"]
        assert client.get(f"/api/images/{image_id}.ome.zarr/.zattrs").headers["etag"] != single
        missing = client.get(f"/api/images/{image_id}.ome.zarr/OME/nothing")
        assert missing.status_code == 404
        assert missing.json()["code"] == "no_such_key"


def test_windows_and_names_over_http(tmp_path: Path) -> None:
    """A 16-bit image at 76..304 gets its own window; an unnamed one its uploaded name."""
    import tifffile

    from zstack_analyzer.zarr.writer import convert

    plain = tmp_path / "dim cells.tif"
    tifffile.imwrite(plain, dim_stack(1, 1, 300, 200)[0, 0, 0])
    convert(plain, tmp_path / "dim.ome.zarr")
    written = zarr.open_group(str(tmp_path / "dim.ome.zarr"), mode="r").attrs["omero"]
    with live_server(tmp_path / "data") as base, httpx.Client(base_url=base, timeout=120) as client:
        image_id = _upload(client, plain)
        for root in (f"/api/images/{image_id}/zarr", f"/api/images/{image_id}.ome.zarr/0"):
            attrs = client.get(f"{root}/.zattrs").json()
            window = attrs["omero"]["channels"][0]["window"]
            assert window == written["channels"][0]["window"]
            assert 76 <= window["start"] < window["end"] <= 320
            assert attrs["multiscales"][0]["name"] == "dim cells.tif"
            assert attrs["omero"]["name"] == "dim cells.tif"
        xml = client.get(f"/api/images/{image_id}.ome.zarr/OME/METADATA.ome.xml").text
        assert 'Name="dim cells.tif"' in xml
