"""Staff speak into a call without sound: a short text message both pages show at once.

The message goes through the call's policy engine, the owner that already pushes state to
the pages over signalling (no second channel), and is audited with the call and the staff
member. Staff only reach their own establishment's running calls (``call_control.act``),
on whichever node runs them.
"""

from __future__ import annotations

from typing import Any

from relay.web import models
from relay.web.api import ApiError, Ctx, Handlers
from relay.web.call_control import act

HANDLERS = Handlers()
handler = HANDLERS


@handler
async def staff_call_message(ctx: Ctx) -> Any:
    text = " ".join(ctx.args(models.CallMessage).text.split())
    if not text:
        raise ApiError(400, "invalid_request", "body.text: must not be blank")
    return await act(ctx, "message", {"text": text})
