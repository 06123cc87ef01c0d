"""Property-based API test: schemathesis drives every operation of the app's own OpenAPI.

Over a real socket (uvicorn with the same limits as ``zstack serve``), on SQLite
and PostgreSQL, with auth off and on: no answer may be a 500, and every answer
must match the document (status code declared, content type, body schema).
Half of the cases use the id of a real uploaded stack, so the render routes are
exercised with generated parameters, not only 404s. Generation is derandomised
(the same cases every run) and bounded by ``EXAMPLES`` per operation.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import write_ome_tiff
from tests.service.live import live_server

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.service.config import Settings

#: Generated cases per operation with auth off (SQLite and PostgreSQL x 101 operations).
EXAMPLES = 40
#: With auth on: one case in two goes without the token and is answered 401 by the guard
#: before the route runs, the others reach the same routes as with auth off. Half the
#: cases keep every operation and check (and the 401s) for half the time.
EXAMPLES_AUTH_ON = EXAMPLES // 2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
TOKEN = "fuzz-token"  # noqa: S105  (a test server's token)

#: Totals over the configurations this process ran (printed for the closing note).
TALLY: Counter[str] = Counter()


@pytest.mark.parametrize("auth", ["auth-off", "auth-on"])
def test_openapi_cases_never_fail(tmp_path: Path, settings: Settings, auth: str) -> None:
    token = TOKEN if auth == "auth-on" else None
    database_url = settings.database_url  # migrated already (tests/service/conftest.py)
    source = write_ome_tiff(tmp_path / "fuzz.ome.tif", (2, 3, 16, 20))
    with live_server(settings.data_dir, database_url=database_url, api_token=token) as base:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with source.open("rb") as fh:
            uploaded = session.post(
                f"{base}/api/images/upload", files={"file": ("fuzz.ome.tif", fh)}, headers=headers
            )
        assert uploaded.status_code == 201, uploaded.text
        real_id = uploaded.json()["id"]
        # The first /openapi.json builds the document (seconds on a loaded machine; the
        # loader's default read timeout is 10 s): as patient as the cases below.
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json", timeout=120)
        statuses: Counter[int] = Counter()
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 14

        def runner(operation: Any) -> Any:
            @given(case=operation.as_strategy(), use_real=st.booleans(), send_token=st.booleans())
            @hypothesis_settings(
                max_examples=EXAMPLES if token is None else EXAMPLES_AUTH_ON,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any, use_real: bool, send_token: bool) -> None:
                path_parameters = case.path_parameters or {}
                if "image_id" in path_parameters and use_real and operation.method != "delete":
                    path_parameters["image_id"] = real_id
                # With auth on, one case in two (roughly) goes without the token: 401.
                extra = headers if token is None or send_token else {}
                response = case.call(session=session, headers=extra, timeout=120)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS, headers=extra)

            return run

        for operation in operations:
            runner(operation)()
        # The real image is still there and whole (no generated request corrupted it).
        download = session.get(f"{base}/api/images/{real_id}/download", headers=headers)
        assert download.content == source.read_bytes()
    assert not [status for status in statuses if status >= 500], statuses
    if token is not None:
        assert statuses[401] > 0
    assert statuses[200] > 0 and statuses[404] > 0 and statuses[422] > 0
    TALLY.update(
        {f"{(database_url and 'postgres') or 'sqlite'}/{auth}/{k}": v for k, v in statuses.items()}
    )
    print(
        f"schemathesis {auth} {'postgres' if database_url else 'sqlite'}: {dict(sorted(statuses.items()))}"
    )


#: Path segments a hostile zarr client sends: non-ASCII digits (``isdigit`` is true for
#: all of them), Python's int-digit limit, signs, spaces, dots and empty segments.
HOSTILE_PARTS = st.one_of(
    st.sampled_from(
        [
            "0",
            "1",
            ".zattrs",
            ".zarray",
            ".zgroup",
            "²",
            "٠",
            "١",
            "𝟎",
            "০",
            "Ⅷ",
            "-1",
            "+1",
            " 0",
            "0x1",
            "1e3",
            "1_0",
            "..",
            ".",
            "",
            "0" * 5000,
            "9" * 4301,
            "1000000000",
        ]
    ),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=6),
    st.from_regex(r"[0-9]{1,12}", fullmatch=True),
)
HOSTILE_KEYS = st.lists(HOSTILE_PARTS, min_size=1, max_size=8).map("/".join)


def test_zarr_and_tile_routes_with_hostile_keys(tmp_path: Path) -> None:
    """The zarr key and tile routes, driven by schemathesis with hostile keys: never a 500."""
    source = write_ome_tiff(tmp_path / "fuzz.ome.tif", (2, 3, 16, 20))
    with live_server(tmp_path / "data") as base:
        session = requests.Session()
        with source.open("rb") as fh:
            uploaded = session.post(
                f"{base}/api/images/upload", files={"file": ("fuzz.ome.tif", fh)}
            )
        assert uploaded.status_code == 201, uploaded.text
        real_id = uploaded.json()["id"]
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json", timeout=120)
        operations = [
            result.ok()
            for result in schema.get_all_operations()
            if "/zarr/" in result.ok().path or "/tile/" in result.ok().path
        ]
        assert len(operations) >= 2
        statuses: Counter[int] = Counter()

        def runner(operation: Any) -> Any:
            @given(
                case=operation.as_strategy(),
                key=HOSTILE_KEYS,
                parts=st.lists(HOSTILE_PARTS, min_size=3, max_size=3),
            )
            @hypothesis_settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any, key: str, parts: list[str]) -> None:
                parameters = case.path_parameters or {}
                parameters["image_id"] = real_id
                if "key" in parameters:
                    parameters["key"] = key
                else:  # the tile route: level, row, column as hostile text
                    parameters.update(zip(("level", "row", "column"), parts, strict=True))
                case.path_parameters = parameters
                response = case.call(session=session, timeout=120)
                statuses[response.status_code] += 1
                assert response.status_code < 500, (parameters, response.text[:300])
                if "key" in parameters:
                    case.validate_response(response, checks=CHECKS)

            return run

        for operation in operations:
            runner(operation)()
    assert not [status for status in statuses if status >= 500], statuses
    assert statuses[404] > 0
    print(f"schemathesis hostile zarr/tile keys: {dict(sorted(statuses.items()))}")


def test_private_member_never_sees_another_groups_image(tmp_path: Path, settings: Settings) -> None:
    """``ZSTACK_AUTH=users``, as a member of a private group: no 5xx, nothing of another group's image.

    The other group's image id is put into a third of the cases that take an
    ``image_id``; it must answer 404 exactly like an unknown id, and neither its
    id nor its file name may appear in any answer.
    """
    from tests.service.authworld import FAST_PASSWORDS, PASSWORD
    from tests.service.live import LiveServer, make_settings
    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.config import AccountSettings

    database_url = settings.database_url  # migrated already (tests/service/conftest.py)
    source = write_ome_tiff(tmp_path / "mine.ome.tif", (2, 3, 16, 20))
    secret_name = "secret-of-the-other-lab.ome.tif"  # noqa: S105  (a file name)
    server = LiveServer(
        make_settings(
            settings.data_dir,
            database_url=database_url,
            auth="users",
            accounts=AccountSettings(**FAST_PASSWORDS),
        )
    )
    server.start()
    try:
        with server.app.state.database.sessions() as db:
            accounts.create_group(db, "mine", "private")
            accounts.create_group(db, "theirs", "read-write")
            accounts.create_user(db, "me", password=PASSWORD)
            accounts.create_user(db, "them", password=PASSWORD)
            accounts.set_membership(db, "mine", "me")
            accounts.set_membership(db, "theirs", "them")
            mine_row, mine = accounts.create_token(db, "me")
            theirs = accounts.create_token(db, "them")[1]
        base = server.base_url
        session = requests.Session()
        headers = {"Authorization": f"Bearer {mine}"}
        with source.open("rb") as fh:
            own = session.post(
                f"{base}/api/images/upload", files={"file": ("mine.ome.tif", fh)}, headers=headers
            )
        with source.open("rb") as fh:
            other = session.post(
                f"{base}/api/images/upload",
                files={"file": (secret_name, fh)},
                headers={"Authorization": f"Bearer {theirs}"},
            )
        assert own.status_code == other.status_code == 201, (own.text, other.text)
        own_id, other_id = own.json()["id"], other.json()["id"]
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json", timeout=120)
        statuses: Counter[int] = Counter()
        leaks: list[str] = []
        operations = [result.ok() for result in schema.get_all_operations()]

        def runner(operation: Any) -> Any:
            @given(
                case=operation.as_strategy(), which=st.sampled_from(["own", "other", "generated"])
            )
            @hypothesis_settings(
                max_examples=EXAMPLES // 2,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any, which: str) -> None:
                path_parameters = case.path_parameters or {}
                if "image_id" in path_parameters:
                    if which == "other":
                        path_parameters["image_id"] = other_id
                    elif which == "own" and operation.method not in {"delete", "patch"}:
                        path_parameters["image_id"] = own_id
                if path_parameters.get("token_id") == mine_row.id:
                    path_parameters["token_id"] = mine_row.id + 1000  # keep our own token
                response = case.call(session=session, headers=headers, timeout=120)
                statuses[response.status_code] += 1
                body = response.content or b""
                # Its name never; its id only echoed back in the 404 of a request that named it.
                asked = other_id in response.request.path_url
                if secret_name.encode() in body or (other_id.encode() in body and not asked):
                    leaks.append(f"{operation.method} {response.request.path_url}")
                if path_parameters.get("image_id") == other_id:
                    # Exactly like an unknown id (422 only when another parameter is invalid).
                    assert response.status_code in {404, 422}, (
                        response.status_code,
                        body[:200],
                    )
                case.validate_response(response, checks=CHECKS, headers=headers)

            return run

        for operation in operations:
            runner(operation)()
        # The other group's image is still there and whole.
        check = session.get(
            f"{base}/api/images/{other_id}/download", headers={"Authorization": f"Bearer {theirs}"}
        )
        assert check.content == source.read_bytes()
    finally:
        server.stop()
    assert not leaks, leaks[:10]
    assert not [status for status in statuses if status >= 500], statuses
    assert statuses[404] > 0 and statuses[403] > 0
    TALLY.update(
        {
            f"{(database_url and 'postgres') or 'sqlite'}/users-private/{k}": v
            for k, v in statuses.items()
        }
    )
    print(
        f"schemathesis users-private {'postgres' if database_url else 'sqlite'}: {dict(sorted(statuses.items()))}"
    )
