"""Docker registry tokens (JWT): scopes, the built-in issuer, and verification.

No Flask here. The token format is Distribution's: claims ``iss``, ``sub``,
``aud`` (the service), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access``, a
list of ``{"type", "name", "actions"}``. The header carries ``kid``.

Verification trusts only keys it was configured with: the built-in issuer's
own key, the keys of a JWKS file, or the certificates of a bundle (by key id,
or by an ``x5c`` chain that leads to one of them: see ``auth/x5c.py``). ``alg`` must be one of the
configured asymmetric algorithms and fit the key: ``none`` and the HMAC
algorithms are never accepted, so a public key can't be used as a shared
secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ociregistry.lazy_import import lazy_module

# Imported on first use: a registry without token auth never loads PyJWT and
# cryptography (about 9 MiB in every server process).
jwt = lazy_module("jwt")
x509 = lazy_module("cryptography.x509")
serialization = lazy_module("cryptography.hazmat.primitives.serialization")
ec = lazy_module("cryptography.hazmat.primitives.asymmetric.ec")
ed448 = lazy_module("cryptography.hazmat.primitives.asymmetric.ed448")
ed25519 = lazy_module("cryptography.hazmat.primitives.asymmetric.ed25519")
rsa = lazy_module("cryptography.hazmat.primitives.asymmetric.rsa")
_x5c = lazy_module("ociregistry.auth.x5c")  # the name x5c is a header field below

ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
ISSUED_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_LENGTH = 16384
REFRESH_SUFFIX = "#refresh"
# Extended key usages a token-signing certificate may name (one with none is accepted too).
DEFAULT_SIGNER_EKUS = ("codeSigning", "anyExtendedKeyUsage")


class InvalidToken(Exception):
    """A token that must not be trusted; the message says why (never the token)."""


# -- scopes ---------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


_TYPE_RE = re.compile(r"^([a-z0-9]+)(?:\([a-z0-9]+\))?$")
_ACTION_RE = re.compile(r"^(?:[a-z]+|\*)$")


def parse_scope(item: str) -> Scope | None:
    """``type[(class)]:name:action[,action]``; None when malformed.

    The name may hold ``host:port/`` so it is everything between the first and
    the last colon. The resource class is ignored, as Distribution does.
    """
    kind, sep, rest = item.partition(":")
    match = _TYPE_RE.fullmatch(kind)
    if not sep or not match:
        return None
    name, sep, actions = rest.rpartition(":")
    if not sep or not name:
        return None
    parsed = tuple(dict.fromkeys(a for a in actions.split(",") if a))
    if not parsed or not all(_ACTION_RE.fullmatch(a) for a in parsed):
        return None
    return Scope(match[1], name, parsed)


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Scopes from repeated ``scope`` parameters, each a space-separated list."""
    scopes = []
    for value in values:
        for item in value.split():
            scope = parse_scope(item)
            if scope is not None:
                scopes.append(scope)
    return scopes[:100]


# -- keys -------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: Any) -> str:
    """The key id Docker's libtrust (and so Distribution) computes for a key."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def public_jwk(public_key: Any) -> dict[str, Any]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public_key))
    raise InvalidToken("unsupported key type")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of a public JWK."""
    required = {
        "RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"),
    }
    members = required.get(jwk.get("kty", ""))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise InvalidToken("unsupported JWK")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def key_fits_algorithm(key: Any, algorithm: str) -> bool:
    if algorithm[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey)
    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    curves = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
    if algorithm in curves:
        return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and (
            key.curve.name == curves[algorithm]
        )
    return False


def generate_key(algorithm: str) -> Any:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"the built-in token service signs with RS256 or ES256, not {algorithm}")


def load_or_create_key(path: str, algorithm: str) -> Any:
    """The signing key at ``path``; generated (once, race-free) when missing."""
    if not os.path.exists(path):
        key = generate_key(algorithm)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".key.", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # fails if another worker won the race: use theirs
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    with open(path, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    if not key_fits_algorithm(key, algorithm):
        raise ValueError(f"the key in {path} does not fit the algorithm {algorithm}")
    return key


def load_certificates(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificates(handle.read())


def load_jwks(path: str) -> dict[str, Any]:
    """kid -> public key, from a JWKS file (``{"keys": [...]}``)."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    keys: dict[str, Any] = {}
    for entry in document.get("keys", []):
        key = jwt.PyJWK(entry).key
        if hasattr(key, "public_key") and not isinstance(
            key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey
        ):
            key = key.public_key()
        kid = entry.get("kid") or jwk_thumbprint(public_jwk(key))
        keys[kid] = key
    return keys


# -- tokens we verify ---------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedToken:
    subject: str  # "" for an anonymous token
    issuer: str
    access: frozenset[tuple[str, str, str]]  # (type, name, action)
    robot: str | None = None  # the robot token id a token was issued for (claim ``rbt``)

    def allows(self, kind: str, name: str, action: str) -> bool:
        return (kind, name, action) in self.access or (kind, name, "*") in self.access


def _now() -> datetime:
    return datetime.now(UTC)


class TokenVerifier:
    def __init__(
        self,
        issuer: str,
        service: str,
        keys: dict[str, Any] | None = None,
        certificates: list[x509.Certificate] | None = None,
        algorithms: Iterable[str] = ASYMMETRIC_ALGORITHMS,
        leeway: float = 30,
        x5c_extended_key_usages: Iterable[str] = DEFAULT_SIGNER_EKUS,
        x5c_max_intermediates: int = 3,
    ) -> None:
        self.issuer = issuer
        self.service = service
        self.algorithms = tuple(a for a in algorithms if a in ASYMMETRIC_ALGORITHMS)
        self.leeway = leeway
        self.keys: dict[str, Any] = dict(keys or {})
        self.certificates = list(certificates or [])
        self._chains = _x5c.ChainValidator(
            self.certificates, x5c_extended_key_usages, x5c_max_intermediates
        ) if self.certificates else None
        self._key_certs: dict[str, x509.Certificate] = {}
        for cert in self.certificates:
            public = cert.public_key()
            kids = [libtrust_key_id(public)]
            try:
                kids.append(jwk_thumbprint(public_jwk(public)))
            except InvalidToken:
                pass
            for kid in kids:
                if kid not in self.keys:
                    self.keys[kid] = public
                    self._key_certs[kid] = cert
        self._fingerprints = {}
        for kid, key in self.keys.items():
            try:
                self._fingerprints[jwk_thumbprint(public_jwk(key))] = kid
            except InvalidToken:
                pass

    def _bundle_key(self, kid: str) -> Any:
        """A configured key by id; a bundle certificate's key only within its dates."""
        cert = self._key_certs.get(kid)
        if cert is not None and not (
            cert.not_valid_before_utc <= _now() <= cert.not_valid_after_utc
        ):
            raise InvalidToken("certificate outside its validity period")
        return self.keys[kid]

    def _key_from_chain(self, x5c: Any) -> Any:
        if self._chains is None:
            raise InvalidToken("untrusted certificate chain")
        try:
            return self._chains.signing_key(x5c, _now())
        except _x5c.UntrustedChain as exc:
            raise InvalidToken(f"untrusted certificate chain: {exc}") from exc

    def _key_for(self, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self.keys:
            return self._bundle_key(kid)
        if "x5c" in header:
            return self._key_from_chain(header["x5c"])
        jwk = header.get("jwk")
        if isinstance(jwk, dict):
            # An embedded key is trusted only when it is one of ours.
            kid = self._fingerprints.get(jwk_thumbprint(jwk))
            if kid is not None:
                return self._bundle_key(kid)
        raise InvalidToken("token signed by an unknown key")

    def verify(self, token: str) -> VerifiedToken:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise InvalidToken("signing algorithm not accepted")
        key = self._key_for(header)
        if not key_fits_algorithm(key, algorithm):
            raise InvalidToken("signing algorithm does not fit the key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.service,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"], "verify_sub": False,
                         "verify_jti": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("token not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("token is for another service") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("token from an untrusted issuer") from exc
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidToken("invalid token") from exc
        subject = claims.get("sub", "")
        if not isinstance(subject, str):
            raise InvalidToken("invalid subject")
        robot = claims.get("rbt")
        if robot is not None and not isinstance(robot, str):
            raise InvalidToken("invalid robot claim")
        return VerifiedToken(subject, self.issuer, _parse_access(claims.get("access", [])), robot)


def _parse_access(raw: Any) -> frozenset[tuple[str, str, str]]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise InvalidToken("invalid access claim")
    out = set()
    for entry in raw[:1000]:
        if not isinstance(entry, dict):
            raise InvalidToken("invalid access claim")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions", [])
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise InvalidToken("invalid access claim")
        for action in actions:
            if isinstance(action, str):
                out.add((kind, name, action))
    return frozenset(out)


# -- the built-in issuer ----------------------------------------------------------
@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: str


class TokenIssuer:
    def __init__(
        self,
        private_key: Any,
        algorithm: str,
        issuer: str,
        service: str,
        expiration: int = 300,
        refresh_expiration: int = 7 * 86400,
    ) -> None:
        if not key_fits_algorithm(private_key, algorithm):
            raise ValueError(f"the signing key does not fit {algorithm}")
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.algorithm = algorithm
        self.kid = libtrust_key_id(self.public_key)
        self.issuer = issuer
        self.service = service
        self.expiration = max(60, int(expiration))  # the spec: never less than 60 s
        self.refresh_expiration = max(60, int(refresh_expiration))

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.algorithm,
            headers={"kid": self.kid, "typ": "JWT"},
        )

    def issue(self, subject: str, access: list[dict[str, Any]],
              extra: dict[str, Any] | None = None) -> IssuedToken:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expiration,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
            **(extra or {}),
        }
        issued_at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return IssuedToken(self._sign(claims), self.expiration, issued_at)

    def issue_refresh(self, subject: str, fingerprint: str) -> str:
        """A long-lived token that only the token endpoint accepts (its own audience).

        It is bound to the user's current password hash: changing the password
        or removing the user revokes it.
        """
        now = int(time.time())
        return self._sign({
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service + REFRESH_SUFFIX,
            "exp": now + self.refresh_expiration,
            "iat": now,
            "jti": secrets.token_hex(16),
            "pwh": fingerprint,
        })

    def check_refresh(self, token: str) -> tuple[str, str]:
        """(subject, password fingerprint) of a refresh token we issued."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed refresh token")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != self.algorithm or header.get("kid") != self.kid:
                raise InvalidToken("refresh token signed by an unknown key")
            claims = jwt.decode(
                token, self.public_key, algorithms=[self.algorithm],
                audience=self.service + REFRESH_SUFFIX, issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidToken("invalid refresh token") from exc
        subject, fingerprint = claims.get("sub"), claims.get("pwh")
        if not isinstance(subject, str) or not subject or not isinstance(fingerprint, str):
            raise InvalidToken("invalid refresh token")
        return subject, fingerprint

    def jwks(self) -> dict[str, Any]:
        jwk = public_jwk(self.public_key)
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return {"keys": [jwk]}

    def verifier(self, leeway: float = 30) -> TokenVerifier:
        return TokenVerifier(
            self.issuer, self.service, {self.kid: self.public_key},
            algorithms=[self.algorithm], leeway=leeway,
        )
