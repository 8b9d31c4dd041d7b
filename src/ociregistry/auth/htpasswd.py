"""Users in an htpasswd file (bcrypt, as ``htpasswd -B`` writes it). No Flask here.

The file is re-read whenever it changes on disk (checked with a stat, at most
once a second), so ``ociregistry user add`` or ``htpasswd -B`` take effect on
a running registry without a restart.

Password checks are bcrypt (constant time by construction); an unknown user is
checked against a dummy hash so that timing does not tell which users exist.
Successful checks are remembered for a short while as an HMAC under a key
that lives only in this process, so a push of many blobs with Basic
credentials does not pay bcrypt on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import bcrypt

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer at a time is then on the operator
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("ociregistry.auth")

USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
RESERVED_USERS = frozenset({"anonymous", "*"})
_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer passwords are refused, not truncated
CACHE_SECONDS = 60.0


class HtpasswdError(ValueError):
    pass


class UserExists(HtpasswdError):
    pass


class NoSuchUser(HtpasswdError):
    pass


def validate_user(name: str) -> str:
    if name in RESERVED_USERS or not USER_RE.fullmatch(name):
        raise HtpasswdError(
            f"invalid user name {name!r}: letters, digits and . _ @ - (not 'anonymous')"
        )
    return name


def hash_password(password: str, cost: int = 12) -> str:
    raw = password.encode()
    if not raw:
        raise HtpasswdError("the password must not be empty")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise HtpasswdError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=cost)).decode()


@dataclass
class _Snapshot:
    key: tuple[int, int, int, int] | None  # (inode, size, mtime_ns, ctime_ns)
    hashes: dict[str, bytes]
    dummy: bytes  # what an unknown user is checked against (see _dummy)


class Htpasswd:
    """A bcrypt htpasswd file, re-read when it changes."""

    def __init__(self, path: str, check_interval: float = 1.0, default_cost: int = 12) -> None:
        self.path = path
        self.check_interval = check_interval
        self.default_cost = default_cost
        self._lock = threading.Lock()
        self._snapshot = _Snapshot(None, {}, b"")
        self._checked_at = float("-inf")
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[str, tuple[bytes, float]] = {}
        self._dummies: dict[int, bytes] = {}

    # -- reading ----------------------------------------------------------
    def _stat_key(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _hashes(self) -> dict[str, bytes]:
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at < self.check_interval:
                return self._snapshot.hashes
            self._checked_at = now
            key = self._stat_key()
            if key != self._snapshot.key or not self._snapshot.dummy:
                hashes = self._read() if key else {}
                # The dummy is made here, on whatever request reads the file,
                # never on the first unknown user (who would pay twice).
                self._snapshot = _Snapshot(key, hashes, self._dummy(hashes))
                self._verified.clear()
            return self._snapshot.hashes

    def reload(self) -> None:
        with self._lock:
            self._checked_at = float("-inf")

    def _read(self) -> dict[str, bytes]:
        hashes: dict[str, bytes] = {}
        try:
            with open(self.path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            log.error("cannot read htpasswd file %s: %s", self.path, exc)
            return hashes
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            raw = hashed.strip().encode()
            if not sep or not user or not raw.startswith(_BCRYPT_PREFIXES):
                log.warning(
                    "%s line %d: skipped (only bcrypt entries, htpasswd -B, are accepted)",
                    self.path, number,
                )
                continue
            hashes[user] = raw
        return hashes

    def users(self) -> list[str]:
        return sorted(self._hashes())

    def __contains__(self, user: str) -> bool:
        return user in self._hashes()

    def fingerprint(self, user: str) -> str | None:
        """A short digest of the user's stored hash: changes when the password does."""
        hashed = self._hashes().get(user)
        if hashed is None:
            return None
        return hashlib.sha256(b"ociregistry-pw:" + hashed).hexdigest()[:32]

    # -- checking ---------------------------------------------------------
    def _dummy(self, hashes: dict[str, bytes]) -> bytes:
        """A hash of nothing at the cost most entries use (ties: the higher one),
        so that checking an unknown user takes as long as checking a known one."""
        costs: dict[int, int] = {}
        for stored in hashes.values():
            try:
                cost = int(stored[4:6])
            except ValueError:
                continue
            costs[cost] = costs.get(cost, 0) + 1
        cost = max(costs, key=lambda c: (costs[c], c)) if costs else self.default_cost
        cost = min(max(cost, 4), 31)
        if cost not in self._dummies:
            self._dummies[cost] = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        return self._dummies[cost]

    def is_verified(self, user: str, password: str) -> bool:
        """True when these credentials were checked right a moment ago (no bcrypt
        needed): such a request is not a guess, failure limits leave it alone."""
        stored = self._hashes().get(user)
        cached = self._verified.get(user)
        if stored is None or cached is None or time.monotonic() - cached[1] >= CACHE_SECONDS:
            return False
        return hmac.compare_digest(cached[0], self._mac(user, password, stored))

    def _mac(self, user: str, password: str, stored: bytes) -> bytes:
        raw = password.encode("utf-8", "surrogateescape")
        return hmac.new(self._cache_key, user.encode("utf-8", "surrogateescape") + b"\0"
                        + raw + b"\0" + stored, hashlib.sha256).digest()

    def verify(self, user: str, password: str) -> bool:
        hashes = self._hashes()
        stored = hashes.get(user)
        raw = password.encode("utf-8", "surrogateescape")
        if stored is None or len(raw) > MAX_PASSWORD_BYTES:
            # Spend what a real check costs, so timing does not tell who exists.
            bcrypt.checkpw(raw[:MAX_PASSWORD_BYTES], self._snapshot.dummy)
            return False
        mac = self._mac(user, password, stored)
        cached = self._verified.get(user)
        now = time.monotonic()
        if cached and now - cached[1] < CACHE_SECONDS and hmac.compare_digest(cached[0], mac):
            return True
        try:
            ok = bcrypt.checkpw(raw, stored)
        except ValueError:
            ok = False
        if ok:
            if len(self._verified) > 10000:
                self._verified.clear()
            self._verified[user] = (mac, now)
        return ok

    # -- writing (the CLI) --------------------------------------------------
    def _write(self, hashes: dict[str, bytes]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".htpasswd.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for user in sorted(hashes):
                    handle.write(f"{user}:{hashes[user].decode()}\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.reload()

    def _current(self) -> dict[str, bytes]:
        return self._read() if os.path.exists(self.path) else {}

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One read-modify-write at a time: the CLI and every worker answering the
        management API may change the file at once; without this, one change is lost."""
        if fcntl is None:
            yield
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        with open(self.path + ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def set_password(self, user: str, password: str, cost: int = 12, create: bool = True,
                     update: bool = True) -> None:
        validate_user(user)
        hashed = hash_password(password, cost).encode()  # bcrypt outside the lock
        with self._exclusive():
            hashes = self._current()
            if user in hashes and not update:
                raise UserExists(f"user {user!r} already exists")
            if user not in hashes and not create:
                raise NoSuchUser(f"no such user {user!r}")
            hashes[user] = hashed
            self._write(hashes)

    def remove(self, user: str) -> None:
        with self._exclusive():
            hashes = self._current()
            if user not in hashes:
                raise NoSuchUser(f"no such user {user!r}")
            del hashes[user]
            self._write(hashes)
