"""Staff administration over the API: names behind ids, visitor search, prisoners.

Everything is limited to the staff member's establishment (another one's records answer
404 like unknown ones). Adding a prisoner and changing eligibility are admin actions and
audited. Revoking a contact stays the lifecycle-backed ``staff_revoke_contact``.
"""

from __future__ import annotations

from typing import Any

from relay.records.store.engine import IntegrityError
from relay.web import visiting_models as vm
from relay.web.api import ApiError, Ctx, Handlers

HANDLERS = Handlers()
handler = HANDLERS


def _prisoner_json(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "number": r["number"],
        "name": r["name"],
        "video_call_eligible": bool(r["video_call_eligible"]),
    }


def _audit(ctx: Ctx, kind: str, detail: dict[str, Any], establishment_id: int, staff_id: int):
    ctx.audit(kind, detail, establishment_id, f"staff:{staff_id}")


@handler
async def staff_directory(ctx: Ctx) -> Any:
    staff = ctx.staff()
    return ctx.store.directory(staff.establishment_id)


@handler
async def staff_search_visitors(ctx: Ctx) -> Any:
    staff = ctx.staff()
    q = ctx.args(vm.VisitorSearchQuery)
    return {"visitors": ctx.store.search_visitors(staff.establishment_id, q.q.strip())}


@handler
async def staff_add_prisoner(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.args(vm.PrisonerIn)
    number, name = b.number.strip().upper(), b.name.strip()
    if not number or not name:
        raise ApiError(400, "invalid_request", "a prisoner needs a number and a name")
    if ctx.store.prisoner_by_number(number) is not None:
        raise ApiError(409, "prisoner_number_taken", f"prisoner number {number} is already used")
    try:
        pid = ctx.store.add_prisoner(staff.establishment_id, number, name, b.video_call_eligible)
    except IntegrityError:  # the same number added at the same moment
        raise ApiError(
            409, "prisoner_number_taken", f"prisoner number {number} is already used"
        ) from None
    _audit(
        ctx,
        "prisoner_added",
        {"prisoner_id": pid, "number": number},
        staff.establishment_id,
        staff.id,
    )
    return _prisoner_json(ctx.store.prisoner(pid))


@handler
async def staff_prisoner_eligibility(ctx: Ctx) -> Any:
    staff = ctx.staff()
    pid = ctx.path_id("prisoner_id")
    prisoner = ctx.store.prisoner(pid)
    if prisoner is None or prisoner["establishment_id"] != staff.establishment_id:
        raise ApiError(404, "prisoner_not_found", "no such prisoner here")
    if prisoner["erased_at"] is not None:  # relay/records/erasure.py
        raise ApiError(409, "already_erased", "this prisoner's record was erased")
    eligible = ctx.args(vm.EligibilityIn).video_call_eligible
    ctx.store.set_prisoner_eligible(pid, eligible)
    _audit(
        ctx,
        "prisoner_eligibility",
        {"prisoner_id": pid, "video_call_eligible": eligible},
        staff.establishment_id,
        staff.id,
    )
    return _prisoner_json(ctx.store.prisoner(pid))
