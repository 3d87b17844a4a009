"""Join tokens: compact, HMAC-SHA256 signed, scoped to one booking, one participant, one role.

Wire format (URL-safe, no padding)::

    v1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, "v1." + payload))>

The claims JSON uses short keys (``b`` booking, ``p`` participant, ``r`` role, ``n`` not
before, ``e`` expiry, ``i`` a random token id) so a join link stays short. A token only says
who may knock: the relay re-checks the live booking (cancelled, revoked, rescheduled) with
``Store.admit`` every time a leg joins, so revoking something never waits for expiry.

This module is pure (no I/O, no clock): the caller passes ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
from dataclasses import dataclass, field

from protocol.vocabulary import MAX_TOKEN_CHARS, ROLES

VERSION = "v1"
# role -> the participant kind that may hold it
ROLE_PARTICIPANT = {"family": "visitor", "prison": "laptop", "watcher": "staff"}


@dataclass(frozen=True)
class JoinClaims:
    booking_id: int
    participant: str  # "visitor:<id>" | "laptop:<id>" | "staff:<id>"
    role: str  # "family" | "prison" | "watcher"
    nbf: float  # epoch seconds
    exp: float
    jti: str = field(default="", compare=False)
    """Random token id (filled in by ``issue`` when empty); lets logs tell tokens apart
    without ever printing one."""

    @property
    def participant_kind(self) -> str:
        return self.participant.split(":", 1)[0]

    @property
    def participant_id(self) -> int:
        return int(self.participant.split(":", 1)[1])


class TokenError(Exception):
    """A token that cannot be accepted. ``code`` is stable (clients and tests match on it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if not text or any(c not in _B64_ALPHABET for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _sign(secret: bytes, signing_input: bytes) -> bytes:
    return hmac.new(secret, signing_input, hashlib.sha256).digest()


def check_claims(claims: JoinClaims) -> None:
    """Shape checks shared by ``issue`` and ``verify``; raises TokenError("token_malformed")."""
    if type(claims.booking_id) is not int or claims.booking_id <= 0:
        raise TokenError("token_malformed", "bad booking id")
    if claims.role not in ROLES:
        raise TokenError("token_malformed", "unknown role")
    kind, _, ident = claims.participant.partition(":")
    if kind != ROLE_PARTICIPANT[claims.role] or not ident.isdigit() or not ident.isascii():
        raise TokenError("token_malformed", "participant does not match role")
    for value in (claims.nbf, claims.exp):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise TokenError("token_malformed", "bad validity times")
    if claims.exp <= claims.nbf:
        raise TokenError("token_malformed", "token expires before it starts")


def issue(secret: bytes, claims: JoinClaims) -> str:
    if not secret:
        raise ValueError("empty token secret")
    check_claims(claims)
    body = {
        "b": claims.booking_id,
        "p": claims.participant,
        "r": claims.role,
        "n": claims.nbf,
        "e": claims.exp,
        "i": claims.jti or secrets.token_urlsafe(9),
    }
    payload = _b64e(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{VERSION}.{payload}".encode("ascii")
    return f"{VERSION}.{payload}.{_b64e(_sign(secret, signing_input))}"


def verify(secret: bytes, token: str, now: float) -> JoinClaims:
    """Check format, signature, then validity window; return the claims or raise TokenError."""
    claims = read(secret, token)
    if now < claims.nbf:
        raise TokenError("token_not_yet_valid", "the call's waiting room is not open yet")
    if now >= claims.exp:
        raise TokenError("token_expired", "the call's slot has ended")
    return claims


def read(secret: bytes, token: str) -> JoinClaims:
    """Check format and signature only (not the window): what a page may show about its
    call before the waiting room opens. Raises TokenError."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("token_malformed", "no token or token too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise TokenError("token_malformed", "not a v1 join token")
    _, payload, sig_text = parts
    try:
        sig = _b64d(sig_text)
        raw = _b64d(payload)
    except (ValueError, binascii.Error):
        raise TokenError("token_malformed", "token is not base64url") from None
    expected = _sign(secret, f"{VERSION}.{payload}".encode("ascii"))
    if not hmac.compare_digest(sig, expected):
        raise TokenError("token_bad_signature", "token signature does not match")
    try:
        body = json.loads(raw)
        claims = JoinClaims(
            booking_id=body["b"],
            participant=body["p"],
            role=body["r"],
            nbf=body["n"],
            exp=body["e"],
            jti=str(body.get("i", "")),
        )
        if not isinstance(claims.participant, str) or not isinstance(claims.role, str):
            raise TypeError("bad claim types")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TokenError("token_malformed", "token claims unreadable") from None
    check_claims(claims)
    return claims


def fingerprint(token: str) -> str:
    """A short, non-reversible tag for logs: never log a token itself."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]
