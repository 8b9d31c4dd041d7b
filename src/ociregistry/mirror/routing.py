"""Which upstream a /v2 request means, and under which local name (one place).

Three ways in, checked in this order:

1. ``?ns=<host>`` (containerd's mirror convention): the upstream whose ``hosts``
   list the host; the name is the upstream's own (``library/alpine``). An unknown
   host is an error: nothing is ever fetched from a host nobody configured.
2. A path prefix: the first component of the name is an upstream's name
   (``dockerhub/library/alpine``).
3. The default upstream, for Docker's ``registry-mirrors`` (bare names such as
   ``library/alpine``): a read of a name that is no local repository.

Whichever way, mirrored content lives under ``<upstream>/<upstream repository>``;
on a Docker Hub upstream a single-component repository gets ``library/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ociregistry.core.errors import NameInvalid, NameUnknown
from ociregistry.core.names import validate_name
from ociregistry.mirror.settings import MirrorSettings, UpstreamSettings

_NS = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?$")
READS = ("GET", "HEAD")


@dataclass(frozen=True)
class Route:
    """A request for mirrored content."""

    upstream: UpstreamSettings
    local_name: str  # dockerhub/library/alpine: auth rules, UI, stats and GC use it
    remote_name: str  # library/alpine: the repository in the upstream
    namespace: str | None = None  # the ?ns= host that selected it (echoed in OCI-Namespace)


def remote_repository(upstream: UpstreamSettings, name: str) -> str:
    """The upstream's repository for ``name``: Docker Hub's implicit ``library/`` added."""
    if upstream.is_docker_hub and "/" not in name:
        return f"library/{name}"
    return name


def _route(upstream: UpstreamSettings, remote: str, ns: str | None) -> Route:
    remote = remote_repository(upstream, remote)
    local = f"{upstream.name}/{remote}"
    validate_name(local)  # the prefix may push a long name over the limit
    return Route(upstream, local, remote, ns)


def resolve(
    settings: MirrorSettings,
    name: str,
    ns: str | None,
    method: str = "GET",
    is_local: Callable[[str], bool] | None = None,
) -> Route | None:
    """The mirror route of a request for repository ``name`` (already validated), or
    None for a local repository. ``ns``: the ``ns`` query parameter, if any.
    ``is_local(name)``: whether a local repository of that name exists (consulted
    only for the default upstream). Raises an OCI error for an unusable ``ns``."""
    if ns is not None:
        host = ns.strip().lower()
        if not _NS.fullmatch(host):
            raise NameInvalid("invalid ns parameter: a registry host name is expected",
                              {"ns": ns[:100]})
        upstream = settings.by_host(host)
        if upstream is None:
            raise NameUnknown(f"no upstream of this registry mirrors {host}",
                              {"ns": host})
        first, _, rest = name.partition("/")
        if first == upstream.name and rest:
            # The client already asks for the local name (a mirror pointing at a prefix).
            return _route(upstream, rest, host)
        return _route(upstream, name, host)
    if not settings.upstreams:
        return None
    first, _, rest = name.partition("/")
    upstream = settings.by_name(first)
    if upstream is not None:
        if not rest:
            raise NameUnknown(f"{first} is an upstream prefix: name a repository under it",
                              {"name": name})
        return _route(upstream, rest, None)
    default = settings.default
    if default is not None and method in READS and not (is_local and is_local(name)):
        return _route(default, name, None)
    return None


def mirrored_prefix(settings: MirrorSettings, name: str) -> UpstreamSettings | None:
    """The upstream whose prefix ``name`` is under (for fast paths that must step aside)."""
    return settings.by_name(name.partition("/")[0]) if settings.upstreams else None
