"""Which key signed a token whose header carries an ``x5c`` certificate chain.

No Flask here, and no chain logic of our own: the path is built and checked by
``cryptography.x509.verification`` (RFC 5280 path building with the Web PKI
rules for CA certificates). That gives us, for every certificate between the
signing certificate and a certificate of the configured bundle: basicConstraints
``cA`` asserted, keyCertSign when a key usage is given, path length limits, name
chaining with signatures, and validity at the time of the check — the bundle's
own certificate included.

The signing certificate itself is held to a token signer's rules: when it names
a key usage, digitalSignature; when it names extended key usages, one of the
configured ones (so a TLS server or client certificate issued by the same CA
cannot sign tokens). One with no extended key usage is accepted, as the
certificates token services generate with openssl usually have none.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

MAX_CHAIN_CERTIFICATES = 10  # what a header may carry at all, before any parsing

# Names accepted in auth.token.x5c_extended_key_usages (config.EKU_NAMES), besides OIDs.
EKU_NAMES = {
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
}


class UntrustedChain(Exception):
    """The chain is malformed or does not lead to a bundle certificate under the rules."""


def eku_oid(name: str) -> ObjectIdentifier:
    """An extended key usage by its name (``codeSigning``) or dotted OID."""
    if name in EKU_NAMES:
        return EKU_NAMES[name]
    try:
        return ObjectIdentifier(name)
    except ValueError as exc:
        raise ValueError(f"unknown extended key usage {name!r}") from exc


class ChainValidator:
    """Validates ``x5c`` chains against a bundle of trusted certificates."""

    def __init__(self, roots: list[x509.Certificate], allowed_ekus: Iterable[str],
                 max_intermediates: int) -> None:
        self.store = Store(roots) if roots else None
        self._roots = {c.public_bytes(serialization.Encoding.DER): c for c in roots}
        self.allowed_ekus = frozenset(eku_oid(name) for name in allowed_ekus)
        self.max_intermediates = max_intermediates
        self._ee_policy = (
            ExtensionPolicy.permit_all()
            .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _needs_digital_signature)
            .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, self._check_eku)
        )
        # The Web PKI CA rules, except that an intermediate's extended key usages (when
        # it names any) are held to the same list as the signer's, not to clientAuth.
        self._ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, self._check_eku)

    def _check_eku(self, _policy: Any, _cert: x509.Certificate,
                   eku: x509.ExtendedKeyUsage | None) -> None:
        if eku is not None and not self.allowed_ekus.intersection(eku):
            raise ValueError("extended key usage does not allow signing tokens")

    def signing_key(self, x5c: Any, now: datetime | None = None) -> Any:
        """The public key of the chain's first certificate, once the chain is trusted."""
        chain = parse_chain(x5c)
        if self.store is None:
            raise UntrustedChain("no certificate bundle is configured")
        now = now or datetime.now(UTC)
        leaf, intermediates = chain[0], chain[1:]
        root = self._roots.get(leaf.public_bytes(serialization.Encoding.DER))
        if root is not None:
            # A bundle certificate signing directly: trusted as an anchor, within its dates.
            if not root.not_valid_before_utc <= now <= root.not_valid_after_utc:
                raise UntrustedChain("certificate outside its validity period")
            return leaf.public_key()
        verifier = (
            PolicyBuilder()
            .store(self.store)
            .time(now)
            .max_chain_depth(self.max_intermediates)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            raise UntrustedChain(str(exc)) from exc
        return leaf.public_key()


def parse_chain(x5c: Any) -> list[x509.Certificate]:
    """The DER certificates of an ``x5c`` header value (standard base64, leaf first)."""
    if not isinstance(x5c, list) or not 0 < len(x5c) <= MAX_CHAIN_CERTIFICATES:
        raise UntrustedChain("malformed certificate chain")
    chain = []
    for item in x5c:
        if not isinstance(item, str) or len(item) > 65536:
            raise UntrustedChain("malformed certificate chain")
        try:
            chain.append(x509.load_der_x509_certificate(base64.b64decode(item, validate=True)))
        except (ValueError, binascii.Error) as exc:
            raise UntrustedChain("malformed certificate chain") from exc
    return chain


def _needs_digital_signature(_policy: Any, _cert: x509.Certificate,
                             usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.digital_signature:
        raise ValueError("key usage does not allow digital signatures")
