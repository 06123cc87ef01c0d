"""``zstack ingest --server --project P --dataset D`` as real users of a real server (``users`` mode).

Which containers the HTTP filer files into, by group level (OMERO's rules, ours):
another member's project and dataset of that name are visible in a read-only or
read-annotate group but cannot be changed, so the caller's own are made and used
(they were reused before, and every image failed with 403); in a read-write group
another's may be changed and is used, unless the caller has their own of that name.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

import httpx
from typer.testing import CliRunner

from tests.mutation_kills.service_db import _template
from tests.service.authworld import FAST_PASSWORDS
from tests.service.conftest import write_ome_tiff
from tests.service.live import LiveServer, make_settings
from zstack_analyzer.cli import app
from zstack_analyzer.service.config import AccountSettings

if TYPE_CHECKING:
    from pathlib import Path

runner = CliRunner()


def _ingest(path: Path, base: str, token: str, *options: str) -> dict[str, Any]:
    result = runner.invoke(
        app,
        [
            "ingest",
            str(path),
            "--server",
            base,
            "--token",
            token,
            *options,
            "--json",
            "--settle",
            "0",
        ],
    )
    assert "Traceback" not in result.output, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    assert result.exit_code == 0, result.stdout
    return summary


def _tree(base: str, token: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every visible dataset as (name, owner) -> its row, and each project as ("project:" name, owner)."""
    headers = {"Authorization": f"Bearer {token}"}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in ("project", "dataset"):
        rows = httpx.get(f"{base}/api/{kind}s", params={"limit": 1000}, headers=headers).json()
        for row in rows["data"]:
            name = row["name"] if kind == "dataset" else f"project:{row['name']}"
            assert (name, row["owner"]) not in found
            found[name, row["owner"]] = row
    return found


def test_filing_uses_containers_the_caller_may_change(tmp_path: Path) -> None:
    from zstack_analyzer.service.auth import accounts

    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(_template(), data / "zstack.db")  # migrated already: a quick start
    settings = make_settings(
        data, auth="users", accounts=AccountSettings(**FAST_PASSWORDS), api_token=None
    )
    settings.render.thumbnail_on_upload = False
    server = LiveServer(settings)
    server.start()
    try:
        tokens: dict[str, str] = {}
        with server.app.state.database.sessions() as session:
            for level in ("read-only", "read-annotate", "read-write"):
                accounts.create_group(session, f"g-{level}", level)
            accounts.create_user(session, "alice", password="x" * 12)
            for level in ("read-only", "read-annotate", "read-write"):
                accounts.set_membership(session, f"g-{level}", "alice")
            for user, level in (
                ("rolf", "read-only"),
                ("ada", "read-annotate"),
                ("walt", "read-write"),
            ):
                accounts.create_user(session, user, password="x" * 12)
                accounts.set_membership(session, f"g-{level}", user)
            for user in ("alice", "rolf", "ada", "walt"):
                tokens[user] = accounts.create_token(session, user, name="t")[1]
        base = server.base_url
        alice = {"Authorization": f"Bearer {tokens['alice']}"}
        for level in ("read-only", "read-annotate", "read-write"):
            group = {"group": f"g-{level}"}
            project = httpx.post(
                f"{base}/api/projects", params=group, json={"name": "Screen"}, headers=alice
            )
            assert project.status_code == 201, project.text
            made = httpx.post(
                f"{base}/api/datasets",
                params=group,
                json={"name": "Plate", "project_id": project.json()["id"]},
                headers=alice,
            )
            assert made.status_code == 201, made.text

        for seed, user in enumerate(("rolf", "ada"), start=1):
            stack = write_ome_tiff(tmp_path / f"{user}.ome.tif", (1, 1, 8, 8), seed=seed)
            summary = _ingest(
                stack, base, tokens[user], "--project", "Screen", "--dataset", "Plate"
            )
            assert (summary["ingested"], summary["failed"]) == (1, []), summary
            tree = _tree(base, tokens[user])
            # Alice's stay as they were; the caller's own were made and hold the image.
            assert tree["Plate", "alice"]["child_count"] == 0
            assert tree["project:Screen", "alice"]["child_count"] == 1
            assert tree["Plate", user]["child_count"] == 1
            assert tree["Plate", user]["project_ids"] == [tree["project:Screen", user]["id"]]
            assert tree["Plate", user]["can_change"] is True
            assert tree["Plate", user]["owned_by_you"] is True
            assert tree["Plate", "alice"]["can_change"] is False
            assert tree["Plate", "alice"]["owned_by_you"] is False

        # Read-write: alice's may be changed by walt, so it is used (nothing new is made)...
        first = write_ome_tiff(tmp_path / "walt1.ome.tif", (1, 1, 8, 8), seed=7)
        summary = _ingest(first, base, tokens["walt"], "--project", "Screen", "--dataset", "Plate")
        assert (summary["ingested"], summary["failed"]) == (1, []), summary
        tree = _tree(base, tokens["walt"])
        assert set(tree) == {("Plate", "alice"), ("project:Screen", "alice")}
        assert tree["Plate", "alice"]["child_count"] == 1
        assert tree["Plate", "alice"]["can_change"] is True
        assert tree["Plate", "alice"]["owned_by_you"] is False
        # ... but a container of the caller's own of that name comes first, even a newer one.
        walt = {"Authorization": f"Bearer {tokens['walt']}"}
        rw = {"group": "g-read-write"}
        assert httpx.post(
            f"{base}/api/datasets", params=rw, json={"name": "Loose"}, headers=alice
        ).is_success
        mine = httpx.post(f"{base}/api/datasets", json={"name": "Loose"}, headers=walt).json()
        second = write_ome_tiff(tmp_path / "walt2.ome.tif", (1, 1, 8, 8), seed=8)
        summary = _ingest(second, base, tokens["walt"], "--dataset", "Loose")
        assert (summary["ingested"], summary["failed"]) == (1, []), summary
        tree = _tree(base, tokens["walt"])
        assert tree["Loose", "walt"]["id"] == mine["id"]
        assert tree["Loose", "walt"]["child_count"] == 1
        assert tree["Loose", "alice"]["child_count"] == 0
        # The in-process filer's choice (find_or_create) is the same, for the same callers.
        _in_process_choices(server, tokens, _tree(base, tokens["rolf"]), tree)
    finally:
        server.stop()


def _in_process_choices(
    server: LiveServer,
    tokens: dict[str, str],
    rolf_tree: dict[tuple[str, str], dict[str, Any]],
    walt_tree: dict[tuple[str, str], dict[str, Any]],
) -> None:
    from zstack_analyzer.service.annotations.containers import find_or_create
    from zstack_analyzer.service.auth.placement import choose_group
    from zstack_analyzer.service.auth.principal import resolve_api_token

    with server.app.state.database.sessions() as session:
        for user, tree, name in (("rolf", rolf_tree, "Plate"), ("walt", walt_tree, "Loose")):
            resolved = resolve_api_token(session, tokens[user])
            assert resolved is not None
            principal = resolved[0]
            placement = choose_group(session, principal, None)
            row = find_or_create(session, principal, "dataset", name, placement)
            assert row.id == tree[name, user]["id"], user
        # walt's "Plate" is alice's, which he may change (he has none of his own)
        row = find_or_create(session, principal, "dataset", "Plate", placement)
        assert row.id == walt_tree["Plate", "alice"]["id"]
