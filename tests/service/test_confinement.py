"""In-place originals: nothing outside the import roots is ever read (issue 21, section 1).

Each probe is what a hostile user with write access to an import root can do:
a chunk or companion that is a symlink out of the root, a registered file
swapped for a symlink / FIFO / socket / device / another file with the same
size and mtime (``touch -r``), including a swap between the server's check and
its open. The secret stands for ``/etc/passwd`` or ``/proc/self/environ``.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.service.conftest import write_ome_tiff

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

#: 64 bytes, one 8 x 8 uint8 chunk: what a symlinked chunk would hand out verbatim.
SECRET = b"root:x:0:0:root:/root:/bin/bash\nZSTACK_API_TOKEN=s3cret-token-x\n"
assert len(SECRET) == 64


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    return root


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def in_place_client(
    settings: Settings, roots: Path, make_client: Callable[..., TestClient]
) -> TestClient:
    return make_client(settings.model_copy(update={"import_roots": [roots]}))


def write_ome_zarr(folder: Path) -> Path:
    """An 8 x 8 uint8 NGFF 0.4 image, uncompressed: its one chunk file is the pixels' bytes."""
    import zarr

    group = zarr.open_group(str(folder), mode="w", zarr_format=2)
    array = group.create_array(
        "0",
        shape=(1, 1, 1, 8, 8),
        chunks=(1, 1, 1, 8, 8),
        dtype="uint8",
        compressors=None,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )
    array[...] = np.arange(64, dtype=np.uint8).reshape(1, 1, 1, 8, 8)
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "t", "type": "time"},
                {"name": "c", "type": "channel"},
                {"name": "z", "type": "space"},
                {"name": "y", "type": "space"},
                {"name": "x", "type": "space"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 1, 1]}],
                }
            ],
        }
    ]
    chunk = folder / "0" / "0" / "0" / "0" / "0" / "0"
    assert chunk.is_file()
    return chunk


def _register(client: TestClient, path: Path) -> Any:
    return client.post("/api/images/register", json={"path": str(path)})


def _refused(response: Any, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert SECRET not in response.content
    assert b"ZSTACK_API_TOKEN" not in response.content


def _same_size_and_mtime(target: Path, like: Path) -> None:
    """``touch -r``: give ``target`` the size and mtime of ``like``."""
    data = target.read_bytes()
    size = like.stat().st_size
    target.write_bytes((data * (size // len(data) + 1))[:size])
    st = like.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


# ---------------------------------------------------------------- symlinks inside a folder
def test_symlinked_chunk_in_a_zarr_folder_is_refused_at_registration(
    in_place_client: TestClient, roots: Path, secret: Path
) -> None:
    chunk = write_ome_zarr(roots / "evil.ome.zarr")
    chunk.unlink()
    chunk.symlink_to(secret)
    response = _register(in_place_client, roots / "evil.ome.zarr")
    _refused(response, 403)
    assert response.json()["code"] == "outside_import_roots"


def test_chunk_swapped_for_a_symlink_after_registration_is_never_served(
    in_place_client: TestClient, roots: Path, secret: Path
) -> None:
    chunk = write_ome_zarr(roots / "cells.ome.zarr")
    first = _register(in_place_client, roots / "cells.ome.zarr")
    assert first.status_code == 201, first.text
    image_id = first.json()["id"]
    # The folder's own mtime does not change when a chunk deep inside is replaced.
    chunk.unlink()
    chunk.symlink_to(secret)
    for route in (
        "zarr/0/0/0/0/0/0/0",
        "slice/0",
        "thumbnail",
        "mip",
        "histogram",
        "tile/0/0/0",
    ):
        _refused(in_place_client.get(f"/api/images/{image_id}/{route}"), 409)


def test_companion_symlinks_out_of_the_root_are_refused(
    in_place_client: TestClient, roots: Path, secret: Path, tmp_path: Path
) -> None:
    """A multi-file OME-TIFF whose companion XML is a symlink to a file outside the root."""
    from zstack_analyzer.confine import UnsafeFileError, inspect_confined

    write_ome_tiff(roots / "cells.ome.tif")
    outside_xml = tmp_path / "outside" / "cells.companion.ome"
    outside_xml.write_text("<OME/>")
    (roots / "cells.companion.ome").symlink_to(outside_xml)
    # Opening it by name, as any reader would, is refused where it lands.
    with pytest.raises(UnsafeFileError):
        (roots / "cells.companion.ome").read_bytes()
    (roots / "sub").mkdir()
    with pytest.raises(UnsafeFileError):
        inspect_confined(roots / "sub" / ".." / "cells.companion.ome")
    # .. beneath a root is judged by where it really lands.
    with pytest.raises(UnsafeFileError):
        (roots / ".." / "outside" / "passwd").read_bytes()
    assert (roots / "cells.ome.tif").read_bytes()[:2] in (b"II", b"MM")


def test_symlinks_inside_the_root_to_files_inside_it_still_read(
    in_place_client: TestClient, roots: Path
) -> None:
    chunk = write_ome_zarr(roots / "linked.ome.zarr")
    kept = roots / "chunk-store" / "c0"
    kept.parent.mkdir()
    kept.write_bytes(chunk.read_bytes())
    chunk.unlink()
    chunk.symlink_to(kept)
    first = _register(in_place_client, roots / "linked.ome.zarr")
    assert first.status_code == 201, first.text
    got = in_place_client.get(f"/api/images/{first.json()['id']}/zarr/0/0/0/0/0/0/0")
    assert got.status_code == 200
    assert got.content == bytes(range(64))


# ---------------------------------------------------------------- a swapped main file
def _registered_tiff(client: TestClient, roots: Path) -> tuple[str, Path]:
    source = write_ome_tiff(roots / "small.ome.tif")
    first = _register(client, source)
    assert first.status_code == 201, first.text
    return first.json()["id"], source


#: Every route that reads the original's bytes (metadata is served from the record).
ROUTES = ("download", "slice/0", "thumbnail", "histogram", "zarr/0/0/0/0/0/0/0", "tile/0/0/0")


def test_file_swapped_for_a_symlink_with_same_size_and_mtime(
    in_place_client: TestClient, roots: Path, secret: Path
) -> None:
    image_id, source = _registered_tiff(in_place_client, roots)
    _same_size_and_mtime(secret, source)
    source.unlink()
    source.symlink_to(secret)
    for route in ROUTES:
        _refused(in_place_client.get(f"/api/images/{image_id}/{route}"), 409)


def test_file_swapped_for_another_file_with_same_size_and_mtime(
    in_place_client: TestClient, roots: Path, secret: Path
) -> None:
    """The identity (device + inode) recorded at registration tells them apart."""
    image_id, source = _registered_tiff(in_place_client, roots)
    _same_size_and_mtime(secret, source)
    twin = roots / "twin"
    twin.write_bytes(secret.read_bytes())
    st = source.stat()
    os.utime(twin, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(twin, source)
    assert (source.stat().st_size, source.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    for route in ROUTES:
        _refused(in_place_client.get(f"/api/images/{image_id}/{route}"), 409)


@pytest.mark.parametrize("kind", ["fifo", "socket", "dev-zero", "dev-null"])
def test_file_swapped_for_fifo_socket_or_device(
    in_place_client: TestClient, roots: Path, kind: str
) -> None:
    image_id, source = _registered_tiff(in_place_client, roots)
    source.unlink()
    holder = None
    if kind == "fifo":
        os.mkfifo(source)
    elif kind == "socket":
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.bind(str(source))
    else:
        source.symlink_to("/dev/zero" if kind == "dev-zero" else "/dev/null")
    try:
        for route in ROUTES:
            _run_bounded(
                lambda r=route: _refused(
                    in_place_client.get(f"/api/images/{image_id}/{r}"), 409, 410
                )
            )
    finally:
        if holder is not None:
            holder.close()


def test_swap_between_the_check_and_the_open(
    in_place_client: TestClient, roots: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download checks the original, then opens it: a swap in between must not be served."""
    from zstack_analyzer.service.images_service import in_place_original
    from zstack_analyzer.service.routes import images

    image_id, source = _registered_tiff(in_place_client, roots)
    _same_size_and_mtime(secret, source)

    def check_then_swap(image: Any) -> Any:
        checked = in_place_original(image)
        source.unlink()
        source.symlink_to(secret)  # the attacker wins the race right after the check
        return checked

    monkeypatch.setattr(images, "in_place_original", check_then_swap)
    _refused(in_place_client.get(f"/api/images/{image_id}/download"), 409)


def _run_bounded(func: Callable[[], None], seconds: float = 60.0) -> None:
    """Run ``func`` in a thread; a hang (a blocked open) fails the test instead of the suite."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            func()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the request hung (an open blocked)"
    if errors:
        raise errors[0]


# ---------------------------------------------------------------- registration of non-files
@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_register_refuses_fifo_and_socket_without_opening(
    in_place_client: TestClient, roots: Path, kind: str
) -> None:
    path = roots / f"{kind}.tif"
    holder = None
    if kind == "fifo":
        os.mkfifo(path)
    else:
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.bind(str(path))
    try:

        def probe() -> None:
            response = _register(in_place_client, path)
            assert response.status_code == 403, response.text
            assert response.json()["code"] == "not_a_regular_file"

        _run_bounded(probe)
    finally:
        if holder is not None:
            holder.close()


def test_register_refuses_a_nul_in_the_path(in_place_client: TestClient, roots: Path) -> None:
    response = in_place_client.post("/api/images/register", json={"path": f"{roots}/a\x00b.tif"})
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "outside_import_roots"


def test_ingest_task_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    from zstack_analyzer.batch.tasks import FileJob, hash_file, process_file
    from zstack_analyzer.limits import ReadLimits

    fifo = tmp_path / "stack.tif"
    os.mkfifo(fifo)
    results: list[Any] = []
    _run_bounded(lambda: results.append(process_file(FileJob(str(fifo), ReadLimits()))))
    assert results[0].status == "refused"
    # Swapped in after the stat: the hash's own open does not block either.
    with pytest.raises(PermissionError):
        _run_bounded(lambda: hash_file(fifo) and None)


def test_oif_plane_file_swapped_for_a_symlink_out_is_refused(
    in_place_client: TestClient, roots: Path, tmp_path: Path
) -> None:
    """An OIF's plane files live in its companion folder: one symlinked to another image outside."""
    from tests.synthetic_oif import plane_files, write_oif

    stack = np.arange(1 * 2 * 3 * 16 * 20, dtype=np.uint16).reshape(1, 2, 3, 16, 20)
    main = write_oif(roots, stack)
    first = _register(in_place_client, main)
    assert first.status_code == 201, first.text
    image_id = first.json()["id"]
    assert in_place_client.get(f"/api/images/{image_id}/slice/0").status_code == 200
    # (Renders already cached are the registered pixels: serving them leaks nothing.)
    # Another user's image outside the root, with the same layout (plane for plane).
    elsewhere = tmp_path / "outside" / "private"
    elsewhere.mkdir(parents=True)
    secret_stack = np.full_like(stack, 4242)
    for name, data in plane_files(secret_stack).items():
        (elsewhere / name).write_bytes(data)
    companion = roots / "cells.oif.files"
    for plane in companion.iterdir():
        if plane.suffix.lower() == ".tif":
            plane.unlink()
            plane.symlink_to(elsewhere / plane.name)
    for route in ("slice/1", "mip", "zarr/0/0/0/0/1/0/0", "histogram"):
        response = in_place_client.get(f"/api/images/{image_id}/{route}")
        assert response.status_code == 409, (route, response.status_code, response.text[:200])


def test_registering_a_swapped_file_again_refreshes_the_record(
    in_place_client: TestClient, roots: Path, secret: Path, tmp_path: Path
) -> None:
    """Same path, size and mtime but another file: not 'already registered', read again."""
    image_id, source = _registered_tiff(in_place_client, roots)
    replacement = write_ome_tiff(tmp_path / "other.ome.tif", seed=3)
    assert replacement.stat().st_size == source.stat().st_size
    st = source.stat()
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, source)
    assert in_place_client.get(f"/api/images/{image_id}/slice/1").status_code == 409
    again = _register(in_place_client, source)
    assert again.status_code == 200, again.text
    assert again.json()["message"].startswith("Refreshed")
    assert again.json()["id"] == image_id
    assert in_place_client.get(f"/api/images/{image_id}/slice/1").status_code == 200
