"""Retention dry run at scale: 100,000 tags across 1,000 repositories, timed.

    .venv/bin/python -m bench.retention_dryrun [--repos 1000] [--tags-per-repo 100]
                                               [--database-url URL]

Fills a fresh index directly (SQLite in a temporary directory, or the PostgreSQL
database given): per repository, ``tags-per-repo`` tags on 70 % as many manifests (so
some manifests carry several tags, as CI images do), 20 % more untagged manifests,
index children and signatures (referrers) on a few, pull statistics on half the tags,
expiry labels on some. Then times, in process, the dry run of

  - one policy over every repository: untagged manifests selected, keep the 10 most
    recently pushed OR anything pulled within 30 days OR ``v*`` tags always;
  - label expiry;
  - the CLI's ``ociregistry retention run --dry-run`` (process start included);
  - with ``--real-run``, the real run of the policy (batched, audited deletions).

The goal (issue 15): the policy's dry run under 10 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ociregistry.config import RetentionSettings
from ociregistry.lifecycle.policy import RetentionPolicy
from ociregistry.lifecycle.retention import RetentionService, expiry_policy
from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.filesystem import FilesystemStorage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DAY = 86400.0
POLICY = {"name": "everything", "repositories": ["**"], "untagged": True,
          "keep": [{"latest_pushed": 10}, {"pulled_within": "30d"},
                   {"tags": ["v*"], "always": True}]}


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def fill(store: MetadataStore, repos: int, tags_per_repo: int) -> dict[str, int]:
    now = time.time()
    images = max(1, int(tags_per_repo * 0.7))
    loose = max(1, int(tags_per_repo * 0.2))
    counts = {"repositories": repos, "tags": 0, "manifests": 0}
    mid = 0
    with store.write() as conn:
        for r in range(1, repos + 1):
            conn.execute(t.repositories.insert().values(id=r, name=f"team{r % 50}/app{r}",
                                                        created_at=now - 400 * DAY))
            manifests, tags, children, tag_pulls, manifest_pulls, expiry = [], [], [], [], [], []
            first = mid + 1
            for i in range(images + loose):
                mid += 1
                created = now - (400 - i * 300 / (images + loose)) * DAY
                digest = _digest(f"{r}/{i}")
                subject = _digest(f"{r}/0") if i == images else None  # a signature
                manifests.append({"id": mid, "repository_id": r, "digest": digest,
                                  "media_type": OCI_MANIFEST, "size": 100,
                                  "payload": b"{}", "subject": subject,
                                  "artifact_type": None, "annotations": None,
                                  "created_at": created})
                if i % 10 == 0:  # expiry label already read (the steady state)
                    expiry.append({"manifest_id": mid, "seconds": 14 * DAY if i % 20 else None})
                if i == images + 1:  # an untagged index of an untagged child
                    children.append({"manifest_id": mid, "child_digest": _digest(f"{r}/{i+1}"),
                                     "repository_id": r})
            for j in range(tags_per_repo):
                image = first + (j % images)
                name = f"v{j}.0" if j % 25 == 0 else f"build-{j}"
                pushed = now - (300 - j * 290 / tags_per_repo) * DAY
                tags.append({"repository_id": r, "name": name, "manifest_id": image,
                             "updated_at": pushed})
                if j % 2:
                    tag_pulls.append({"repository_id": r, "name": name, "count": j,
                                      "last_pulled_at": now - (j % 90) * DAY})
            for image in range(first, first + images, 3):
                manifest_pulls.append({"manifest_id": image, "count": 1,
                                       "last_pulled_at": now - 5 * DAY})
            for table, rows in ((t.manifests, manifests), (t.tags, tags),
                                (t.manifest_children, children), (t.tag_pulls, tag_pulls),
                                (t.manifest_pulls, manifest_pulls),
                                (t.manifest_label_expiry, expiry)):
                if rows:
                    conn.execute(table.insert(), rows)
            counts["tags"] += len(tags)
            counts["manifests"] += len(manifests)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags-per-repo", type=int, default=100)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--real-run", action="store_true",
                        help="then also time the real run (deletes the plan, audited)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="retention-bench-"))
    try:
        url = args.database_url or f"sqlite:///{work}/registry.db"
        store = MetadataStore(url)
        store.create_schema()
        started = time.monotonic()
        counts = fill(store, args.repos, args.tags_per_repo)
        print(f"filled {counts} in {time.monotonic() - started:.1f} s")
        service = RetentionService(store, FilesystemStorage(str(work)),
                                   RetentionSettings(), grace=3600)
        policy = RetentionPolicy.model_validate(POLICY)
        for name, pol in (("policy", policy), ("label expiry", expiry_policy())):
            started = time.monotonic()
            plan = service.plan(pol)
            elapsed = time.monotonic() - started
            kinds = [d.kind for d in plan]
            print(f"dry run, {name}: {elapsed:.2f} s; would delete {kinds.count('tag')} tags, "
                  f"{kinds.count('manifest')} manifests")
        config = work / "config.yml"
        config.write_text(yaml.safe_dump({"data_dir": str(work), "database": {"url": url},
                                          "retention": {"policies": [POLICY]}}))
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "ociregistry", "retention", "run",
                              "--dry-run", "--policy", "everything", "--json",
                              "--config", str(config)],
                             capture_output=True, text=True, env={**os.environ})
        elapsed = time.monotonic() - started
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return 1
        [run] = json.loads(out.stdout)
        print(f"CLI dry run (process start, plan, JSON of {len(run['deletions'])} deletions): "
              f"{elapsed:.2f} s")
        if args.real_run:
            service.settings = RetentionSettings(policies=[policy], label_expiry=False)
            started = time.monotonic()
            [result] = service.run("everything", dry_run=False, trigger="cli")
            print(f"real run: {time.monotonic() - started:.2f} s; deleted "
                  f"{result.summary()['tags']} tags, {result.summary()['manifests']} "
                  f"manifests, skipped {len(result.skipped)}")
        store.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
