from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import tokens
from protocol.tokens import JoinClaims, TokenError, issue, verify

SECRET = b"k" * 32
CLAIMS = JoinClaims(booking_id=7, participant="visitor:3", role="family", nbf=1000.0, exp=2800.0)


def test_round_trip_and_compact():
    tok = issue(SECRET, CLAIMS)
    assert len(tok) < 200 and all(c.isalnum() or c in "-_." for c in tok)
    got = verify(SECRET, tok, 1500.0)
    assert got == CLAIMS and got.participant_id == 3 and got.participant_kind == "visitor"


@pytest.mark.parametrize(
    ("now", "code"), [(999.0, "token_not_yet_valid"), (2800.0, "token_expired"), (9e9, "token_expired")]
)
def test_time_window(now, code):
    with pytest.raises(TokenError) as e:
        verify(SECRET, issue(SECRET, CLAIMS), now)
    assert e.value.code == code


def test_forged_and_tampered():
    tok = issue(SECRET, CLAIMS)
    with pytest.raises(TokenError) as e:
        verify(b"other secret", tok, 1500.0)
    assert e.value.code == "token_bad_signature"
    v, payload, sig = tok.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["b"] = 8  # another booking
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as e:
        verify(SECRET, f"{v}.{forged}.{sig}", 1500.0)
    assert e.value.code == "token_bad_signature"


@pytest.mark.parametrize("bad", ["", "x", "v1.a.b.c", "v2.abc.def", "v1.!!.??", "v1..", "v1." + "a" * 2000])
def test_malformed(bad):
    with pytest.raises(TokenError) as e:
        verify(SECRET, bad, 1500.0)
    assert e.value.code == "token_malformed"


def test_role_must_match_participant():
    with pytest.raises(TokenError):
        issue(SECRET, JoinClaims(1, "visitor:1", "prison", 0, 1))
    with pytest.raises(TokenError):
        issue(SECRET, JoinClaims(1, "staff:x", "watcher", 0, 1))


def test_signed_but_malformed_claims_refused():
    payload = base64.urlsafe_b64encode(b'{"b":"1","p":1}').rstrip(b"=").decode()
    sig = tokens._b64e(tokens._sign(SECRET, f"v1.{payload}".encode()))
    with pytest.raises(TokenError) as e:
        verify(SECRET, f"v1.{payload}.{sig}", 1.0)
    assert e.value.code == "token_malformed"


@given(st.text(max_size=300))
def test_garbage_never_crashes(text):
    with pytest.raises(TokenError):
        verify(SECRET, text, 1500.0)
