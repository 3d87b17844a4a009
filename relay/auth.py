"""Credentials, the token secret, rate limiting of bad attempts, and the join gate.

Two kinds of secret are hashed differently, on purpose:

* staff passwords are chosen by people: argon2id (argon2-cffi), slow by design;
* visitor access keys, laptop secrets and staff session ids are 32 random bytes we generate:
  a plain SHA-256 is enough to make a leaked database useless (nothing to brute-force), and
  it keeps the per-request check in microseconds: an argon2 hash on every join or kiosk
  request would hand an attacker a cheap way to burn the relay's two cores.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from protocol import tokens
from relay import private

if TYPE_CHECKING:  # pragma: no cover
    from relay.config import Config
    from relay.records.store import Admission, Store

log = logging.getLogger("relay.auth")

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
_DUMMY_HASH = _hasher.hash("not a real password " + secrets.token_hex(8))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (pass None for an unknown user)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def secret_matches(stored_hash: str | None, secret: str) -> bool:
    if stored_hash is None:
        hmac.compare_digest(hash_secret(secret), hash_secret(""))
        return False
    return hmac.compare_digest(stored_hash, hash_secret(secret))


def session_ref_of_hash(session_hash: str) -> str:
    """What a staff watch token carries (as its ``jti``) to name the session that asked for
    it: a hash of the stored session hash, so neither the cookie nor its stored hash ever
    leaves the relay. Admission checks that the session still exists (logout ends it)."""
    return "w" + hashlib.sha256(b"watch-session:" + session_hash.encode()).hexdigest()[:32]


def session_ref(cookie: str) -> str:
    return session_ref_of_hash(hash_secret(cookie))


def load_secret(config: Config) -> bytes:
    """The HMAC key for join tokens: ``config.secret_key``, else ``data_dir/secret.key``
    (generated once, mode 0600; an existing one that others can read is refused)."""
    if config.secret_key:
        return config.secret_key.encode("utf-8")
    path = Path(config.data_dir) / "secret.key"
    if not path.exists():
        private.create_private(path, secrets.token_hex(32).encode("ascii") + b"\n")
    # if another process won the race, its key is the one
    data = private.read_private(path, "the join-token signing key").strip()
    if not data:
        raise ValueError(f"{path} is empty; delete it to have a new key made")
    return data


class BadAttemptLimiter:
    """Counts refused credentials/tokens per remote address over a sliding minute.

    ``blocked(addr)`` is true once ``limit`` failures happened in the last 60 s; while blocked,
    callers answer 429 without checking anything (so guessing stays slow even when a guess
    would have been right)."""

    def __init__(self, limit_per_min: int, clock=time.monotonic, window_s: float = 60.0) -> None:
        self.limit = limit_per_min
        self.window_s = window_s
        self._clock = clock
        self._fails: dict[str, collections.deque[float]] = {}

    def _prune(self, addr: str) -> collections.deque[float] | None:
        q = self._fails.get(addr)
        if q is None:
            return None
        cutoff = self._clock() - self.window_s
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._fails[addr]
            return None
        return q

    def blocked(self, addr: str) -> bool:
        if self.limit <= 0:
            return False
        q = self._prune(addr)
        return q is not None and len(q) >= self.limit

    def failed(self, addr: str) -> None:
        if len(self._fails) > 10_000:  # bound memory under a spray of addresses
            for key in list(self._fails)[:5_000]:
                self._prune(key)
        self._fails.setdefault(addr, collections.deque()).append(self._clock())

    def retry_after(self, addr: str) -> int:
        q = self._prune(addr)
        if not q:
            return 0
        return max(1, int(q[0] + self.window_s - self._clock()) + 1)


class JoinGate:
    """What the signalling server calls when a leg presents a join token.

    ``admit(token, remote, now)`` verifies the token, re-checks the live booking with
    ``Store.admit``, logs refusals (reason code, booking, participant, token fingerprint;
    never the token) and counts them against the remote address. Raises
    ``relay.records.store.AdmissionRefused`` (``code`` "rate_limited" when the address is blocked)."""

    def __init__(self, secret: bytes, store: Store, limiter: BadAttemptLimiter) -> None:
        self.secret = secret
        self.store = store
        self.limiter = limiter

    def admit(self, token: str, remote: str, now: float) -> Admission:
        from relay.records.store import AdmissionRefused

        if self.limiter.blocked(remote):
            log.warning("join refused code=rate_limited remote=%s", remote)
            raise AdmissionRefused("rate_limited", "too many refused attempts; wait a minute")
        try:
            claims = tokens.verify(self.secret, token, now)
        except tokens.TokenError as exc:
            self.limiter.failed(remote)
            log.warning(
                "join refused code=%s remote=%s token_fp=%s",
                exc.code,
                remote,
                tokens.fingerprint(token if isinstance(token, str) else ""),
            )
            raise AdmissionRefused(exc.code, exc.message) from None
        try:
            return self.store.admit(claims, now)  # Store.admit logs its own refusals
        except AdmissionRefused:
            self.limiter.failed(remote)
            raise
