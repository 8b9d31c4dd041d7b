"""``ociregistry ls|tags|rm|gc --remote`` against a live registry, with the credentials
docker keeps (a temporary DOCKER_CONFIG holding ``auths`` entries)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from tests.api_v1.conftest import PASSWORDS, Live
from tests.helpers import OCI_MANIFEST, sha256


def docker_config(tmp_path: Path, live: Live, user: str | None, key: str = "") -> Path:
    """A DOCKER_CONFIG directory as ``docker login`` leaves it (other hosts too)."""
    directory = tmp_path / f"docker-{user}"
    directory.mkdir(exist_ok=True)
    auths: dict[str, Any] = {"other.example:5000": {"auth": base64.b64encode(
        b"admin:wrong-host").decode()}}
    if user is not None:
        host = key or live.url.removeprefix("http://")
        auths[host] = {"auth": base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}
    (directory / "config.json").write_text(json.dumps({"auths": auths}))
    return directory


def cli(live: Live, config: Path | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONFIG", "HOME")}
    env["HOME"] = str(config.parent if config else Path("/nonexistent"))
    if config is not None:
        env["DOCKER_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "ociregistry", *args, "--remote", live.url],
                          capture_output=True, text=True, timeout=300, env=env)


def push_unique(live: Live, repo: str, tag: str) -> str:
    auth = ("pusher", PASSWORDS["pusher"])
    blobs = []
    for data in (json.dumps({"os": "linux", "architecture": "amd64",
                             "n": os.urandom(8).hex()}).encode(), os.urandom(64)):
        r = requests.post(f"{live.url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)},
                          data=data, auth=auth, timeout=60)
        assert r.status_code == 201, r.text
        blobs.append({"digest": sha256(data), "size": len(data)})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blobs[0]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blobs[1]}],
    }).encode()
    r = requests.put(f"{live.url}/v2/{repo}/manifests/{tag}", data=manifest, auth=auth,
                     headers={"Content-Type": OCI_MANIFEST}, timeout=60)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def test_ls_lists_what_the_docker_credentials_may_see(live, tmp_path):
    admin = cli(live, docker_config(tmp_path, live, "admin"), "ls", "--json")
    assert admin.returncode == 0, admin.stderr
    assert {"team/app", "team/other", "public/base", "secret/thing"} <= \
        {r["name"] for r in json.loads(admin.stdout)}
    puller = cli(live, docker_config(tmp_path, live, "puller"), "ls", "--json")
    names = {r["name"] for r in json.loads(puller.stdout)}
    assert "secret/thing" not in names and "team/app" in names
    anonymous = cli(live, None, "ls", "--json")
    assert {r["name"] for r in json.loads(anonymous.stdout)} == {"public/base"}
    table = cli(live, docker_config(tmp_path, live, "admin"), "ls", "team")
    assert table.returncode == 0 and table.stdout.startswith("REPOSITORY")
    assert "team/app" in table.stdout and "secret/thing" not in table.stdout


def test_auths_keys_in_the_forms_docker_writes_are_matched(live, tmp_path):
    host = live.url.removeprefix("http://")
    for key in (f"http://{host}", f"http://{host}/v2/", host):
        directory = tmp_path / f"form-{abs(hash(key))}"
        directory.mkdir()
        config = docker_config(directory, live, "admin", key)
        out = cli(live, config, "ls", "--json")
        assert "secret/thing" in out.stdout, (key, out.stderr)


def test_tags_sorted_by_push_time(live, tmp_path):
    out = cli(live, docker_config(tmp_path, live, "puller"), "tags", "team/app", "--sort",
              "pushed", "--json")
    assert out.returncode == 0, out.stderr
    tags = json.loads(out.stdout)
    pushed = [t["pushed_at"] for t in tags]
    assert pushed == sorted(pushed, reverse=True) and len(tags) >= 6
    assert {"latest", "v1.0", "multi"} <= {t["name"] for t in tags}
    globbed = cli(live, docker_config(tmp_path, live, "puller"), "tags", "team/app",
                  "--glob", "v1.*", "--json")
    assert {t["name"] for t in json.loads(globbed.stdout)} == {"v1.0", "v1.1", "v1.10"}
    refused = cli(live, docker_config(tmp_path, live, "puller"), "tags", "secret/thing")
    assert refused.returncode == 1 and "403" in refused.stderr


def test_rm_deletes_a_tag_or_a_manifest_with_delete_rights_only(live, tmp_path):
    # In team/app, and all gone at the end: the other tests count the live registry's
    # repositories and tags.
    digest = push_unique(live, "team/app", "cli-one")
    push_unique(live, "team/app", "cli-two")
    puller = cli(live, docker_config(tmp_path, live, "puller"), "rm", "team/app:cli-one")
    assert puller.returncode == 1 and "403" in puller.stderr and "forbidden" in puller.stderr
    pusher = docker_config(tmp_path, live, "pusher")
    out = cli(live, pusher, "rm", "team/app:cli-two")
    assert out.returncode == 0, out.stderr
    auth = ("pusher", PASSWORDS["pusher"])
    tags = requests.get(f"{live.url}/v2/team/app/tags/list", auth=auth, timeout=60).json()
    assert "cli-one" in tags["tags"] and "cli-two" not in tags["tags"]
    out = cli(live, pusher, "rm", f"team/app@{digest}")
    assert out.returncode == 0, out.stderr
    r = requests.get(f"{live.url}/v2/team/app/manifests/{digest}", auth=auth, timeout=60)
    assert r.status_code == 404
    missing = cli(live, pusher, "rm", "team/app:cli-two")
    assert missing.returncode == 1 and "404" in missing.stderr
    tags = requests.get(f"{live.url}/v2/team/app/tags/list", auth=auth, timeout=60).json()
    assert not {"cli-one", "cli-two"} & set(tags["tags"])  # by digest: its tags went too
    bad = cli(live, pusher, "rm", "team/app")
    assert bad.returncode == 1 and "REPOSITORY:TAG" in bad.stderr


def test_gc_remote_runs_on_the_registry_for_admins_only(live, tmp_path):
    out = cli(live, docker_config(tmp_path, live, "admin"), "gc", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("would free ")
    assert json.loads(out.stdout.splitlines()[-1])["dry_run"] is True
    refused = cli(live, docker_config(tmp_path, live, "pusher"), "gc")
    assert refused.returncode == 1 and "403" in refused.stderr
    anonymous = cli(live, None, "gc")
    assert anonymous.returncode == 1 and "401" in anonymous.stderr
    assert "no credentials" in anonymous.stderr
