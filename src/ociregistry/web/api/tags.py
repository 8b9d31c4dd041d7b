"""/api/v1/repositories/{name}/tags: keyset pages of tags, deleting one."""

from __future__ import annotations

from typing import Any

from flask import Response

from ociregistry.core.browse import TagView
from ociregistry.core.catalog import TAG_SORTS
from ociregistry.core.cursors import BadCursor
from ociregistry.core.errors import ManifestUnknown
from ociregistry.web.api.blueprint import REPOSITORY_NAME, api_services, operation, query, schema
from ociregistry.web.api.paging import CURSOR, LIMIT, ORDER, descending, page_response, page_schema
from ociregistry.web.api.problems import Problem

TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
TAG = schema("Tag", {
    "type": "object",
    "required": ["name", "digest", "media_type", "artifact_type", "kind", "size", "platforms",
                 "pushed_at", "created"],
    "properties": {
        "name": {"type": "string"},
        "digest": {"type": "string"},
        "media_type": {"type": "string"},
        "artifact_type": {"type": ["string", "null"],
                          "description": "artifactType, else the config's media type"},
        "kind": {"type": "string", "enum": ["image", "index", "artifact", "schema1"]},
        "size": {"type": "integer", "description": "bytes of the distinct blobs it references "
                                                   "(an index: all its children's)"},
        "platforms": {"type": "array", "items": {"type": "string"}},
        "pushed_at": {"type": "number", "description": "Unix time the tag was last set"},
        "created": {"type": ["string", "null"],
                    "description": "org.opencontainers.image.created, when present"},
        "last_pulled_at": {"type": ["number", "null"],
                           "description": "Unix time of the last GET by this tag (null: never)"},
        "pull_count": {"type": "integer", "description": "manifest GETs by this tag"},
    },
})


def tag_json(tag: TagView) -> dict[str, Any]:
    return {"name": tag.name, "digest": tag.digest, "media_type": tag.media_type,
            "artifact_type": tag.artifact_type, "kind": tag.kind, "size": tag.size,
            "platforms": tag.platforms, "pushed_at": tag.pushed_at, "created": tag.created,
            "last_pulled_at": tag.last_pulled_at, "pull_count": tag.pull_count}


@operation(
    "/repositories/{name}/tags", "GET", summary="List a repository's tags", tag="tags",
    permission="repository:pull", paginated=True, response=page_schema(TAG),
    description="Keyset pages (no cap below 1,000 per page). Pull statistics are written "
                "by each worker every few seconds (pull_stats.flush_interval_seconds).",
    parameters=(
        REPOSITORY_NAME,
        query("exact", {"type": "string", "maxLength": 128}, "This tag only."),
        query("prefix", {"type": "string", "maxLength": 128}, "Tags starting with this."),
        query("glob", {"type": "string", "maxLength": 128},
              "Tags matching this glob (`*` any run, `?` one character), e.g. `v1.*`."),
        query("sort", {"type": "string", "enum": list(TAG_SORTS), "default": "name"},
              "name, pushed (when the tag was last set) or pulled (last GET by this tag; "
              "never pulled sorts as oldest)."),
        ORDER, LIMIT, CURSOR,
    ),
)
def list_tags(name: str, exact: str | None, prefix: str | None, glob: str | None, sort: str,
              order: str | None, limit: int, cursor: str | None) -> Response:
    try:
        page = api_services().catalog.tags(
            name, exact=exact or "", prefix=prefix or "", glob=glob or "",
            sort=sort, descending=descending(order, sort), limit=limit, cursor=cursor)
    except BadCursor as exc:
        raise Problem("invalid_cursor", str(exc), parameter="cursor") from exc
    return page_response(page, [tag_json(t) for t in page.items])


@operation(
    "/repositories/{name}/tags/{tag}", "DELETE", summary="Delete a tag", tag="tags",
    permission="repository:delete", response=None, status=204,
    description="Removes the tag (the manifest stays, reachable by digest). The same call as "
                "DELETE /v2/{name}/manifests/{tag}; 405 `unsupported` when deletes are off.",
    parameters=(REPOSITORY_NAME, {"name": "tag", "in": "path", "required": True,
                                  "schema": {"type": "string", "pattern": TAG_PATTERN}}),
)
def delete_tag(name: str, tag: str) -> None:
    try:
        api_services().browse.delete_tag(name, tag)
    except ManifestUnknown as exc:
        raise Problem("tag_not_found", f"no tag {tag} in {name}") from exc
