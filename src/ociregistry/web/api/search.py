"""/api/v1/search: repositories, tags and annotations containing a text."""

from __future__ import annotations

import json
from typing import Any

from ociregistry.web.api import access
from ociregistry.web.api.blueprint import api_services, operation, query, schema

HIT = schema("SearchHit", {
    "type": "object", "required": ["kind", "repository"],
    "properties": {
        "kind": {"type": "string", "enum": ["repository", "tag", "annotation"]},
        "repository": {"type": "string"},
        "tag": {"type": ["string", "null"]},
        "digest": {"type": ["string", "null"]},
        "annotations": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    },
})


@operation(
    "/search", "GET", summary="Search repositories, tags and annotations", tag="search",
    permission="list", response={"type": "object", "required": ["items"],
                                 "properties": {"items": {"type": "array", "items": HIT}}},
    description="Repository names (lower case) and tag names containing the text; manifests "
                "with an annotation whose key is the text (e.g. "
                "`org.opencontainers.image.source`) or whose value starts with it (e.g. "
                "`https://github.com/org/`), answered from indexes; up to `limit` hits of "
                "each kind, only in repositories the caller may pull.",
    parameters=(
        query("q", {"type": "string", "minLength": 1, "maxLength": 255}, "Text to find.",
              required=True),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
              "Hits of each kind."),
    ),
)
def search(q: str, limit: int) -> dict[str, Any]:
    hits = api_services().catalog.search(q, limit, access.visible_filter())
    return {"items": [
        {"kind": h.kind, "repository": h.repository, "tag": h.tag, "digest": h.digest,
         "annotations": json.loads(h.annotations) if h.annotations else None}
        for h in hits
    ]}
