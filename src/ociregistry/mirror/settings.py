"""The ``mirror`` section of the configuration: upstream registries (pydantic, no I/O).

Each upstream has a name, which is also the local path prefix of what it mirrors
(``dockerhub`` mirrors ``library/alpine`` as ``dockerhub/library/alpine``), a URL,
the registry host names it serves for containerd's ``?ns=`` parameter, and its
freshness, staleness, client and space settings. Durations are seconds or strings
such as ``5m``, ``7d``; sizes are bytes or strings such as ``50GiB``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ociregistry.lifecycle.durations import parse_duration
from ociregistry.lifecycle.policy import check_cron

# One repository path component (the distribution spec's grammar).
UPSTREAM_NAME = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$"
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?$")
DOCKER_HUB_HOSTS = ("docker.io", "registry-1.docker.io", "index.docker.io",
                    "registry.hub.docker.com")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def seconds(value: Any) -> float:
    """Seconds from a number or a duration string (``30s``, ``5m``, ``7d``)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as 5m")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


class PrefetchSettings(_Model):
    """A repository of the upstream kept warm: its tags matching ``tags`` are pulled."""

    repository: str = Field(pattern=r"^[a-z0-9][a-z0-9._/-]{0,254}$",
                            description="repository in the upstream (library/alpine)")
    tags: str = Field("latest", min_length=1, max_length=255,
                      description="glob over tag names (3.*); * any run, ? one character")


class UpstreamSettings(_Model):
    """One upstream registry mirrored under the local prefix ``<name>/``."""

    name: str = Field(pattern=UPSTREAM_NAME, max_length=64,
                      description="the local path prefix (dockerhub → dockerhub/library/alpine)")
    url: str = Field(max_length=2000, description="http(s)://host[:port] of the upstream")
    hosts: list[str] = Field([], description="registry host names served for containerd's "
                             "?ns= parameter (docker.io)")
    default: bool = Field(False, description="the upstream of bare names (Docker's "
                          "registry-mirrors sends library/alpine); at most one")
    docker_hub: bool | None = Field(None, description="single-component names get Docker "
                                    "Hub's implicit library/; null: when url or hosts name "
                                    "Docker Hub")
    username: str = Field("", description="static credentials (basic, or for the token "
                          "service when the upstream answers a Bearer challenge)")
    password: str = ""
    ca_file: str = Field("", description="PEM CAs that sign the upstream's certificate; "
                         "empty: the system's")
    client_cert: str = Field("", description="PEM client certificate (mTLS)")
    client_key: str = Field("", description="PEM key of client_cert")
    connect_timeout: float = Field(5, gt=0, le=300)
    read_timeout: float = Field(30, gt=0, le=3600, description="seconds without a byte")
    max_requests_per_second: float = Field(0, ge=0, description="0: no limit (per process)")
    max_concurrency: int = Field(32, ge=1, le=10000, description="requests in flight per "
                                 "process")
    tag_ttl: float = Field(300, ge=0, description="a tag checked this recently is served "
                           "without asking upstream")
    max_stale: float = Field(7 * 86400, ge=0, description="when upstream fails, cached "
                             "copies checked this recently are served (stale)")
    negative_ttl: float = Field(30, ge=0, description="an upstream 404 is remembered this long")
    redirect_hosts: list[str] = Field([], description="hosts upstream redirects (and its "
                                      "token realm) may lead to besides the upstream's own "
                                      "(a CDN); *.example.com allows its subdomains")
    allow_push: bool = Field(False, description="pushes and deletes under the prefix are "
                             "accepted (default: refused with DENIED)")
    evict_unused_after: float = Field(7 * 86400, ge=0, description="cached tags not pulled "
                                      "this long are evicted by GC; 0: never")
    size_budget: int | None = Field(None, ge=0, description="bytes this upstream's cache may "
                                    "hold; least recently pulled evicted first")
    pinned: list[str] = Field([], description="upstream repository globs, optionally "
                              ":tag-glob (library/alpine:3.*), never evicted")
    prefetch: list[PrefetchSettings] = []
    prefetch_schedule: str = Field("", description="cron (UTC) of prefetch runs; \"\": "
                                   "only `ociregistry mirror sync`")

    @field_validator("connect_timeout", "read_timeout", "tag_ttl", "max_stale",
                     "negative_ttl", "evict_unused_after", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return seconds(value)

    @field_validator("size_budget", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int | None:
        from ociregistry.sizes import parse_size

        return None if value is None else parse_size(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the url must be http(s)://host[:port]")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("the url takes no credentials, query or fragment "
                             "(use username and password)")
        if parts.path.strip("/"):
            raise ValueError("the url is the registry's root (no path)")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("hosts", "redirect_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = [h.strip().lower() for h in value]
        for host in out:
            if not _HOST.fullmatch(host.removeprefix("*.")):
                raise ValueError(f"not a host name: {host!r}")
        return out

    @field_validator("prefetch_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @model_validator(mode="after")
    def _pair(self) -> UpstreamSettings:
        if any(h.startswith("*.") for h in self.hosts):
            raise ValueError("hosts are exact names (wildcards only in redirect_hosts)")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("client_cert and client_key go together")
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password go together")
        return self

    @property
    def host(self) -> str:
        """host[:port] of the url."""
        return urlsplit(self.url).netloc.lower()

    @property
    def is_docker_hub(self) -> bool:
        if self.docker_hub is not None:
            return self.docker_hub
        names = {urlsplit(self.url).hostname or "", *self.hosts}
        return bool(names & set(DOCKER_HUB_HOSTS))


class MirrorSettings(_Model):
    """Pull-through caches of upstream registries (docs/mirror.md)."""

    upstreams: list[UpstreamSettings] = Field(
        [], description="upstream registries; a mapping by name is accepted too")
    fill_lease_seconds: float = Field(
        30, gt=0, le=3600, description="a fill (upstream fetch) is leased this long and "
        "renewed while bytes flow; a crashed filler's lease runs out")
    wait_seconds: float = Field(
        240, gt=0, le=3600, description="longest time a request waits for another worker's "
        "fill of the same blob or manifest before answering 503")
    eviction_schedule: str = Field(
        "17 * * * *", description="cron (UTC) of eviction runs (evict_unused_after, "
        "size_budget) of every upstream; \"\": only on demand (API, UI)")
    schedule_check_seconds: float = Field(
        60, gt=0, le=3600, description="how often each worker looks for due eviction and "
        "pre-fetch runs (one run per firing across instances)")

    @field_validator("eviction_schedule")
    @classmethod
    def _eviction_cron(cls, value: str) -> str:
        return UpstreamSettings._cron(value)

    @field_validator("upstreams", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [{"name": name, **(spec or {})} for name, spec in value.items()]
        return value

    @field_validator("upstreams")
    @classmethod
    def _unique(cls, value: list[UpstreamSettings]) -> list[UpstreamSettings]:
        names = [u.name for u in value]
        if len(names) != len(set(names)):
            raise ValueError("upstream names must be unique")
        if sum(u.default for u in value) > 1:
            raise ValueError("at most one upstream may be the default")
        hosts = [h for u in value for h in u.hosts]
        if len(hosts) != len(set(hosts)):
            raise ValueError("a host may be served by one upstream only")
        return value

    def by_name(self, name: str) -> UpstreamSettings | None:
        return next((u for u in self.upstreams if u.name == name), None)

    def by_host(self, host: str) -> UpstreamSettings | None:
        host = host.lower()
        return next((u for u in self.upstreams if host in u.hosts), None)

    @property
    def default(self) -> UpstreamSettings | None:
        return next((u for u in self.upstreams if u.default), None)
