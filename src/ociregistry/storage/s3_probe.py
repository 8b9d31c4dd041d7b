"""The S3 readiness probe: the writes a push makes, done small, with the real settings.

A bucket that answers HEAD can still refuse every push: server-side encryption
the server does not support (SeaweedFS without a key answers 500 to any write
that asks for AES256), a key with read-only rights, a full or read-only store.
So the probe does what an upload does, under ``_readiness/`` in the registry's
prefix: a PutObject and a multipart upload (create, one part, abort), both with
the configured ``sse`` arguments, then deletes what it wrote. It uses a client
that tries once with short timeouts, so a probe never hangs on a dead store.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

PROBE_DIR = "_readiness/"


def _describe(step: str, exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{step} answered {status} {error.get('Code', '')}: {error.get('Message', '')}"
    return f"{step} failed: {type(exc).__name__}: {exc}"


def probe_write(client: Any, bucket: str, key_for: Callable[[str], str],
                sse: dict[str, str], sse_setting: str) -> None:
    """Raise OSError saying which step failed (and with which SSE setting).

    ``key_for`` maps a path to the store's key (its prefix); ``sse`` are the
    arguments every write sends, ``sse_setting`` the configured value named in errors.
    """
    # One key per process: probes of different instances never meet.
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    key = key_for(f"{PROBE_DIR}{name}")
    hint = f" (storage.s3.sse is {sse_setting!r})" if sse else ""
    step = "PutObject"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"ready", **sse)
        step = "DeleteObject"
        client.delete_object(Bucket=bucket, Key=key)
        step = "CreateMultipartUpload"
        mpu = client.create_multipart_upload(Bucket=bucket, Key=key, **sse)["UploadId"]
        try:
            step = "UploadPart"
            client.upload_part(Bucket=bucket, Key=key, UploadId=mpu, PartNumber=1, Body=b"r")
        finally:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=mpu)
            except (BotoCoreError, ClientError):
                pass  # the store failed meanwhile: the next probe reports it
    except (BotoCoreError, ClientError) as exc:
        raise OSError(f"S3 bucket {bucket!r}: {_describe(step, exc)}{hint}") from exc
