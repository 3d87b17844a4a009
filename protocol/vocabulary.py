"""The wire-level words shared by the relay, its clients and the booking API, defined once.

Each vocabulary is a ``Literal`` (what type checkers and the API models use) and the tuple of
its values (what runtime checks use), the tuple derived from the Literal so the two cannot
drift. Nothing here imports from ``relay``.
"""

from __future__ import annotations

from typing import Literal, get_args

CallType = Literal["social", "legal"]
"""Social calls are recorded; legal calls are never recorded and staff never hear them."""
CALL_TYPES: tuple[str, ...] = get_args(CallType)

Role = Literal["family", "prison", "watcher"]
"""The role a join token grants: one of the two parties, or a staff watcher."""
ROLES: tuple[str, ...] = get_args(Role)

PartyRole = Literal["family", "prison"]
"""The two sides of a call (a watcher is neither)."""
PARTY_ROLES: tuple[str, ...] = get_args(PartyRole)

CallState = Literal["scheduled", "waiting", "live", "paused", "ended"]
CALL_STATES: tuple[str, ...] = get_args(CallState)

MAX_TOKEN_CHARS = 1024
"""The longest join token accepted anywhere (a v1 token is about 250 characters)."""
