"""Robot tokens in a cluster: a revocation on one instance is refused at once on the others.

Three instances share PostgreSQL, with Basic users, the built-in token service
(one signing key for all) and access rules. A robot's token works on every
instance, both as Basic credentials and through bearer tokens; an admin revokes
it in the UI of instance 0; instances 1 and 2 refuse it on the very next request,
bearer tokens issued before the revocation included.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ociregistry.auth.tokens import load_or_create_key
from tests.auth.support import PASSWORDS, RULES, write_htpasswd
from tests.cluster.pg import PostgresCluster
from tests.cluster.topology import Cluster

SERVICE = "cluster-registry"


@pytest.fixture
def authed_cluster(postgres: PostgresCluster, tmp_path: Path) -> Iterator[Cluster]:
    key = tmp_path / "token-key.pem"
    load_or_create_key(str(key), "ES256")
    auth = {
        "htpasswd": str(write_htpasswd(tmp_path / "htpasswd")),
        "rules": RULES + [{"groups": ["robots"], "repositories": ["ci/**"],
                           "actions": ["pull", "push"]}],
        "token": {"enabled": True, "key": str(key), "service": SERVICE, "issuer": "cluster"},
    }
    cluster = Cluster(tmp_path / "cluster", postgres.create_database(), size=3,
                      settings={"auth": auth})
    cluster.start()
    yield cluster
    cluster.stop()


def csrf(session: requests.Session, url: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', session.get(url, timeout=60).text)
    assert match
    return match.group(1)


def test_revoked_in_the_ui_of_one_instance_refused_at_once_by_the_others(authed_cluster,
                                                                         tmp_path):
    cluster = authed_cluster
    out = subprocess.run(
        [sys.executable, "-m", "ociregistry", "token", "create", "ci", "--scope",
         "ci/**:pull,push", "--expires", "1d", "--json", "--config", str(cluster.config),
         "--data-dir", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=120, check=True)
    made = json.loads(out.stdout)
    robot = ("robot$ci", made["token"])
    urls = [inst.url for inst in cluster.instances]

    # A bearer token from instance 0, used on instance 1; Basic credentials on instance 2.
    r = requests.get(urls[0] + "/auth/token", auth=robot, timeout=60,
                     params={"service": SERVICE, "scope": "repository:ci/app:pull"})
    assert r.status_code == 200, r.text
    jwt_headers = {"Authorization": f"Bearer {r.json()['token']}"}
    for _ in range(6):  # both workers of each instance
        r = requests.get(urls[1] + "/v2/ci/app/tags/list", headers=jwt_headers, timeout=60)
        assert r.status_code == 404, r.text  # allowed, and nothing pushed yet
        assert requests.get(urls[2] + "/v2/", auth=robot, timeout=60).status_code == 200

    # An admin revokes it in the UI of instance 0.
    admin = requests.Session()
    token = csrf(admin, urls[0] + "/ui/login")
    r = admin.post(urls[0] + "/ui/login", timeout=60, allow_redirects=False, data={
        "username": "root", "password": PASSWORDS["root"], "csrf_token": token,
        "next": "/ui/robots"})
    assert r.status_code == 303, r.text
    page = admin.get(urls[0] + "/ui/robots", timeout=60).text
    assert made["id"] in page
    r = admin.post(f"{urls[0]}/ui/robots/{made['id']}/revoke", timeout=60,
                   data={"csrf_token": csrf(admin, urls[0] + "/ui/robots")},
                   allow_redirects=False)
    assert r.status_code == 303

    # The very next requests on the other instances are refused, on every worker.
    for _ in range(6):
        r = requests.get(urls[1] + "/v2/ci/app/tags/list", headers=jwt_headers, timeout=60)
        assert r.status_code == 401, r.text
        assert requests.get(urls[2] + "/v2/", auth=robot, timeout=60).status_code == 401
        r = requests.get(urls[1] + "/auth/token", auth=robot, timeout=60,
                         params={"service": SERVICE, "scope": "repository:ci/app:pull"})
        assert r.status_code == 401
