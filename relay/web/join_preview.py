"""What the family call page shows before it joins: who the call is with, when, and when
its waiting room opens, so a page opened too early can say so and open by itself.

The join token is the credential: its signature is checked (not its time window, which is
the point) and the booking must still be on. A bad token counts against the address like
any refused token; nothing about a booking is told to someone without its token.
"""

from __future__ import annotations

from typing import Any

from protocol import tokens
from relay.web import models
from relay.web.api import ApiError, Ctx, Handlers

HANDLERS = Handlers()
handler = HANDLERS

_GONE = {
    "cancelled": "booking_cancelled",
    "declined": "booking_declined",
    "completed": "call_ended",
    "failed": "call_ended",
}


@handler
async def join_preview(ctx: Ctx) -> Any:
    ctx.check_not_blocked()
    try:
        claims = tokens.read(ctx.secret, ctx.args(models.JoinPreviewAsk).token)
    except tokens.TokenError as exc:
        raise ctx.refuse_auth(exc.code, exc.message) from None
    if claims.role != "family":
        raise ctx.refuse_auth("token_malformed", "not a family join link")
    b = ctx.store.booking(claims.booking_id)
    if b is None:
        raise ApiError(404, "booking_not_found", "no such call")
    if b.status in _GONE:
        raise ApiError(409, _GONE[b.status], f"this call is {b.status}")
    if abs(claims.exp - b.ends_at) > 1.0:
        raise ApiError(409, "token_stale", "the call was moved; use the new link you were sent")
    prisoner = ctx.store.prisoner(b.prisoner_id)
    return {
        "booking_id": b.id,
        "call_type": b.call_type,
        "with_name": prisoner["name"] if prisoner is not None else "",
        "starts_at": b.starts_at,
        "ends_at": b.ends_at,
        "opens_at": claims.nbf,
        "now": ctx.now,
    }
