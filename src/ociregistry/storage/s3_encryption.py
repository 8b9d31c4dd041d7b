"""Does the S3 store accept the server-side encryption the settings ask for?

`storage.s3.sse: AES256` works on AWS, but S3-compatible servers honour it only
when they have been given keys (SeaweedFS, MinIO, Ceph RGW); without them they
fail every write that asks for it (SeaweedFS: 500 InternalError), so every blob
upload would fail. `ociregistry serve` asks once at start, with a small object
under uploads/ (GC removes one left behind), and refuses to start with a message
that says what to change. It gives no verdict when the store fails plain writes
too: that is an outage, for readiness to report, not a configuration error.
"""

from __future__ import annotations

import uuid

from botocore.exceptions import BotoCoreError, ClientError

from ociregistry.storage.s3 import S3Storage

PROBE = b"ociregistry encryption probe"


def refused_encryption(storage: S3Storage) -> str | None:
    """Why the store refuses the configured encryption; None when it accepts it, when
    none is configured, or when the store cannot be written at all."""
    if not storage.sse_args:
        return None
    client, bucket = storage.client, storage.bucket
    key = storage._key(f"uploads/{uuid.uuid4()}/encryption-probe")
    try:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=PROBE, **storage.sse_args)
            return None
        except ClientError as encrypted:
            refusal = encrypted
        try:
            client.put_object(Bucket=bucket, Key=key, Body=PROBE)
        except (ClientError, BotoCoreError):
            return None  # plain writes fail too: not about encryption
        error = refusal.response.get("Error", {})
        return (
            f"the S3 store refuses server-side encryption storage.s3.sse: "
            f"{storage.settings.sse!r} ({error.get('Code', '?')}: {error.get('Message', '')}) "
            f"while it accepts unencrypted writes, so every upload would fail. Give the "
            f"server encryption keys (SeaweedFS: WEED_S3_SSE_KEY; MinIO: a KMS) or set "
            f"storage.s3.sse: \"\" (docs/deployment.md, S3-compatible storage)"
        )
    except BotoCoreError:
        return None  # unreachable: readiness reports it
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError):
            pass  # GC removes stray objects under uploads/
