"""The cluster's parts behave as in production: SeaweedFS checks credentials like
AWS, nginx spreads requests over every instance, and the instances share state."""

from __future__ import annotations

import json
import uuid

import botocore.exceptions
import pytest
import requests

from tests.cluster.s3 import SeaweedFS, s3_client
from tests.helpers import OCI_MANIFEST, make_image, push_blob, put_manifest, sha256

ACCEPT = {"Accept": OCI_MANIFEST}
# What a machine may set for every program: none of it may steer the clients at a
# plain-HTTP S3 endpoint with explicit keys.
HOSTILE_CA = {
    "missing-files": {name: "/nonexistent/ca-bundle.pem" for name in (
        "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")},
    "empty": {name: "" for name in (
        "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")},
}
WRONG_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG",
    "AWS_SECRET_ACCESS_KEY": "wrong-secret",
    "AWS_SESSION_TOKEN": "wrong-token",
    "AWS_DEFAULT_REGION": "eu-west-3",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
}


def _code(exc: botocore.exceptions.ClientError) -> str:
    return exc.response["Error"]["Code"]


def test_seaweedfs_checks_credentials_like_aws(seaweedfs, s3_bucket):
    client = seaweedfs.client()
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"secret bytes")
    wrong = seaweedfs.client(secret_key="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        wrong.get_object(Bucket=s3_bucket, Key="k")
    assert _code(refused.value) == "SignatureDoesNotMatch"
    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        seaweedfs.client(access_key="nobody").list_buckets()
    assert _code(unknown.value) == "InvalidAccessKeyId"
    # No signature at all: the object is not public.
    anonymous = requests.get(f"{seaweedfs.endpoint_url}/{s3_bucket}/k")
    assert anonymous.status_code == 403
    assert b"secret bytes" not in anonymous.content
    assert client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"secret bytes"


def test_seaweedfs_creates_no_bucket_on_write_and_keeps_non_empty_ones(seaweedfs, s3_bucket):
    client = seaweedfs.client()
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(botocore.exceptions.ClientError) as no_bucket:
        client.put_object(Bucket=missing, Key="k", Body=b"x")
    assert _code(no_bucket.value) == "NoSuchBucket"
    assert missing not in [b["Name"] for b in client.list_buckets()["Buckets"]]
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as not_empty:
        client.delete_bucket(Bucket=s3_bucket)
    assert _code(not_empty.value) == "BucketNotEmpty"
    assert seaweedfs.keys(s3_bucket) == ["k"]


@pytest.mark.parametrize("values", HOSTILE_CA.values(), ids=HOSTILE_CA.keys())
def test_s3_clients_ignore_ca_and_aws_variables(seaweedfs, s3_bucket, monkeypatch, values):
    for name, value in {**values, **WRONG_AWS, "AWS_PROFILE": "no-such-profile"}.items():
        monkeypatch.setenv(name, value)
    client = s3_client(seaweedfs.endpoint_url, seaweedfs.access_key, seaweedfs.secret_key)
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"fine")
    assert client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"fine"
    name = seaweedfs.create_bucket()
    seaweedfs.delete_bucket(name)


def test_seaweedfs_starts_whatever_the_environment_holds(monkeypatch):
    for name, value in {**HOSTILE_CA["empty"], **WRONG_AWS, "AWS_PROFILE": "nope"}.items():
        monkeypatch.setenv(name, value)
    server = SeaweedFS().start()
    try:
        bucket = server.create_bucket()
        server.client().put_object(Bucket=bucket, Key="k", Body=b"x")
        server.delete_bucket(bucket)
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode is not None
    assert not server.base.exists()


@pytest.mark.parametrize("values", HOSTILE_CA.values(), ids=HOSTILE_CA.keys())
def test_registry_on_s3_ignores_ca_and_credential_variables(make_cluster, values):
    """The endpoint is plain HTTP and the keys are explicit: CA bundle variables
    (missing files, empty strings) and AWS_* credentials must change nothing."""
    cluster = make_cluster(size=1, env={**values, **WRONG_AWS})
    repo = f"env/{uuid.uuid4().hex[:8]}"
    manifest = make_image(cluster.url, repo, layers=1)
    r = put_manifest(cluster.url, repo, "v1", manifest)
    assert r.status_code == 201, r.text
    layer = manifest["layers"][0]["digest"]
    r = requests.get(f"{cluster.url}/v2/{repo}/blobs/{layer}")
    assert r.status_code == 200
    assert sha256(r.content) == layer
    assert requests.get(f"{cluster.url}/readyz").status_code == 200


def test_nginx_spreads_requests_over_every_instance(cluster):
    rid = uuid.uuid4().hex
    for _ in range(6):
        r = requests.get(f"{cluster.url}/v2/", headers={"X-Request-ID": rid})
        assert r.status_code == 200
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    used = cluster.nginx.upstreams_of(rid, count=6)
    assert sorted(used) == sorted([inst.host for inst in cluster.instances] * 2)


def test_instances_share_blobs_manifests_and_tags(cluster):
    repo = f"shared/{uuid.uuid4().hex[:8]}"
    first, second, third = (inst.url for inst in cluster.instances)
    manifest = make_image(first, repo)
    body = json.dumps(manifest).encode()
    assert put_manifest(second, repo, "v1", body).status_code == 201
    for url in (first, second, third, cluster.url):
        r = requests.get(f"{url}/v2/{repo}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 200
        assert r.content == body
        assert requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"] == ["v1"]
        for layer in manifest["layers"]:
            blob = requests.get(f"{url}/v2/{repo}/blobs/{layer['digest']}")
            assert sha256(blob.content) == layer["digest"]
    assert requests.delete(f"{third}/v2/{repo}/manifests/v1").status_code == 202
    for url in (first, second, cluster.url):
        assert requests.get(f"{url}/v2/{repo}/manifests/v1", headers=ACCEPT).status_code == 404


def test_blobs_are_stored_under_the_cluster_prefix(cluster):
    repo = f"prefix/{uuid.uuid4().hex[:8]}"
    digest = push_blob(cluster.url, repo, b"where does this go")
    key = f"{cluster.prefix}blobs/sha256/{digest[7:9]}/{digest[7:]}"
    assert key in cluster.s3.keys(cluster.bucket, cluster.prefix)
    got = cluster.s3.client().get_object(Bucket=cluster.bucket, Key=key)["Body"].read()
    assert got == b"where does this go"


def test_a_cluster_on_a_shared_filesystem_works_too(make_cluster):
    cluster = make_cluster(storage="filesystem", size=2)
    assert cluster.driver == "filesystem"
    repo = "fs/shared"
    one, two = (inst.url for inst in cluster.instances)
    manifest = make_image(one, repo, layers=1)
    assert put_manifest(two, repo, "v1", manifest).status_code == 201
    r = requests.get(f"{cluster.url}/v2/{repo}/blobs/{manifest['layers'][0]['digest']}",
                     allow_redirects=False)
    assert r.status_code == 200
    assert sha256(r.content) == manifest["layers"][0]["digest"]
