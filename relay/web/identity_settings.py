"""An establishment's identity settings over the API: whether a side with nobody enrolled waits
for staff to admit it (docs/identity.md, "Nobody enrolled").

Staff read their own establishment's setting and admins change it, audited
(``identity_settings_set``); another establishment's is the same 404 as one that does not
exist. The setting travels with each call's admission (``EstablishmentPolicy``), so it applies
from the next call that joins, never to a side already held or admitted.
"""

from __future__ import annotations

from typing import Any

from relay.records.store import Staff
from relay.web import models
from relay.web.api import ApiError, Ctx, Handlers

HANDLERS = Handlers()
handler = HANDLERS


def _own(ctx: Ctx) -> tuple[Staff, int]:
    staff = ctx.staff()
    assert staff is not None
    establishment_id = ctx.path_id("establishment_id")
    if establishment_id != staff.establishment_id:
        raise ApiError(404, "establishment_not_found", "no such establishment")
    return staff, establishment_id


def settings_json(ctx: Ctx, establishment_id: int) -> dict[str, Any]:
    chosen = ctx.store.policy(establishment_id).unenrolled_needs_staff
    default = bool(ctx.config.identity_unenrolled_needs_staff)
    return {
        "establishment_id": establishment_id,
        "unenrolled_needs_staff": default if chosen is None else chosen,
        "set_here": chosen is not None,
        "relay_default": default,
    }


@handler
async def staff_identity_settings(ctx: Ctx) -> Any:
    _staff, establishment_id = _own(ctx)
    return settings_json(ctx, establishment_id)


@handler
async def staff_set_identity_settings(ctx: Ctx) -> Any:
    staff, establishment_id = _own(ctx)
    body = ctx.args(models.IdentitySettingsIn)
    before = settings_json(ctx, establishment_id)
    ctx.store.set_unenrolled_needs_staff(establishment_id, body.unenrolled_needs_staff)
    after = settings_json(ctx, establishment_id)
    ctx.audit(
        "identity_settings_set",
        {
            "unenrolled_needs_staff": body.unenrolled_needs_staff,
            "before": {k: before[k] for k in ("unenrolled_needs_staff", "set_here")},
            "in_force": after["unenrolled_needs_staff"],
        },
        establishment_id,
        f"staff:{staff.id}",
    )
    return after
