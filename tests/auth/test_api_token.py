"""Docker token authentication: the built-in token service and token checks."""

from __future__ import annotations

import base64
import datetime as dt
import json

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ociregistry.auth.htpasswd import Htpasswd
from ociregistry.auth.tokens import libtrust_key_id
from tests.auth.conftest import blob
from tests.auth.support import basic, bearer, claims, forge, issue_certificate

SERVICE = "test-registry"


def get_token(c, user: str | None, *scopes: str, **params: str) -> dict:
    r = c.get("/auth/token", query_string={"service": SERVICE, "scope": list(scopes), **params},
              headers=basic(user) if user else {})
    assert r.status_code == 200, r.get_data()
    return r.get_json()


def token(c, user: str | None, *scopes: str) -> str:
    return get_token(c, user, *scopes)["token"]


def access_of(tok: str) -> list:
    return jwt.decode(tok, options={"verify_signature": False})["access"]


def codes(response) -> list[str]:
    return [e["code"] for e in response.get_json()["errors"]]


def test_challenge_names_realm_service_and_scope(token_registry):
    c = token_registry
    r = c.get("/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="http://localhost/auth/token",service="{SERVICE}"')
    r = c.post("/v2/team-a/app/blobs/uploads/")
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="http://localhost/auth/token",service="{SERVICE}",'
        'scope="repository:team-a/app:pull,push"')
    # Basic credentials go to the token service, not to the registry
    assert c.get("/v2/", headers=basic("alice")).status_code == 401


def test_token_response_and_claims(token_registry):
    c = token_registry
    body = get_token(c, "alice", "repository:team-a/app:pull,push")
    assert body["token"] == body["access_token"]
    assert body["expires_in"] >= 60
    assert body["issued_at"].endswith("Z")
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256" and header["kid"] and header["typ"] == "JWT"
    payload = jwt.decode(body["token"], options={"verify_signature": False})
    assert payload["iss"] == "test-issuer" and payload["aud"] == SERVICE
    assert payload["sub"] == "alice"
    assert payload["exp"] - payload["iat"] == body["expires_in"]
    assert {"nbf", "jti"} <= set(payload)
    assert payload["access"] == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]
    assert c.get("/v2/", headers=bearer(body["token"])).status_code == 200


def test_partial_grants_and_anonymous_tokens(token_registry):
    c = token_registry
    assert access_of(token(c, "bob", "repository:team-a/app:pull,push")) == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull"]}]
    assert access_of(token(c, "carol", "repository:team-a/app:pull,push")) == []
    anonymous = get_token(c, None, "repository:public/x:pull,push", "repository:team-a/x:pull")
    assert access_of(anonymous["token"]) == [
        {"type": "repository", "name": "public/x", "actions": ["pull"]}]
    assert jwt.decode(anonymous["token"], options={"verify_signature": False})["sub"] == ""


def test_token_service_refuses_bad_requests(token_registry):
    c = token_registry
    r = c.get("/auth/token", query_string={"service": SERVICE}, headers=basic("alice", "x"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    r = c.get("/auth/token", query_string={"service": "another-registry"},
              headers=basic("alice"))
    assert r.status_code == 400
    r = c.get("/auth/token", query_string={"service": SERVICE, "account": "bob"},
              headers=basic("alice"))
    assert r.status_code == 400
    r = c.get("/auth/token", headers={"Authorization": "Bearer x"})
    assert r.status_code == 401


def test_push_and_pull_with_tokens(token_registry):
    c = token_registry
    tok = token(c, "alice", "repository:team-a/app:pull,push")
    data, digest = blob()
    r = c.post(f"/v2/team-a/app/blobs/uploads/?digest={digest}", data=data, headers=bearer(tok))
    assert r.status_code == 201
    assert c.get(f"/v2/team-a/app/blobs/{digest}", headers=bearer(tok)).data == data
    bob = token(c, "bob", "repository:team-a/app:pull")
    assert c.get(f"/v2/team-a/app/blobs/{digest}", headers=bearer(bob)).data == data


def test_scope_escalation(token_registry):
    c = token_registry
    pull_only = token(c, "alice", "repository:team-a/app:pull")
    # alice could get push: told to come back with a better token
    r = c.post("/v2/team-a/app/blobs/uploads/", headers=bearer(pull_only))
    assert r.status_code == 401
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert 'scope="repository:team-a/app:pull,push"' in r.headers["WWW-Authenticate"]
    # bob never could: denied outright
    bob = token(c, "bob", "repository:team-a/app:pull,push")
    r = c.post("/v2/team-a/app/blobs/uploads/", headers=bearer(bob))
    assert r.status_code == 403 and codes(r) == ["DENIED"]
    # a token for one repository says nothing about another
    r = c.get("/v2/team-a/other/tags/list", headers=bearer(pull_only))
    assert r.status_code == 401
    # nor about a name that merely starts the same
    r = c.get("/v2/team-a/app2/tags/list", headers=bearer(pull_only))
    assert r.status_code == 401
    # anonymous tokens get challenged (they might log in)
    anonymous = token(c, None, "repository:team-a/app:pull")
    assert c.get("/v2/team-a/app/tags/list", headers=bearer(anonymous)).status_code == 401


def test_catalog_and_gc_scopes(token_registry):
    c = token_registry
    data, digest = blob()
    for repo, who in (("team-a/app", "alice"), ("users/bob/x", "bob")):
        tok = token(c, who, f"repository:{repo}:push")
        c.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data, headers=bearer(tok))
    no_catalog = token(c, "alice", "repository:team-a/app:pull")
    r = c.get("/v2/_catalog", headers=bearer(no_catalog))
    assert r.status_code == 401
    assert 'scope="registry:catalog:*"' in r.headers["WWW-Authenticate"]
    r = c.get("/v2/_catalog", headers=bearer(token(c, "alice", "registry:catalog:*")))
    assert r.status_code == 200
    assert r.get_json() == {"repositories": []}  # blobs only: no manifests yet

    r = c.post("/v2/gc?dry_run=true", headers=bearer(token(c, "alice", "registry:admin:*")))
    assert r.status_code == 403
    r = c.post("/v2/gc?dry_run=true", headers=bearer(token(c, "root", "registry:admin:*")))
    assert r.status_code == 200, r.get_data()
    r = c.post("/v2/gc?dry_run=true", headers=bearer(token(c, "root", "registry:catalog:*")))
    assert r.status_code == 401 and 'scope="registry:admin:*"' in r.headers["WWW-Authenticate"]


# -- tokens that must not be trusted ----------------------------------------------------
def own_key(c):
    return c.auth.issuer.private_key, c.auth.issuer.kid


ACCESS = [{"type": "repository", "name": "team-a/app", "actions": ["pull", "push", "delete"]}]


def test_a_forged_token_of_our_own_making_is_accepted(token_registry):
    """The control for the negative cases below: the forger has the right key here."""
    key, kid = own_key(token_registry)
    tok = forge(claims("alice", ACCESS), key, headers={"kid": kid})
    assert token_registry.get("/v2/team-a/app/tags/list", headers=bearer(tok)).status_code == 404


def _rejected(c, tok: str) -> None:
    r = c.get("/v2/team-a/app/tags/list", headers=bearer(tok))
    assert r.status_code == 401, r.get_data()
    assert codes(r) == ["UNAUTHORIZED"]
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_expired_and_not_yet_valid_tokens(token_registry):
    key, kid = own_key(token_registry)
    _rejected(token_registry, forge(claims("alice", ACCESS, lifetime=-3600), key,
                                    headers={"kid": kid}))
    future = claims("alice", ACCESS, lifetime=7200)
    future["nbf"] = future["iat"] = future["iat"] + 3600
    _rejected(token_registry, forge(future, key, headers={"kid": kid}))
    no_exp = claims("alice", ACCESS)
    del no_exp["exp"]
    _rejected(token_registry, forge(no_exp, key, headers={"kid": kid}))


def test_tokens_for_another_service_or_from_another_issuer(token_registry):
    key, kid = own_key(token_registry)
    _rejected(token_registry, forge(claims("alice", ACCESS, aud="other-registry"), key,
                                    headers={"kid": kid}))
    _rejected(token_registry, forge(claims("alice", ACCESS, iss="evil"), key,
                                    headers={"kid": kid}))
    no_aud = claims("alice", ACCESS)
    del no_aud["aud"]
    _rejected(token_registry, forge(no_aud, key, headers={"kid": kid}))


def test_token_signed_by_another_key(token_registry):
    _, kid = own_key(token_registry)
    other = ec.generate_private_key(ec.SECP256R1())
    _rejected(token_registry, forge(claims("alice", ACCESS), other, headers={"kid": kid}))
    _rejected(token_registry, forge(claims("alice", ACCESS), other,
                                    headers={"kid": libtrust_key_id(other.public_key())}))
    # an embedded key is no credential
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(other.public_key()))
    _rejected(token_registry, forge(claims("alice", ACCESS), other, headers={"jwk": jwk}))


def test_alg_none_and_hmac_confusion(token_registry):
    key, kid = own_key(token_registry)
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "none", "typ": "JWT", "kid": kid}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(
        claims("alice", ACCESS)).encode()).rstrip(b"=").decode()
    _rejected(token_registry, f"{header}.{body}.")
    _rejected(token_registry, f"{header}.{body}")
    # HS256 with the public key as the shared secret
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac

    signing_input = (
        base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": kid}).encode())
        .rstrip(b"=") + b"." + body.encode())
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    _rejected(token_registry, (signing_input + b"." + base64.urlsafe_b64encode(mac)
                               .rstrip(b"=")).decode())


def test_tampered_token(token_registry):
    c = token_registry
    tok = token(c, "bob", "repository:team-a/app:pull")
    head, body, sig = tok.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["access"][0]["actions"] = ["pull", "push"]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    _rejected(c, f"{head}.{forged}.{sig}")


@pytest.mark.parametrize("garbage", [
    "", "x", "a.b.c", "eyJ.eyJ.", "Bearer", "." * 3000, "e" * 20000,
    base64.urlsafe_b64encode(b'{"alg":"ES256","kid":[1]}').decode() + ".e30.",
])
def test_garbage_tokens(token_registry, garbage):
    r = token_registry.get("/v2/", headers={"Authorization": f"Bearer {garbage}"})
    assert r.status_code == 401


def test_malformed_access_claims(token_registry):
    key, kid = own_key(token_registry)
    for access in ("all", [1], [{"type": "repository"}], {"type": "repository"},
                   [{"type": "repository", "name": "team-a/app", "actions": "push"}]):
        _rejected(token_registry, forge(claims("alice", access), key, headers={"kid": kid}))


# -- refresh tokens and the OAuth2 form -----------------------------------------------
def test_offline_token_and_oauth_refresh(token_registry):
    c = token_registry
    body = get_token(c, "alice", "repository:team-a/app:pull", offline_token="true")
    refresh = body["refresh_token"]
    r = c.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                    "service": SERVICE, "client_id": "docker",
                                    "scope": "repository:team-a/app:pull,push repository:x:pull"})
    assert r.status_code == 200, r.get_data()
    assert access_of(r.get_json()["access_token"]) == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]
    # a refresh token is not an access token, and the other way round
    _rejected(c, refresh)
    r = c.post("/auth/token", data={"grant_type": "refresh_token", "client_id": "docker",
                                    "refresh_token": body["token"]})
    assert r.status_code == 401
    # a password change revokes it
    Htpasswd(c.auth.htpasswd.path).set_password("alice", "new-password", cost=4)
    c.auth.htpasswd.reload()
    r = c.post("/auth/token", data={"grant_type": "refresh_token", "client_id": "docker",
                                    "refresh_token": refresh})
    assert r.status_code == 401


def test_oauth_password_grant(token_registry):
    c = token_registry
    form = {"grant_type": "password", "username": "alice", "password": "alice-secret",
            "client_id": "podman", "service": SERVICE, "access_type": "offline",
            "scope": "repository:team-a/app:pull"}
    r = c.post("/auth/token", data=form)
    assert r.status_code == 200 and "refresh_token" in r.get_json()
    assert c.post("/auth/token", data={**form, "password": "x"}).status_code == 401
    assert c.post("/auth/token", data={**form, "client_id": ""}).status_code == 400
    assert c.post("/auth/token", data={**form, "grant_type": "implicit"}).status_code == 400
    assert c.post("/auth/token", data={**form, "service": "other"}).status_code == 400


def test_no_token_service_without_builtin_tokens(basic_registry):
    assert basic_registry.get("/auth/token").status_code == 404
    assert basic_registry.get("/auth/jwks.json").status_code == 404


def test_jwks_publishes_the_public_key(token_registry):
    c = token_registry
    keys = c.get("/auth/jwks.json").get_json()["keys"]
    assert keys[0]["kid"] == c.auth.issuer.kid and "d" not in keys[0]


# -- an external token issuer ------------------------------------------------------------
def test_external_issuer_with_jwks(make_registry, tmp_path):
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signer.public_key()))
    jwk["kid"] = "key-1"
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    c = make_registry("basic", auth={"token": {
        "realm": "https://auth.example/token", "service": SERVICE, "issuer": "auth.example",
        "jwks": str(tmp_path / "jwks.json"), "signing_algorithms": ["RS256"]}})
    r = c.get("/v2/")
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="https://auth.example/token",service="{SERVICE}"')
    good = claims("alice", ACCESS, iss="auth.example")
    tok = forge(good, signer, "RS256", headers={"kid": "key-1"})
    assert c.get("/v2/team-a/app/tags/list", headers=bearer(tok)).status_code == 404
    assert c.get("/v2/team-b/app/tags/list", headers=bearer(tok)).status_code == 401
    for bad in (
        forge(good, signer, "RS256", headers={"kid": "key-2"}),
        forge(good, signer, "RS256"),  # no kid
        forge(good, signer, "PS256", headers={"kid": "key-1"}),  # not in signing_algorithms
        forge(claims("alice", ACCESS), signer, "RS256", headers={"kid": "key-1"}),  # issuer
    ):
        r = c.get("/v2/team-a/app/tags/list", headers=bearer(bad))
        assert r.status_code == 401
    # the built-in service is not there
    assert c.get("/auth/token").status_code == 404


def test_external_issuer_with_a_certificate_bundle(make_registry, tmp_path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue_certificate(ca_key, None, "token CA", ca_key, ca=True)  # type: ignore[arg-type]
    signer = ec.generate_private_key(ec.SECP256R1())
    leaf = issue_certificate(ca_key, ca, "token signer", signer)
    (tmp_path / "bundle.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    c = make_registry("basic", auth={"token": {
        "realm": "https://auth.example/token", "service": SERVICE, "issuer": "auth.example",
        "rootcertbundle": str(tmp_path / "bundle.pem")}})
    good = claims("alice", ACCESS, iss="auth.example")

    def x5c(*certs: x509.Certificate) -> list[str]:
        return [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
                for cert in certs]

    ok = forge(good, signer, headers={"x5c": x5c(leaf, ca)})
    assert c.get("/v2/team-a/app/tags/list", headers=bearer(ok)).status_code == 404
    # the CA's own key, named by its libtrust key id (Distribution's way)
    by_kid = forge(good, ca_key, headers={"kid": libtrust_key_id(ca_key.public_key())})
    assert c.get("/v2/team-a/app/tags/list", headers=bearer(by_kid)).status_code == 404

    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue_ca = issue_certificate(rogue_key, None, "token CA", rogue_key, ca=True)  # type: ignore[arg-type]
    rogue_leaf = issue_certificate(rogue_key, rogue_ca, "token signer", signer)
    expired = x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(ca.subject) \
        .public_key(signer.public_key()).serial_number(7) \
        .not_valid_before(dt.datetime(2000, 1, 1)).not_valid_after(dt.datetime(2001, 1, 1)) \
        .sign(ca_key, __import__("cryptography.hazmat.primitives.hashes",
                                 fromlist=["SHA256"]).SHA256())
    other_signer = ec.generate_private_key(ec.SECP256R1())
    for bad in (
        forge(good, signer, headers={"x5c": x5c(rogue_leaf, rogue_ca)}),  # same names
        forge(good, signer, headers={"x5c": x5c(expired, ca)}),
        forge(good, other_signer, headers={"x5c": x5c(leaf, ca)}),  # not the leaf's key
        forge(good, signer, headers={"x5c": ["not base64!"]}),
        forge(good, signer, headers={"x5c": "MIIB"}),
    ):
        r = c.get("/v2/team-a/app/tags/list", headers=bearer(bad))
        assert r.status_code == 401, r.get_data()


# -- behind a reverse proxy --------------------------------------------------------------
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example",
             "X-Forwarded-For": "198.51.100.7"}


def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted(token_registry):
    r = token_registry.get("/v2/", headers=FORWARDED)
    assert 'realm="http://localhost/auth/token"' in r.headers["WWW-Authenticate"]


def test_forwarded_headers_from_a_trusted_proxy(make_registry):
    c = make_registry("token", http={"trusted_proxies": ["127.0.0.0/8"]},
                      rate_limit={"per_address": 0.001, "burst": 1})
    r = c.get("/v2/", headers=FORWARDED)
    assert 'realm="https://registry.example/auth/token"' in r.headers["WWW-Authenticate"]
    # the client address behind the proxy is the one rate limiting counts
    r = c.get("/v2/", headers={**FORWARDED, "X-Forwarded-For": "198.51.100.8"})
    assert r.status_code == 401
    assert c.get("/v2/", headers=FORWARDED).status_code == 429
    # another peer sending the same headers is not believed
    r = c.get("/v2/", headers={**FORWARDED, "X-Forwarded-For": "198.51.100.9"},
              environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert 'realm="http://localhost/auth/token"' in r.headers["WWW-Authenticate"]
