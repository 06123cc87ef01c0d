"""Service settings (``service/config.py``): what each knob turns into, and what is refused.

What the broader tests leave open: every limit reaches the library's ``ReadLimits`` and the
process's ``DecodeBudget`` under its own name (a dropped one falls back to the library's
default), the Bio-Formats pool options (and the jar as text), the argon2id cost new password
hashes get, import roots given as ``os.pathsep``-separated text or a JSON list, LDAP's group
map from JSON text, the auth mode a token implies, a token given as plain text or empty, the
storage URL trimmed, and the exact messages start-up shows for a wrong setting.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from zstack_analyzer.service.auth import passwords
from zstack_analyzer.service.config import (
    AccountSettings,
    BioformatsSettings,
    LdapSettings,
    LimitsSettings,
    Settings,
)

TOKEN = "s3cret"  # noqa: S105 - a test token


def _settings(**values: object) -> Settings:
    """Settings from these values only (no environment file, no ``ZSTACK_*`` variable read)."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _no_zstack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("ZSTACK_", "AWS_")):
            monkeypatch.delenv(name)


def test_every_limit_reaches_the_read_limits() -> None:
    limits = LimitsSettings(
        max_plane_bytes=11,
        max_dimension=12,
        max_planes=13,
        max_eager_bytes=14,
        max_metadata_bytes=15,
        max_render_plane_bytes=16,
    ).read_limits()
    assert (
        limits.max_plane_bytes,
        limits.max_dimension,
        limits.max_planes,
        limits.max_eager_bytes,
        limits.max_metadata_bytes,
        limits.max_render_plane_bytes,
    ) == (11, 12, 13, 14, 15, 16)


def test_decode_budget_takes_the_decode_limits() -> None:
    budget = LimitsSettings(
        max_decode_bytes=1000,
        max_render_plane_bytes=300,
        max_request_decode_bytes=5000,
        decode_wait_seconds=1.5,
    ).decode_budget()
    assert (budget.total_bytes, budget.block_bytes, budget.request_bytes) == (1000, 300, 5000)
    assert budget.wait_seconds == 1.5
    # A single decode is never larger than the whole server's budget.
    assert (
        LimitsSettings(max_decode_bytes=100, max_render_plane_bytes=300).decode_budget().block_bytes
        == 100
    )


def test_bioformats_pool_options() -> None:
    options = BioformatsSettings(
        workers=3, heap_mb=512, timeout_s=7.5, start_timeout_s=9.0, jar=Path("/opt/bf.jar")
    ).pool_options()
    assert (options.workers, options.heap_mb, options.timeout_s, options.start_timeout_s) == (
        3,
        512,
        7.5,
        9.0,
    )
    assert options.jar == "/opt/bf.jar"
    assert BioformatsSettings().pool_options().jar is None


def test_password_cost_is_what_new_hashes_use() -> None:
    try:
        AccountSettings(
            password_time_cost=1, password_memory_kib=8192, password_parallelism=2
        ).apply_password_cost()
        made = passwords.hash_password("correct horse")
        assert "$m=8192,t=1,p=2$" in made
        assert passwords.verify_password(made, "correct horse")
    finally:
        passwords.configure(passwords.Argon2Parameters())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"/data/a{os.pathsep} /data/b {os.pathsep}{os.pathsep}",
            [Path("/data/a"), Path("/data/b")],
        ),
        ('  ["/data/c", "/data/d"]', [Path("/data/c"), Path("/data/d")]),
        ("/data/with space", [Path("/data/with space")]),
        ("   ", []),
    ],
)
def test_import_roots_from_text(text: str, expected: list[Path]) -> None:
    assert _settings(import_roots=text).import_roots == expected


def test_import_roots_must_be_absolute() -> None:
    with pytest.raises(
        ValidationError, match=r"ZSTACK_IMPORT_ROOTS: data/x is not an absolute path"
    ):
        _settings(import_roots="data/x")
    assert _settings(import_roots=[Path("/srv")]).import_roots == [Path("/srv")]


def test_cors_origins_from_text() -> None:
    assert _settings(cors_origins=" http://a.x ,, http://b.x ").cors_origins == [
        "http://a.x",
        "http://b.x",
    ]
    assert _settings(cors_origins=' ["http://c.x, d"]').cors_origins == ["http://c.x, d"]
    assert _settings(cors_origins=["http://e.x"]).cors_origins == ["http://e.x"]


def test_ldap_group_map_from_json_text() -> None:
    mapping = {"cn=imaging,ou=groups,dc=example,dc=org": "imaging"}
    text = '{"cn=imaging,ou=groups,dc=example,dc=org": "imaging"}'
    assert LdapSettings(group_map=text).group_map == mapping
    assert LdapSettings(group_map="  ").group_map == {}
    assert LdapSettings(group_map=mapping).group_map == mapping


def test_ldap_settings_refused_with_their_messages() -> None:
    with pytest.raises(
        ValidationError,
        match=r"ZSTACK_LDAP__URL needs ZSTACK_LDAP__USER_DN_TEMPLATE or ZSTACK_LDAP__SEARCH_BASE",
    ):
        LdapSettings(url="ldap://127.0.0.1:1")
    with pytest.raises(
        ValidationError, match=r"ZSTACK_LDAP__USER_DN_TEMPLATE must contain \{username\}"
    ):
        LdapSettings(url="ldap://127.0.0.1:1", user_dn_template="uid=x,dc=org")
    # A template without a URL is still checked; a search base alone is a way to find users.
    with pytest.raises(ValidationError, match="must contain"):
        LdapSettings(user_dn_template="uid=x,dc=org")
    searched = LdapSettings(url="ldap://127.0.0.1:1", search_base="dc=org")
    assert searched.enabled() is True
    templated = LdapSettings(url="ldaps://h:636", user_dn_template="uid={username},dc=org")
    assert templated.enabled() is True
    assert LdapSettings().enabled() is False


def test_auth_mode_and_token() -> None:
    assert _settings().auth_mode() == "none"
    assert _settings().token() is None
    with_token = _settings(api_token=TOKEN)
    assert with_token.auth_mode() == "token"
    assert with_token.token() == TOKEN
    assert _settings(api_token="").token() is None
    assert _settings(api_token="").auth_mode() == "none"
    assert _settings(api_token=TOKEN, auth="users").auth_mode() == "users"
    assert _settings(auth="none", api_token=TOKEN).auth_mode() == "none"
    # model_copy(update=...) skips validation: a plain string, or an empty one.
    assert _settings().model_copy(update={"api_token": "plain"}).token() == "plain"
    assert _settings().model_copy(update={"api_token": ""}).token() is None
    assert _settings().model_copy(update={"api_token": SecretStr("")}).token() is None


def test_token_mode_needs_a_token() -> None:
    with pytest.raises(ValidationError, match=r"ZSTACK_AUTH=token needs ZSTACK_API_TOKEN"):
        _settings(auth="token")
    with pytest.raises(ValidationError, match="needs ZSTACK_API_TOKEN"):
        _settings(auth="token", api_token="")
    assert _settings(auth="token", api_token=TOKEN).auth_mode() == "token"


def test_data_dir_folders_and_database_url(tmp_path: Path) -> None:
    settings = _settings(data_dir=tmp_path)
    assert settings.images_dir == tmp_path / "images"
    assert settings.tmp_dir == tmp_path / "tmp"
    assert settings.deleted_dir == tmp_path / "deleted"
    assert settings.cache_dir == tmp_path / "cache"
    assert settings.object_cache_dir == tmp_path / "objects"
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path.resolve() / 'zstack.db'}"
    url = "postgresql+psycopg://u@h/db"
    assert _settings(data_dir=tmp_path, database_url=url).resolved_database_url() == url


def test_storage_url_is_trimmed_and_checked() -> None:
    assert _settings(storage_url="  s3://bucket/prefix  ").storage_url == "s3://bucket/prefix"
    assert _settings(storage_url="   ").storage_url is None
    assert _settings(storage_url=None).storage_url is None
    with pytest.raises(ValidationError):
        _settings(storage_url="http://not-a-bucket/x")
