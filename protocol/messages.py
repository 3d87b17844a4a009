"""Signalling protocol, version 1: JSON text frames over one WebSocket per leg.

Client to relay::

    {"v": 1, "type": "join", "token": "<join token>", "sdp": "<offer, ICE gathered>"}
    {"v": 1, "type": "leave"}
    {"v": 1, "type": "ping", "id": 7}
    {"v": 1, "type": "ice", "token": "<join token>"}   (before join: which ICE servers to use)

Relay to client::

    {"v": 1, "type": "joined", "role": "family", "call": {...}, "sdp": "<answer>"}
    {"v": 1, "type": "state", "state": "live", "reason": "...", "call": {...}}
    {"v": 1, "type": "warning", "seconds_left": 60}
    {"v": 1, "type": "error", "code": "bad_sdp", "message": "..."}
    {"v": 1, "type": "pong", "id": 7}
    {"v": 1, "type": "ice_servers", "ice_servers": [{"urls": [...], "username": "...",
     "credential": "..."}], "ice_transport_policy": "all"}
    {"v": 1, "type": "quality", "grade": "poor", "loss_down": 0.12, ...}   (this leg's own link)
    {"v": 1, "type": "moved", "url": "https://node2.example.org"}
        (many nodes: another node runs this call; the socket closes, and the client joins
        again at ``url`` + ``/ws`` with the same token. Its next rejoin after a drop starts
        from the address it first used, since the node it was sent to may be the one gone.)
    {"v": 1, "type": "identity_check", "role": "family", "status": "checking",
     "finding": "come_closer", "checks": 3, "failures": 2, "alerted": false}
        (this leg's own check before the call: guidance; the other side sees only the
         pause reason "identity_check:<role>")

A client gathers ICE before it offers, so it asks for its TURN servers (``ice``) first, on
the same socket; the ``joined`` answer repeats them (for a rejoin).

Offers carry one audio and one video transceiver (sendrecv) for a leg. A watcher's offer
carries two of each (recvonly): the first pair is the family side, the second the prison side.
Every message is validated on arrival; a bad one gets an ``error`` with a stable code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from protocol import jsonsafe
from protocol.vocabulary import CALL_STATES, MAX_TOKEN_CHARS, ROLES  # noqa: F401 (re-exported)

VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
STATES = CALL_STATES


class ProtocolError(Exception):
    """A message the relay (or client) refuses; ``code`` is stable, ``message`` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# Error codes sent to clients. Stable: clients and tests match on them.
E_TOO_LARGE = "message_too_large"
E_MALFORMED = "malformed_json"
E_NOT_OBJECT = "not_an_object"
E_VERSION = "unsupported_version"
E_UNKNOWN_TYPE = "unknown_type"
E_FIELD = "bad_field"
E_BINARY = "binary_not_supported"
E_BAD_SDP = "bad_sdp"
E_ALREADY_JOINED = "already_joined"
E_NOT_JOINED = "not_joined"
E_LEG_CONNECTED = "leg_already_connected"
E_CALL_ENDED = "call_ended"
E_INTERNAL = "internal_error"
E_RATE_LIMITED = "rate_limited"
E_TOO_DEEP = "json_too_deep"
E_BAD_UNICODE = "bad_unicode"
E_SHUTTING_DOWN = "shutting_down"
E_CLUSTER = "cluster_unavailable"
E_NO_NODE = "no_node_available"
MAX_MOVES = 3
"""Redirects (``moved``) a client follows for one join before it counts as a failed try."""

# field name -> (type, max length or None, required)
_SCHEMA: dict[str, dict[str, tuple[type, int | None, bool]]] = {
    "join": {"token": (str, MAX_TOKEN_CHARS, True), "sdp": (str, MAX_MESSAGE_BYTES, True)},
    "leave": {},
    "ping": {"id": (int, None, False)},
    "ice": {"token": (str, MAX_TOKEN_CHARS, True)},
}


@dataclass(frozen=True)
class ClientMessage:
    type: str
    fields: dict[str, Any]


def parse_client_message(raw: str | bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> ClientMessage:
    """Validate one client frame; raises ProtocolError with a stable code."""
    if isinstance(raw, bytes):
        raise ProtocolError(E_BINARY, "send JSON text frames, not binary")
    if len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError(E_TOO_LARGE, f"messages are limited to {max_bytes} bytes")
    try:
        obj = jsonsafe.parse_json(raw)  # bounded depth, no lone surrogates
    except jsonsafe.BodyError as exc:
        code = E_MALFORMED if exc.code == "bad_json" else exc.code
        raise ProtocolError(code, exc.message.replace("body", "message")) from None
    if not isinstance(obj, dict):
        raise ProtocolError(E_NOT_OBJECT, "a message is a JSON object")
    if obj.get("v", VERSION) != VERSION:
        raise ProtocolError(E_VERSION, f"this relay speaks protocol version {VERSION}")
    mtype = obj.get("type")
    if not isinstance(mtype, str) or mtype not in _SCHEMA:
        raise ProtocolError(E_UNKNOWN_TYPE, f"unknown message type {str(mtype)[:40]!r}")
    fields: dict[str, Any] = {}
    for name, (ftype, max_len, required) in _SCHEMA[mtype].items():
        if name not in obj:
            if required:
                raise ProtocolError(E_FIELD, f"{mtype}: field {name!r} is required")
            continue
        value = obj[name]
        if not isinstance(value, ftype) or isinstance(value, bool):
            raise ProtocolError(E_FIELD, f"{mtype}: field {name!r} must be {ftype.__name__}")
        if max_len is not None and len(value) > max_len:
            raise ProtocolError(E_FIELD, f"{mtype}: field {name!r} is too long")
        fields[name] = value
    return ClientMessage(mtype, fields)


def make(mtype: str, **fields: Any) -> str:
    return json.dumps({"v": VERSION, "type": mtype, **fields}, separators=(",", ":"))


def error(code: str, message: str) -> str:
    return make("error", code=code, message=message)


def parse_server_message(raw: str) -> dict[str, Any]:
    """The client side's reading of a relay frame (the relay is trusted but still checked)."""
    obj = json.loads(raw)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError(E_NOT_OBJECT, "relay sent a frame without a type")
    return obj
