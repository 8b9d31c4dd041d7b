"""/api/v1/quotas: namespace quotas and their usage. Admins only.

HTTP only: each view calls lifecycle/quotas.py (QuotaService), which the web UI
and the command line use as well. Quotas from the configuration file are listed
(``source: config``) but changed only there (409).
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from ociregistry.admin.errors import NotFound
from ociregistry.lifecycle.quotas import QuotaService, quota_dict
from ociregistry.web.api.blueprint import operation, schema

BYTES = {"type": "integer", "minimum": 0, "maximum": 2**62}
QUOTA = schema("Quota", {
    "type": "object",
    "required": ["id", "namespace", "limit", "warning", "usage", "blob_bytes", "upload_bytes",
                 "source", "percent"],
    "properties": {
        "id": {"type": "integer"},
        "namespace": {"type": "string", "description": "repository glob (`team-a/**`)"},
        "limit": {"type": "integer", "description": "bytes"},
        "warning": {"type": ["integer", "null"], "description": "bytes; null: no warning"},
        "usage": {"type": "integer",
                  "description": "bytes of the distinct blobs held in the namespace plus its "
                                 "open uploads (blob_bytes + upload_bytes)"},
        "blob_bytes": {"type": "integer"},
        "upload_bytes": {"type": "integer"},
        "percent": {"type": "number"},
        "source": {"type": "string", "enum": ["config", "api"]},
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
    },
})
RECOUNT = schema("QuotaRecount", {
    "type": "object", "required": ["before", "after", "quota"],
    "properties": {"before": {"type": "integer"}, "after": {"type": "integer"},
                   "quota": QUOTA},
})
QUOTA_PATH = {"name": "quota", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1}}


def quotas() -> QuotaService:
    return current_app.extensions["ociregistry"].quotas


def _id(quota: str) -> int:
    if not quota.isascii() or not quota.isdigit() or len(quota) > 18:
        raise NotFound(f"no quota {quota[:40]!r}")
    return int(quota)


@operation("/quotas", "GET", summary="List namespace quotas with their usage", tag="quotas",
           permission="admin",
           response={"type": "object", "required": ["items"],
                     "properties": {"items": {"type": "array", "items": QUOTA}}})
def list_quotas() -> dict[str, Any]:
    return {"items": [quota_dict(row) for row in quotas().list()]}


@operation("/quotas", "POST", summary="Create a namespace quota", tag="quotas",
           permission="admin", response=QUOTA, status=201,
           body={"type": "object", "required": ["namespace", "limit"],
                 "additionalProperties": False,
                 "properties": {"namespace": {"type": "string", "minLength": 1,
                                              "maxLength": 255},
                                "limit": BYTES, "warning": {**BYTES, "type": ["integer",
                                                                              "null"]}}},
           description="The namespace's current usage is counted once, then kept up to "
                       "date with every push, delete and GC. 409 `conflict` when the "
                       "namespace has a quota already.")
def create_quota(body: dict[str, Any]) -> dict[str, Any]:
    row = quotas().create(body["namespace"], body["limit"], body.get("warning"))
    return quota_dict(row)


@operation("/quotas/{quota}", "GET", summary="One quota and its usage", tag="quotas",
           permission="admin", response=QUOTA, parameters=(QUOTA_PATH,))
def get_quota(quota: str) -> dict[str, Any]:
    return quota_dict(quotas().get(_id(quota)))


@operation("/quotas/{quota}", "PATCH", summary="Change a quota's limit or warning",
           tag="quotas", permission="admin", response=QUOTA, parameters=(QUOTA_PATH,),
           body={"type": "object", "additionalProperties": False,
                 "properties": {"limit": BYTES,
                                "warning": {**BYTES, "type": ["integer", "null"]}}},
           description="A lower limit than the usage refuses further growth; nothing is "
                       "deleted. 409 for a quota of the configuration file.")
def update_quota(quota: str, body: dict[str, Any]) -> dict[str, Any]:
    return quota_dict(quotas().update(_id(quota), body))


@operation("/quotas/{quota}", "DELETE", summary="Delete a quota", tag="quotas",
           permission="admin", response=None, status=204, parameters=(QUOTA_PATH,),
           description="409 for a quota of the configuration file.")
def delete_quota(quota: str) -> None:
    quotas().delete(_id(quota))


@operation("/quotas/{quota}/recount", "POST", summary="Count a quota's usage from scratch",
           tag="quotas", permission="admin", response=RECOUNT, parameters=(QUOTA_PATH,),
           description="Walks the namespace once (as `ociregistry du --quotas` does) and "
                       "replaces the kept figures; `before` and `after` differ only if "
                       "they had drifted.")
def recount_quota(quota: str) -> dict[str, Any]:
    return quotas().recount(_id(quota))
