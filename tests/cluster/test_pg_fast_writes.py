"""The fast write route on PostgreSQL: mounts and manifest PUTs (new repositories, a
moved tag, a referrer, the core's refusals, an immutable tag) and the body-less upload
POST and PUT (new sessions, sessions crossing the routes, unknown sessions, wrong
digests, a quota, an outage, what stays Flask's) answer and write what Flask's route
does (tests/api/fast_writes_support.py), with the same code as on SQLite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api import test_fast_write_uploads as uploads
from tests.api import test_fast_writes as cases
from tests.api.fast_writes_support import WriteHarness


@pytest.mark.parametrize("case", [cases.test_mounts, cases.test_mounts_that_go_to_flask,
                                  cases.test_manifest_puts, cases.test_manifest_put_errors,
                                  cases.test_immutable_tag_refused,
                                  uploads.test_upload_post_and_put,
                                  uploads.test_upload_sessions_cross_routes,
                                  uploads.test_upload_put_errors, uploads.test_upload_quota,
                                  uploads.test_uploads_that_go_to_flask,
                                  uploads.test_upload_outage_and_range_refusal])
def test_fast_writes_on_postgresql(tmp_path: Path, pg_url: str,
                                   case: Callable[[WriteHarness], None]) -> None:
    h = WriteHarness(tmp_path, None, database={"url": pg_url})
    try:
        assert h.runtime.metadata.dialect == "postgresql"
        case(h)
    finally:
        on_pull = h.runtime.metadata.events.on_pull
        if on_pull is not None:
            on_pull.__self__.stop()
        if h.runtime.registry.pulls is not None:
            h.runtime.registry.pulls.close()
        h.runtime.metadata.dispose()
