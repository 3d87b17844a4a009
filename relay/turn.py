"""ICE servers for participants: coturn with time-limited REST credentials (issue 17).

coturn's ``use-auth-secret`` mode shares one secret with the relay: a username is
``<expiry>:<participant>`` and its password ``base64(HMAC-SHA1(secret, username))``, so coturn
checks a credential without asking the relay, and refuses it once ``expiry`` (unix seconds)
has passed. The relay never hands out an expiry later than the slot's end: a credential
cannot outlive the call it was issued for. Nothing here points at a public STUN/TURN server:
with no ``turn_urls`` configured, participants get no ICE servers at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from relay.config import Config

SECRET_FILE = "turn.secret"
"""Under data_dir, mode 0600; scripts/coturn reads the same file for coturn's config."""


def load_turn_secret(config: Config) -> bytes:
    """``config.turn_secret``, else ``data_dir/turn.secret`` (generated once, mode 0600).

    Empty when no TURN URL is configured: nothing is generated for a relay without coturn.
    """
    if config.turn_secret:
        return config.turn_secret.encode("utf-8")
    if not config.turn_urls:
        return b""
    path = Path(config.data_dir) / SECRET_FILE
    try:
        data = path.read_bytes().strip()
        if data:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode("ascii")
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key + b"\n")
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # another process won the race: use theirs
    except FileExistsError:
        key = path.read_bytes().strip()
    finally:
        tmp.unlink(missing_ok=True)
    os.chmod(path, 0o600)
    return key


def rest_credential(secret: bytes, participant: str, expiry: int) -> tuple[str, str]:
    """coturn's REST credential: (``<expiry>:<participant>``, base64 HMAC-SHA1 of it)."""
    username = f"{int(expiry)}:{participant}"
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(
    config: Config, secret: bytes, participant: str, slot_ends_at: float, now: float
) -> list[dict[str, Any]]:
    """The RTCIceServer list for one participant (the WebRTC dictionary's field names)."""
    if not config.turn_urls or not secret:
        return []
    expiry = int(min(slot_ends_at, now + config.turn_credential_ttl_s))
    username, credential = rest_credential(secret, participant, expiry)
    return [{"urls": list(config.turn_urls), "username": username, "credential": credential}]


def ice_config(
    config: Config, secret: bytes, participant: str, slot_ends_at: float, now: float
) -> dict[str, Any]:
    """What a client builds its peer connection from (the ``ice_servers`` message)."""
    return {
        "ice_servers": ice_servers(config, secret, participant, slot_ends_at, now),
        "ice_transport_policy": "relay" if config.ice_relay_only else "all",
    }
