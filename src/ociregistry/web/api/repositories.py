"""/api/v1/repositories and /api/v1/namespaces: listing, search, sizes."""

from __future__ import annotations

from typing import Any

from flask import Response

from ociregistry.core.catalog import REPOSITORY_SORTS
from ociregistry.core.cursors import BadCursor
from ociregistry.metadata.browse_queries import RepositorySummary
from ociregistry.web.api import access
from ociregistry.web.api.blueprint import REPOSITORY_NAME, api_services, operation, query, schema
from ociregistry.web.api.paging import CURSOR, LIMIT, ORDER, descending, page_response, page_schema
from ociregistry.web.api.problems import Problem

REPOSITORY = schema("Repository", {
    "type": "object",
    "required": ["name", "tags", "manifests", "size", "last_push"],
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "integer", "description": "number of tags"},
        "manifests": {"type": "integer"},
        "size": {"type": "integer",
                 "description": "bytes of the distinct blobs its manifests reference"},
        "last_push": {"type": ["number", "null"],
                      "description": "Unix time of the last tag or manifest push"},
    },
})
USAGE = schema("NamespaceUsage", {
    "type": "object",
    "required": ["prefix", "repositories", "tags", "manifests", "size"],
    "properties": {
        "prefix": {"type": "string"},
        "repositories": {"type": "integer"},
        "tags": {"type": "integer"},
        "manifests": {"type": "integer"},
        "size": {"type": "integer", "description": "bytes of the distinct blobs referenced "
                                                   "by all its repositories (shared layers "
                                                   "counted once)"},
    },
})


def repository_json(summary: RepositorySummary) -> dict[str, Any]:
    return {"name": summary.name, "tags": summary.tags, "manifests": summary.manifests,
            "size": summary.size, "last_push": summary.last_push}


@operation(
    "/repositories", "GET", summary="List and search repositories", tag="repositories",
    permission="list", paginated=True, response=page_schema(REPOSITORY),
    description="Repositories the caller may pull, in keyset pages. Sizes are deduplicated "
                "within the repository (a layer shared by two tags counts once).",
    parameters=(
        query("q", {"type": "string", "maxLength": 128}, "Names containing this text."),
        query("glob", {"type": "string", "maxLength": 128},
              "Names matching this glob (`*` any run of characters, `?` one)."),
        query("sort", {"type": "string", "enum": list(REPOSITORY_SORTS), "default": "name"},
              "name, pushed (last push) or size."),
        ORDER, LIMIT, CURSOR,
    ),
)
def list_repositories(q: str | None, glob: str | None, sort: str, order: str | None,
                      limit: int, cursor: str | None) -> Response:
    try:
        page = api_services().catalog.repositories(
            contains=q or "", glob=glob or "", sort=sort, descending=descending(order, sort),
            limit=limit, cursor=cursor, visible=access.visible_filter())
    except BadCursor as exc:
        raise Problem("invalid_cursor", str(exc), parameter="cursor") from exc
    return page_response(page, [repository_json(r) for r in page.items])


@operation(
    "/repositories/{name}/summary", "GET", summary="One repository's figures",
    tag="repositories", permission="repository:pull", response=REPOSITORY,
    parameters=(REPOSITORY_NAME,),
)
def repository_summary(name: str) -> dict[str, Any]:
    return repository_json(api_services().catalog.repository(name))


@operation(
    "/namespaces/{name}/usage", "GET", summary="Deduplicated usage of a namespace",
    tag="repositories", permission="list", response=USAGE,
    description="Every repository named `{name}` or below it (`{name}/...`) that the caller "
                "may pull: counts, and the bytes of the distinct blobs they reference.",
    parameters=({**REPOSITORY_NAME, "description": "Namespace prefix, e.g. `team/app`."},),
)
def namespace_usage(name: str) -> dict[str, Any]:
    usage = api_services().catalog.namespace_usage(name, access.visible_filter())
    return {"prefix": name, "repositories": usage.repositories, "tags": usage.tags,
            "manifests": usage.manifests, "size": usage.size}
