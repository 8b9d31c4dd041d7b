"""Tokens signed through an ``x5c`` certificate chain: only a valid path to the bundle.

Each case is a token an attacker (or a misconfigured issuer) could present to a
registry that trusts an external token service's certificate bundle. The
registry must answer 401 unless the chain is one RFC 5280 path validation
accepts and the signing certificate may sign tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from ociregistry.auth.tokens import libtrust_key_id
from ociregistry.auth.x5c import ChainValidator, UntrustedChain
from tests.auth.support import bearer, claims, forge
from tests.auth.test_fuzz_auth import SETTINGS

SERVICE = "test-registry"
ISSUER = "auth.example"
ADMIN = [{"type": "registry", "name": "catalog", "actions": ["*"]},
         {"type": "registry", "name": "admin", "actions": ["*"]},
         {"type": "repository", "name": "team-a/app", "actions": ["pull", "push", "delete"]}]
NOW = dt.datetime.now(dt.UTC)


@dataclass
class Party:
    """A key and the certificate that binds it to a name."""

    key: Any
    cert: x509.Certificate


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make(subject: str, issuer: Party | None = None, *, ca: bool = False,
         path_length: int | None = None, days: tuple[int, int] = (-1, 30),
         ekus: list[x509.ObjectIdentifier] | None = None,
         digital_signature: bool = True, basic_constraints: bool = True) -> Party:
    """A certificate for a fresh key, signed by ``issuer`` (self-signed without one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            signer_key.public_key()), critical=False)
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    builder = builder.add_extension(x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False),
        critical=True)
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    return Party(key, builder.sign(signer_key, hashes.SHA256()))


def x5c(*parties: Party) -> list[str]:
    return [base64.b64encode(p.cert.public_bytes(serialization.Encoding.DER)).decode()
            for p in parties]


@pytest.fixture
def root() -> Party:
    return make("token root CA", ca=True)


@pytest.fixture
def registry(make_registry, tmp_path: Path, root: Party):
    def start(*bundle: Party, **token: Any):
        path = tmp_path / f"bundle-{len(list(tmp_path.iterdir()))}.pem"
        path.write_bytes(b"".join(p.cert.public_bytes(serialization.Encoding.PEM)
                                  for p in bundle or (root,)))
        return make_registry("basic", auth={"token": {
            "realm": "https://auth.example/token", "service": SERVICE, "issuer": ISSUER,
            "rootcertbundle": str(path), **token}})
    return start


def status(c, signer: Party, chain: list[str] | None = None, **headers: Any) -> int:
    """What the registry answers to an admin's catalog request signed by ``signer``."""
    if chain is not None:
        headers["x5c"] = chain
    token = forge(claims("mallory", ADMIN, iss=ISSUER), signer.key, headers=headers)
    return c.get("/v2/_catalog", headers=bearer(token)).status_code


# -- what must keep working ---------------------------------------------------------
def test_a_signer_issued_by_an_intermediate_ca_is_trusted(registry, root):
    inter = make("issuing CA", root, ca=True, path_length=0)
    signer = make("token signer", inter, ekus=[ExtendedKeyUsageOID.CODE_SIGNING])
    assert status(registry(), signer, x5c(signer, inter)) == 200


def test_a_signer_without_extended_key_usage_directly_under_the_root(registry, root):
    signer = make("token signer", root)
    assert status(registry(), signer, x5c(signer)) == 200
    assert status(registry(), signer, x5c(signer, root)) == 200


def test_the_bundle_certificate_itself_may_sign(registry, root):
    c = registry()
    assert status(c, root, x5c(root)) == 200
    assert status(c, root, kid=libtrust_key_id(root.key.public_key())) == 200


# -- forgeries and misuse -----------------------------------------------------------
def test_an_ordinary_leaf_cannot_act_as_a_ca(registry, root):
    """The forgery of the review: a TLS certificate's key issues a 'signer' for itself."""
    tls_leaf = make("registry.example", root, ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
    forged = make("token signer", tls_leaf)
    assert status(registry(), forged, x5c(forged, tls_leaf)) == 401
    no_constraints = make("legacy leaf", root, basic_constraints=False)
    forged = make("token signer", no_constraints)
    assert status(registry(), forged, x5c(forged, no_constraints)) == 401


def test_an_expired_root_is_not_trusted(registry):
    old_root = make("token root CA", ca=True, days=(-30, -1))
    signer = make("token signer", old_root)
    c = registry(old_root)
    assert status(c, signer, x5c(signer, old_root)) == 401
    assert status(c, old_root, x5c(old_root)) == 401
    assert status(c, old_root, kid=libtrust_key_id(old_root.key.public_key())) == 401


def test_a_root_not_yet_valid_is_not_trusted(registry):
    future_root = make("token root CA", ca=True, days=(2, 30))
    signer = make("token signer", future_root, days=(-1, 30))
    assert status(registry(future_root), signer, x5c(signer, future_root)) == 401


def test_an_expired_intermediate_is_not_trusted(registry, root):
    inter = make("issuing CA", root, ca=True, days=(-30, -1))
    signer = make("token signer", inter)
    assert status(registry(), signer, x5c(signer, inter)) == 401


@pytest.mark.parametrize("eku", [ExtendedKeyUsageOID.SERVER_AUTH,
                                 ExtendedKeyUsageOID.CLIENT_AUTH,
                                 ExtendedKeyUsageOID.EMAIL_PROTECTION])
def test_a_certificate_for_another_purpose_cannot_sign(registry, root, eku):
    signer = make("token signer", root, ekus=[eku])
    assert status(registry(), signer, x5c(signer)) == 401


def test_the_accepted_extended_key_usages_are_configurable(registry, root):
    signer = make("token signer", root, ekus=[ExtendedKeyUsageOID.CLIENT_AUTH])
    c = registry(x5c_extended_key_usages=["clientAuth"])
    assert status(c, signer, x5c(signer)) == 200
    other = make("token signer", root, ekus=[ExtendedKeyUsageOID.CODE_SIGNING])
    assert status(c, other, x5c(other)) == 401


def test_a_signer_whose_key_usage_excludes_signatures(registry, root):
    signer = make("token signer", root, digital_signature=False)
    assert status(registry(), signer, x5c(signer)) == 401


def test_an_intermediate_for_another_purpose_cannot_issue_signers(registry, root):
    inter = make("TLS issuing CA", root, ca=True, ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
    signer = make("token signer", inter)
    assert status(registry(), signer, x5c(signer, inter)) == 401


def test_a_chain_longer_than_allowed(registry, root):
    chain = [root]
    for depth in range(4):
        chain.insert(0, make(f"CA {depth}", chain[0], ca=True))
    signer = make("token signer", chain[0])
    parties = [signer, *chain[:-1]]  # four intermediates
    assert status(registry(), signer, x5c(*parties)) == 401  # default: three
    assert status(registry(x5c_max_intermediates=4), signer, x5c(*parties)) == 200
    assert status(registry(x5c_max_intermediates=0), signer, x5c(signer, parties[1])) == 401


def test_a_path_length_constraint_is_enforced(registry, root):
    first = make("CA 1", root, ca=True, path_length=0)
    second = make("CA 2", first, ca=True)
    signer = make("token signer", second)
    assert status(registry(), signer, x5c(signer, second, first)) == 401


def test_a_self_signed_signer_not_in_the_bundle(registry, root):
    stranger = make("token root CA", ca=True)  # even with the same name as the root
    assert status(registry(), stranger, x5c(stranger)) == 401
    signer = make("token signer", stranger)
    assert status(registry(), signer, x5c(signer, stranger)) == 401


def test_the_chain_must_belong_to_the_signing_key(registry, root):
    signer = make("token signer", root)
    impostor = make("token signer", root)
    assert status(registry(), impostor, x5c(signer)) == 401


@pytest.mark.parametrize("chain", [[], "MIIB", ["not base64!"], [7], ["QUJD"], ["A" * 70000],
                                   ["QUJD"] * 11])
def test_a_malformed_chain_is_refused(registry, root, chain):
    assert status(registry(), root, chain) == 401


# -- property-based: whatever a header carries, the answer is 401, never a crash -------------
def _der(party: Party) -> bytes:
    return party.cert.public_bytes(serialization.Encoding.DER)


@given(data=st.data())
@SETTINGS
def test_any_x5c_value_is_refused_cleanly(data) -> None:
    root = _FUZZ_ROOT
    real = [base64.b64encode(_der(p)).decode() for p in _FUZZ_PARTIES]
    item = st.one_of(
        st.sampled_from(real),
        st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode()),
        # a real certificate with bytes flipped
        st.tuples(st.sampled_from(_FUZZ_PARTIES), st.integers(0, 400), st.integers(1, 255)).map(
            lambda t: base64.b64encode(_flip(_der(t[0]), t[1], t[2])).decode()),
        st.text(max_size=40), st.integers(), st.none(),
    )
    value = data.draw(st.one_of(st.lists(item, max_size=12), item))
    validator = ChainValidator([root.cert], ["codeSigning", "anyExtendedKeyUsage"], 3)
    try:
        key = validator.signing_key(value)
    except UntrustedChain:
        return
    # Accepted only when the chain really is a path from the root to its first certificate.
    assert isinstance(value, list) and value[0] in real
    assert key.public_numbers() in {p.key.public_key().public_numbers()
                                    for p in _FUZZ_PARTIES if p is not _FUZZ_FORGED}


def _flip(der: bytes, at: int, mask: int) -> bytes:
    at %= len(der)
    return der[:at] + bytes([der[at] ^ mask]) + der[at + 1:]


_FUZZ_ROOT = make("fuzz root", ca=True)
_FUZZ_INTER = make("fuzz CA", _FUZZ_ROOT, ca=True)
_FUZZ_SIGNER = make("fuzz signer", _FUZZ_INTER)
_FUZZ_TLS = make("fuzz tls", _FUZZ_ROOT, ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
_FUZZ_FORGED = make("fuzz forged", _FUZZ_TLS)
_FUZZ_PARTIES = [_FUZZ_ROOT, _FUZZ_INTER, _FUZZ_SIGNER, _FUZZ_TLS, _FUZZ_FORGED]


def test_the_settings_know_every_extended_key_usage_name_the_validator_maps():
    from ociregistry.auth.x5c import EKU_NAMES as MAPPED
    from ociregistry.config import EKU_NAMES, TokenSettings

    assert set(EKU_NAMES) == set(MAPPED)
    assert TokenSettings(x5c_extended_key_usages=["1.3.6.1.5.5.7.3.3"])
    with pytest.raises(ValueError, match="unknown extended key usage"):
        TokenSettings(x5c_extended_key_usages=["codesigning"])
