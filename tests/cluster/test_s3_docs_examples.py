"""docs/deployment.md's S3 examples: each loads through the settings model, and the one
for S3-compatible servers works as written on SeaweedFS started as the docs start it (no
encryption key). `sse: AES256` fails on that server, as the docs warn, so `serve` refuses
to start with it rather than answer 500 to every upload."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from ociregistry.config import S3Settings
from ociregistry.core.uploads import UploadService
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.s3 import S3Storage
from tests.cluster.s3 import SeaweedFS
from tests.deploy.support import settings_of
from tests.deploy.walkthrough import DEPLOYMENT_MD
from tests.server import RegistryProcess

REPO = "docs/example"


def _s3_section_examples() -> list[dict]:
    text = DEPLOYMENT_MD.read_text()
    section = text[text.index("### S3-compatible storage"):]
    section = section[:section.index("\n### ", 1)]
    found = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    return [doc for doc in found if isinstance(doc, dict) and "storage" in doc]


def _compatible_example() -> dict:
    (example,) = [e for e in _s3_section_examples() if e["storage"]["s3"].get("endpoint_url")]
    return example


@pytest.fixture(scope="module")
def plain_seaweedfs() -> Iterator[SeaweedFS]:
    server = SeaweedFS(sse_key=False).start()
    yield server
    server.stop()


@pytest.fixture
def bucket(plain_seaweedfs: SeaweedFS) -> Iterator[str]:
    name = plain_seaweedfs.create_bucket()
    yield name
    plain_seaweedfs.delete_bucket(name)


def _as_documented(server: SeaweedFS, bucket: str, **changes: object) -> S3Settings:
    """The documented example, with only where the store is and its keys replaced."""
    s3 = dict(_compatible_example()["storage"]["s3"])
    s3.update(bucket=bucket, endpoint_url=server.endpoint_url, access_key=server.access_key,
              secret_key=server.secret_key, **changes)
    return S3Settings(**s3)


def _push(tmp_path: Path, settings: S3Settings) -> None:
    """One blob over several parts, in two requests, then read back."""
    storage = S3Storage(settings)
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    db.create_schema()
    try:
        data = os.urandom(settings.part_size + 12345)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        service = UploadService(db, storage)
        state = service.start(REPO)
        service.append(REPO, state.id, [data[:1000]])
        service.finish(REPO, state.id, digest, [data[1000:]])
        assert b"".join(storage.open_blob(digest)) == data
    finally:
        db.dispose()


def test_every_s3_example_is_a_valid_configuration(tmp_path):
    examples = _s3_section_examples()
    assert len(examples) >= 2  # S3-compatible servers, and AWS
    for example in examples:
        settings_of(example, {}, tmp_path)


def test_the_s3_compatible_example_works_on_seaweedfs_as_the_docs_run_it(
    tmp_path, plain_seaweedfs, bucket
):
    settings = _as_documented(plain_seaweedfs, bucket)
    assert settings.sse == "" and settings.path_style
    S3Storage(settings).check()
    _push(tmp_path, settings)


def test_sse_aes256_fails_on_seaweedfs_without_a_key_as_the_docs_warn(
    tmp_path, plain_seaweedfs, bucket
):
    import botocore.exceptions

    settings = _as_documented(plain_seaweedfs, bucket, sse="AES256")
    with pytest.raises((botocore.exceptions.ClientError, OSError)):
        _push(tmp_path, settings)
    assert "500 InternalError" in DEPLOYMENT_MD.read_text()


def _serve(tmp_path: Path, settings: S3Settings) -> RegistryProcess:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage": {"driver": "s3",
                                                  "s3": settings.model_dump(mode="json")}}))
    config.chmod(0o600)
    return RegistryProcess(tmp_path / "data", workers=1, config=config)


def test_serve_refuses_encryption_the_store_cannot_do_and_says_what_to_change(
    tmp_path, plain_seaweedfs, bucket
):
    server = _serve(tmp_path, _as_documented(plain_seaweedfs, bucket, sse="AES256"))
    with pytest.raises(RuntimeError) as exited:
        server.start()
    message = str(exited.value)
    assert "refuses server-side encryption storage.s3.sse: 'AES256'" in message, message
    assert "WEED_S3_SSE_KEY" in message and 'storage.s3.sse: ""' in message
    assert server.proc is not None and server.proc.wait(timeout=60) == 2
    # The probe left nothing behind.
    assert plain_seaweedfs.keys(bucket) == []


def test_serve_starts_with_the_documented_example_and_takes_a_push(
    tmp_path, plain_seaweedfs, bucket
):
    settings = _as_documented(plain_seaweedfs, bucket, redirect=False)
    server = _serve(tmp_path, settings).start()
    try:
        data = os.urandom(100_000)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = requests.post(f"{server.url}/v2/{REPO}/blobs/uploads/",
                                 params={"digest": digest}, data=data, timeout=120)
        assert response.status_code == 201, response.text
        assert requests.get(f"{server.url}/v2/{REPO}/blobs/{digest}",
                            timeout=120).content == data
    finally:
        server.stop()
