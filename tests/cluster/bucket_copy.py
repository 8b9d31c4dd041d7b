"""Copy a bucket's blobs/ to a directory and back: the "sync" step of the
PostgreSQL + S3 backup in docs/backup.md (what `aws s3 sync` or `rclone sync`
do), with the tests' boto3 client.

    python -m tests.cluster.bucket_copy download|upload ENDPOINT BUCKET PREFIX DIR
    (keys in BUCKET_ACCESS_KEY / BUCKET_SECRET_KEY)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tests.cluster.s3 import s3_client


def download(client: Any, bucket: str, prefix: str, target: Path) -> int:
    """Every object under PREFIXblobs/ into target/blobs/...; the count."""
    count = 0
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                             Prefix=prefix + "blobs/")
    for page in pages:
        for obj in page.get("Contents", []):
            path = target / obj["Key"][len(prefix):]
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                client.download_file(bucket, obj["Key"], str(path))
            except Exception as exc:  # deleted since listed: the sync has nothing to copy
                if not any(s in str(exc) for s in ("404", "Not Found", "NoSuchKey")):
                    raise
                continue
            count += 1
    return count


def upload(client: Any, bucket: str, prefix: str, source: Path) -> int:
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, prefix + str(path.relative_to(source)))
            count += 1
    return count


def main(argv: list[str]) -> int:
    action, endpoint, bucket, prefix, directory = argv
    client = s3_client(endpoint, os.environ["BUCKET_ACCESS_KEY"], os.environ["BUCKET_SECRET_KEY"])
    copy = download if action == "download" else upload
    print(f"{action}: {copy(client, bucket, prefix, Path(directory))} objects")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
