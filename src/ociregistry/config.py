"""One typed settings object: defaults < YAML file < environment < flags.

Environment variables are named OCIREGISTRY_<SECTION>__<KEY> (double
underscore between levels), e.g. OCIREGISTRY_HTTP__PORT=5001.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ociregistry.events.settings import (  # noqa: F401 (also read from here)
    EventBatchSettings,
    EventEndpointSettings,
    EventPullSettings,
    EventsSettings,
)
from ociregistry.lifecycle.policy import RetentionPolicy
from ociregistry.mirror.settings import MirrorSettings
from ociregistry.sizes import parse_size

ENV_PREFIX = "OCIREGISTRY_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HTTPSettings(_Section):
    host: str = "0.0.0.0"
    port: int = Field(5000, ge=0, le=65535)
    workers: int = Field(0, ge=0, description="0: one per CPU core, at least two")
    threads: int = Field(8, ge=1)
    timeout: int = Field(300, ge=1, description="seconds a request may stay silent")
    # Addresses or networks of reverse proxies whose X-Forwarded-* headers are believed
    # (the client is the right-most X-Forwarded-For hop that is not one of them).
    trusted_proxies: list[str] = []
    readiness_cache_seconds: float = Field(
        5, ge=0, le=300,
        description="/readyz writes to the database and the blob storage at most once per"
                    " this many seconds per worker, and answers from that probe meanwhile",
    )
    fast_reads: bool = Field(
        True,
        description="answer plain manifest and blob HEAD/GET requests, /v2/ and tags lists"
                    " in front of Flask (web/fast_reads.py, web/fast_listings.py): the same"
                    " answer for less CPU; anything unusual still goes through Flask",
    )
    fast_writes: bool = Field(
        True,
        description="answer a plain cross-repository mount, a manifest PUT and the"
                    " body-less upload POST and PUT ?digest= in front of Flask"
                    " (web/fast_writes.py): the same answer and the same writes for"
                    " less CPU; anything unusual still goes through Flask",
    )
    keepalive_linger_ms: float = Field(
        2, ge=0, le=1000,
        description="after answering on a kept-alive connection, its thread waits this"
                    " long for the next request and serves it itself, while the worker"
                    " has no more connections than threads (0: hand every connection"
                    " back to the worker's poller at once, as gunicorn does)",
    )


class S3Settings(_Section):
    bucket: str = ""
    prefix: str = ""  # key prefix inside the bucket, e.g. "registry/"
    region: str = ""  # "": from the AWS chain, else us-east-1
    endpoint_url: str = ""  # "": AWS itself; e.g. http://seaweedfs:8333
    access_key: str = ""  # both empty: the standard AWS credential chain
    secret_key: str = ""
    path_style: bool = True  # path-style addressing (most non-AWS servers need it)
    verify_tls: bool = True
    ca_bundle: str = ""  # PEM file of CAs to trust for the endpoint
    sse: Literal["", "AES256", "aws:kms"] = ""  # server-side encryption of new objects
    sse_kms_key_id: str = ""
    # Blob GETs answer 307 to a presigned URL (the store serves the bytes);
    # false: the registry streams them (with Range support).
    redirect: bool = True
    redirect_expiry_seconds: int = Field(1200, ge=60, le=604800)
    # Address clients use to reach the store, when it differs from endpoint_url.
    redirect_endpoint_url: str = ""
    # Multipart part size: chunks are buffered to this size (S3's minimum is 5 MiB).
    part_size: int = Field(8 << 20, ge=5 << 20, le=5 << 30)
    connect_timeout_seconds: float = Field(
        5, gt=0, le=300,
        description="seconds to wait for a connection to the store before giving up (then"
                    " retried, up to max_attempts); a store that is down answers 503 quickly",
    )
    read_timeout_seconds: float = Field(
        30, gt=0, le=3600,
        description="seconds without a byte from the store before a request to it fails",
    )
    max_attempts: int = Field(
        5, ge=1, le=20,
        description="tries of each store request (connection errors, 5xx, throttling), with"
                    " exponential back-off; the client gets 503 + Retry-After after the last",
    )


class StorageSettings(_Section):
    driver: Literal["filesystem", "s3"] = "filesystem"
    root: str = ""  # default: <data_dir>
    fsync: bool = Field(
        True,
        description="a 201 survives a power cut: new blob files and their directories are"
        " fsynced before the commit, and SQLite's WAL is flushed before the answer",
    )
    s3: S3Settings = S3Settings()
    direct_writes: bool = Field(
        False,
        description="with fsync on, the filesystem driver writes uploads around the page"
        " cache (O_DIRECT, where the file system allows it): less CPU per pushed MiB (for"
        " hosts short of CPU), but the disk's flushes come at the end and the first pull"
        " of a new blob reads the disk unless cache_new_blobs (docs/performance.md,"
        " Pushes, round four)",
    )
    flush_ahead: bool = Field(
        True,
        description="with fsync on and direct_writes off: fdatasync an upload's file"
        " every 4 MiB while it is received, so the device takes the bytes during the"
        " push and the fsync that publishes the blob waits only for the tail",
    )
    cache_upload_tail_mib: int | None = Field(
        None, ge=0, description="with flush_ahead, N: once flushed, an upload's pages leave"
        " the page cache but for its last N MiB, freed for the next writes (less CPU per MiB"
        " on VMs), but a longer blob's first pull reads its head from the disk; null: all"
        " stay (docs/performance.md, Pushes, round five)",
    )
    cache_new_blobs: bool = Field(
        True,
        description="with direct_writes: read each new blob back into the page cache as it"
        " is written (readahead), so that a pull right after the push is served from"
        " memory; false saves that CPU (about 0.2-0.4 ms per MiB pushed)",
    )
    read_back_when_idle: bool = Field(
        False,
        description="with cache_new_blobs: read new blobs back only while no upload is"
        " written and no large blob pulled (10 s late at most), so that a push has the"
        " disk to itself; a pull right after the push then reads the disk"
        " (docs/performance.md, Pushes, round three)",
    )


class DatabaseSettings(_Section):
    url: str = ""  # default: sqlite:///<data_dir>/registry.db
    pool_size: int = Field(5, ge=1)
    # serve applies pending migrations; false: refuse to start until `ociregistry db upgrade`
    auto_migrate: bool = True
    tags_list_cache_kib: int = Field(
        4096, ge=0,
        description="per worker process: /v2 tags list pages kept in memory and served again"
        " while the repository's tags are unchanged (every request checks the database's"
        " tags version, so never stale); 0 turns it off",
    )


class GCSettings(_Section):
    grace_period_seconds: float = Field(3600, ge=0)
    upload_ttl_seconds: float = Field(86400, ge=0)
    interval_seconds: float = Field(0, ge=0, description="run GC every N seconds; 0: never")
    delete_untagged: bool = False  # for scheduled runs and POST /v2/gc without the parameter


class MetricsSettings(_Section):
    enabled: bool = True
    address: str = ""  # "host:port": serve /metrics on its own listener too
    username: str = ""  # basic auth on /metrics when both are set
    password: str = ""


class UISettings(_Section):
    enabled: bool = True
    # Signs the UI's session cookies; default: a key generated in <data_dir>.
    # Instances behind one load balancer need the same value.
    secret_key: str = ""
    session_lifetime_seconds: int = Field(
        12 * 3600, ge=60,
        description="seconds a UI sign-in lasts, whatever the activity (sessions are kept "
                    "in the index: sign-out and a password change end them everywhere)",
    )


class APISettings(_Section):
    enabled: bool = Field(
        True, description="the management API at /api/v1 (JSON, OpenAPI 3.1 at "
                          "/api/v1/openapi.json, docs at /api/v1/docs)",
    )


class LogSettings(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True


class LimitsSettings(_Section):
    max_manifest_size: int = Field(4 * 1024 * 1024, ge=1024)
    max_blob_size: int = Field(0, ge=0, description="0: no limit")
    max_header_size: int = Field(16384, ge=1024, le=65536, description="bytes per header")
    upload_session_lifetime_seconds: float = Field(0, ge=0, description="0: until GC expires it")
    max_uploads_per_user: int = Field(0, ge=0, description="open upload sessions; 0: no limit")


class TLSSettings(_Section):
    certificate: str = ""  # PEM certificate (chain): with key, the server speaks HTTPS
    key: str = ""  # PEM private key
    client_ca: str = ""  # PEM CA bundle: clients must present a certificate it signed (mTLS)


# Extended key usages by name (auth/x5c.py maps them to their OIDs).
EKU_NAMES = ("anyExtendedKeyUsage", "codeSigning", "clientAuth", "serverAuth",
             "emailProtection", "timeStamping")
_DOTTED_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")


class TokenSettings(_Section):
    """Docker token authentication: the built-in service, or an external issuer."""

    enabled: bool = False  # the built-in token service on /auth/token
    realm: str = ""  # where clients get tokens; default: this registry's /auth/token
    service: str = "ociregistry"  # the audience of tokens
    issuer: str = "ociregistry"
    key: str = ""  # PEM private key; default <data_dir>/auth/token-signing-key.pem, generated
    algorithm: Literal["RS256", "ES256"] = "ES256"
    expiration_seconds: int = Field(300, ge=60)
    refresh_expiration_seconds: int = Field(7 * 86400, ge=60)
    # Trust an external token service instead (realm, issuer and service are then its own):
    rootcertbundle: str = ""  # PEM certificates whose keys sign tokens
    jwks: str = ""  # a JWKS file with the keys that sign tokens
    signing_algorithms: list[str] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                     "ES256", "ES384", "ES512", "EdDSA"]
    leeway_seconds: float = Field(30, ge=0, le=300)
    # A token-signing certificate of an x5c chain that names extended key usages must name
    # one of these (names or dotted OIDs); one that names none is accepted.
    x5c_extended_key_usages: list[str] = Field(
        ["codeSigning", "anyExtendedKeyUsage"], min_length=1,
        description="extended key usages that allow a certificate to sign tokens")
    x5c_max_intermediates: int = Field(
        3, ge=0, le=8, description="intermediate CAs allowed between signer and bundle")

    @field_validator("x5c_extended_key_usages")
    @classmethod
    def _known_ekus(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in EKU_NAMES and not _DOTTED_OID.fullmatch(name):
                raise ValueError(f"unknown extended key usage {name!r}: one of "
                                 f"{', '.join(EKU_NAMES)}, or a dotted OID")
        return value


class AccessRuleSettings(_Section):
    repositories: list[str] = ["**"]  # globs: * within a path component, ** across
    users: list[str] = []  # user names; "*" is every signed-in user
    groups: list[str] = []
    anonymous: bool = False  # also callers without credentials
    actions: list[Literal["pull", "push", "delete", "*", "admin"]] = []


class RobotSettings(_Section):
    """Robot accounts: named, scoped, expiring access tokens for CI (``ociregistry token``)."""

    enabled: bool = Field(True, description="accept robot tokens (robot$NAME) and let admins "
                          "create them")
    default_expiry_days: int = Field(90, ge=1, description="lifetime of a new token when "
                                     "none is given")
    max_lifetime_days: int = Field(365, ge=0, description="longest lifetime a token may be "
                                   "given; 0: no limit (tokens that never expire allowed)")


class AuthSettings(_Section):
    htpasswd: str = ""  # bcrypt htpasswd file (htpasswd -B, or ociregistry user add)
    realm: str = "ociregistry"  # Basic realm
    bcrypt_cost: int = Field(12, ge=4, le=31)
    groups: dict[str, list[str]] = {}
    rules: list[AccessRuleSettings] = []
    token: TokenSettings = TokenSettings()
    robots: RobotSettings = RobotSettings()

    @property
    def mode(self) -> str:
        """"token", "basic" or "none" (no authentication: everyone may do everything)."""
        if self.token.enabled or self.token.rootcertbundle or self.token.jwks:
            return "token"
        if self.htpasswd or self.rules:
            return "basic"
        return "none"


class RateLimitSettings(_Section):
    """Token buckets per client address and per user, and limits on failed sign-ins,
    kept in the index: shared by every worker process and instance."""

    per_address: float = Field(0, ge=0, description="requests per second; 0: no limit")
    per_user: float = Field(0, ge=0, description="requests per second; 0: no limit")
    burst: int = Field(100, ge=1)
    auth_failures: int = Field(
        10, ge=0, description="failed password checks per client address per window; 0: no limit")
    auth_failures_per_user: int = Field(
        50, ge=0, description="failed password checks per user name per window; 0: no limit")
    auth_failure_window_seconds: float = Field(
        300, gt=0, description="a window starts at the first failure and lasts this long")


class TagRuleSettings(_Section):
    """An immutable or protected tag rule (tags.immutable, tags.protected)."""

    repositories: str = Field("**", min_length=1, max_length=512,
                              description="glob over repository names: * within a path "
                                          "component, ** across (e.g. prod/**)")
    tags: str = Field(..., min_length=1, max_length=255,
                      description="glob over tag names: * any run, ? one character "
                                  "(e.g. v*.*.*)")
    users: list[str] = Field([], description="protected: users who may push or delete "
                                             "matching tags (robot$NAME for a robot)")
    groups: list[str] = Field([], description="protected: groups (auth.groups, or robots) "
                                              "whose members may push or delete them")
    description: str = Field("", max_length=255)


class TagSettings(_Section):
    """Immutable and protected tags, tag history and restores (docs/lifecycle.md)."""

    immutable: list[TagRuleSettings] = Field(
        [], description="once pushed, a matching tag cannot be moved or deleted "
                        "(re-pushing the same digest is accepted)")
    protected: list[TagRuleSettings] = Field(
        [], description="only the rule's users and groups may push, move or delete a "
                        "matching tag")
    restore_window_seconds: float = Field(
        14 * 86400, ge=0,
        description="a moved or deleted tag can be restored to any digest it pointed at "
                    "this recently; GC keeps those manifests and blobs until then; 0: off")
    history_keep_seconds: float = Field(
        90 * 86400, ge=0,
        description="GC deletes tag history entries older than this (at least the "
                    "restore window is kept)")
class PullStatsSettings(_Section):
    enabled: bool = Field(True, description="count manifest GETs per tag and per manifest")
    flush_interval_seconds: float = Field(
        5.0, gt=0, le=3600, description="each worker writes its buffered counts this often "
                                        "(and at exit); a crash loses at most this much")


class RetentionSettings(_Section):
    enabled: bool = Field(True, description="run policies on their cron schedules (runs on "
                                            "demand work either way)")
    label_expiry: bool = Field(
        True, description="remove a tag once the expiry its image asks for is over "
                          "(ociregistry.expires-after or quay.expires-after, e.g. 2w)")
    label_expiry_schedule: str = Field("*/15 * * * *",
                                       description="cron (UTC) of label expiry runs")
    check_interval_seconds: float = Field(
        30, gt=0, description="how often each worker looks for a policy that is due")
    policies: list[RetentionPolicy] = []

    @field_validator("label_expiry_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return RetentionPolicy._cron(value)

    @field_validator("policies")
    @classmethod
    def _unique(cls, value: list[RetentionPolicy]) -> list[RetentionPolicy]:
        names = [p.name for p in value]
        if len(names) != len(set(names)):
            raise ValueError("policy names must be unique")
        if "label-expiry" in names:
            raise ValueError("label-expiry is the name of the built-in label expiry")
        return value
class QuotaSettings(_Section):
    """A storage quota on a repository namespace (lifecycle/quotas.py)."""

    namespace: str = Field(description="repository glob: * within a path component, ** "
                           "across (team-a/** is every repository under team-a/)")
    limit: int = Field(ge=0, description="bytes of distinct blobs plus open uploads; "
                       "a number of bytes or a size such as 10GiB")
    warning: int | None = Field(None, ge=0, description="usage that logs a warning and counts "
                                "in registry_quota_warnings_total; bytes, a size, or a "
                                "percentage of the limit such as 80%")

    @field_validator("limit", mode="before")
    @classmethod
    def _limit_size(cls, value: Any) -> int:
        return parse_size(value)

    @field_validator("warning", mode="before")
    @classmethod
    def _warning_size(cls, value: Any, info: Any) -> int | None:
        if value is None:
            return None
        text = str(value).strip()
        if text.endswith("%"):
            limit = info.data.get("limit")
            if limit is None:
                raise ValueError("a percentage needs a valid limit")
            return int(limit * float(text[:-1]) / 100)
        return parse_size(value)
class Settings(_Section):
    data_dir: str = "./data"
    delete_enabled: bool = True
    http: HTTPSettings = HTTPSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    gc: GCSettings = GCSettings()
    limits: LimitsSettings = LimitsSettings()
    tls: TLSSettings = TLSSettings()
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    ui: UISettings = UISettings()
    api: APISettings = APISettings()
    tags: TagSettings = TagSettings()
    pull_stats: PullStatsSettings = PullStatsSettings()
    retention: RetentionSettings = RetentionSettings()
    quotas: list[QuotaSettings] = Field(
        [], description="storage quotas per repository namespace (more can be added at run "
        "time through /api/v1/quotas and the web UI)")
    events: EventsSettings = EventsSettings()
    mirror: MirrorSettings = MirrorSettings()

    @property
    def storage_root(self) -> str:
        return os.path.abspath(self.storage.root or self.data_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return "sqlite:///" + os.path.join(os.path.abspath(self.data_dir), "registry.db")


class ConfigError(Exception):
    pass


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = key[len(ENV_PREFIX):].lower().split("__")
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
        # Scalars stay strings (the settings model converts them by type, and
        # "::" or "2024" must not become a mapping or a number); YAML flow
        # syntax gives lists and mappings.
        parsed: Any = value
        if value.lstrip().startswith(("[", "{")):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                pass  # left as a string: validation names the key
        node[path[-1]] = parsed
    return result


def load_settings(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    data: dict[str, Any] = {}
    if config_file is None and Path("config.yml").is_file():
        config_file = "config.yml"
    if config_file:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: the top level must be a mapping")
        data = loaded
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    data = _merge(data, overrides or {})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
