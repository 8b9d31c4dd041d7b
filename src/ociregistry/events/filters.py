"""An endpoint's specification: where and how to send, which events (filters).

Checked here for the configuration file, the API and the UI alike; a bad value
raises ``SpecError`` with a message naming the field. Repository globs follow
the access rules' grammar (``*`` within a path component, ``**`` across);
action and media type globs are shell globs (``manifest.*``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from ociregistry.auth.rules import glob_match
from ociregistry.events.formats import FORMATS, secret_key
from ociregistry.events.model import Event

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_RESERVED = {"content-type", "content-length", "host", "webhook-id", "webhook-timestamp",
             "webhook-signature", "transfer-encoding", "connection"}
MAX_LIST = 32
MAX_BATCH = 1000


class SpecError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass
class EndpointSpec:
    name: str
    url: str
    format: str = "plain"
    headers: dict[str, str] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    repositories: list[str] = field(default_factory=list)
    media_types: list[str] = field(default_factory=list)
    ca_file: str = ""
    ca_pem: str = ""
    timeout_seconds: float = 10.0
    batch_max_events: int = 0  # 0: events.batch.max_events; 1: one event per request

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def check(self) -> EndpointSpec:
        for name, kind in (("name", str), ("url", str), ("format", str), ("headers", dict),
                           ("actions", list), ("repositories", list), ("media_types", list),
                           ("ca_file", str), ("ca_pem", str)):
            if not isinstance(getattr(self, name), kind):
                raise SpecError(name, f"must be a {'string' if kind is str else kind.__name__}")
        for name in ("actions", "repositories", "media_types"):
            if not all(isinstance(g, str) for g in getattr(self, name)):
                raise SpecError(name, "a list of strings")
        if isinstance(self.timeout_seconds, bool) or not isinstance(
                self.timeout_seconds, int | float):
            raise SpecError("timeout_seconds", "a number of seconds")
        if not NAME.match(self.name):
            raise SpecError("name", "1 to 64 of a-z 0-9 _ . -, starting with a letter or digit")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(
                c.isspace() for c in self.url) or len(self.url) > 2000:
            raise SpecError("url", "an http:// or https:// URL with a host")
        if self.format not in FORMATS:
            raise SpecError("format", f"one of {', '.join(FORMATS)}")
        if len(self.headers) > MAX_LIST:
            raise SpecError("headers", f"at most {MAX_LIST}")
        for key, value in self.headers.items():
            if not _HEADER_NAME.match(key) or key.lower() in _RESERVED:
                raise SpecError("headers", f"{key[:64]!r} is not a header this may set")
            if not isinstance(value, str) or any(c in value for c in "\r\n\x00") \
                    or len(value) > 4096:
                raise SpecError("headers", f"the value of {key} is not a header value")
        for name in ("actions", "repositories", "media_types"):
            globs = getattr(self, name)
            if len(globs) > MAX_LIST or any(not g or len(g) > 255 for g in globs):
                raise SpecError(name, f"at most {MAX_LIST} non-empty globs")
        if self.ca_pem and "-----BEGIN CERTIFICATE-----" not in self.ca_pem:
            raise SpecError("ca_pem", "PEM certificates")
        if not 0 < self.timeout_seconds <= 300:
            raise SpecError("timeout_seconds", "between 0 and 300")
        if isinstance(self.batch_max_events, bool) or not isinstance(
                self.batch_max_events, int) or not 0 <= self.batch_max_events <= MAX_BATCH:
            raise SpecError("batch_max_events", f"an integer from 0 (the default) to {MAX_BATCH}")
        return self

    def batch_size(self, default: int) -> int:
        """Events per request: this endpoint's own size, else the configured default."""
        return self.batch_max_events or default

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes this endpoint's filters (an empty list lets all through)."""
        if event.action == "test":
            return True
        if self.actions and not any(fnmatchcase(event.action, g) for g in self.actions):
            return False
        if self.repositories and not (event.repository and any(
                glob_match(g, event.repository) for g in self.repositories)):
            return False
        if self.media_types:
            types = [t for t in (event.media_type, event.artifact_type) if t]
            if not any(fnmatchcase(t, g) for t in types for g in self.media_types):
                return False
        return True


def check_secret(secret: str) -> str:
    try:
        secret_key(secret)
    except ValueError as exc:
        raise SpecError("secret", str(exc)) from exc
    return secret
