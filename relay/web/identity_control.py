"""Staff and the check before the call: what each side's check saw, and admitting by hand.

Names behind the gallery keys ("visitor:12", "prisoner:3") are resolved here, for staff only;
the frame goes to admins and never leaves a legal call (docs/identity.md). Every view and
admission is audited with the staff member as actor; the admission itself is the policy's
(relay/calls/policy.py ``identity_check_admit``), through the gate (relay/calls/
identity_gate.py), so the in-call re-checks accept the person staff let in.
"""

from __future__ import annotations

import base64
from typing import Any

from protocol.vocabulary import PARTY_ROLES
from relay import keys
from relay.calls.identity_gate import ADMITTED_BY_STAFF
from relay.records.store import Staff
from relay.web.api import ApiError, Ctx, Handlers
from relay.web.call_control import _live, call_json
from relay.web.routes import role_allows

HANDLERS = Handlers()
handler = HANDLERS


def _name(ctx: Ctx, person: str | None) -> str | None:
    if person is None:
        return None
    if person == ADMITTED_BY_STAFF:
        return "the person staff admitted"
    kind, _, ident = person.partition(":")
    if kind == "visitor" and ident.isdigit():
        visitor = ctx.store.visitor(int(ident))
        return visitor.name if visitor is not None else person
    if kind == "prisoner" and ident.isdigit():
        row = ctx.store.prisoner(int(ident))
        return str(row["name"]) if row is not None else person
    return person


def _faces(ctx: Ctx, faces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": _name(ctx, f["person"]),
            "matched": f["person"] is not None,
            "distance": None if f["distance"] == float("inf") else f["distance"],
            "box": f["box"],
        }
        for f in faces
    ]


def _role(ctx: Ctx) -> str:
    role = ctx.request.match_info["role"]
    if role not in PARTY_ROLES:
        raise ApiError(404, "not_found", "the side is family or prison")
    return role


@handler
async def staff_call_identity(ctx: Ctx) -> Any:
    staff, live = _live(ctx)
    call, policy = live.call, live.policy
    gate = ctx.request.config_dict[keys.IDENTITY_GATE]
    sees_frame = role_allows("admin", staff.role) and not call.is_legal
    sides = []
    for role in PARTY_ROLES:
        side = policy.identity.get(role)
        faces = gate.faces_now(call, role)
        if faces is None:
            faces = side.faces if side is not None else []
        frame = side.evidence_jpeg if side is not None and sees_frame else None
        sides.append(
            {
                "role": role,
                "status": side.public() if side is not None else None,
                "admitted_by": side.admitted_by if side is not None else None,
                "faces": _faces(ctx, faces),
                "threshold": ctx.config.identity_threshold,
                "evidence_jpeg_base64": base64.b64encode(frame).decode() if frame else None,
                "evidence_withheld": "legal call" if call.is_legal else None,
            }
        )
    _audit(ctx, staff, call.id, "identity_viewed", {"frame": sees_frame})
    return {"booking_id": call.id, "call_type": call.call_type, "sides": sides}


@handler
async def staff_call_identity_admit(ctx: Ctx) -> Any:
    staff, live = _live(ctx)
    role = _role(ctx)
    gate = ctx.request.config_dict[keys.IDENTITY_GATE]
    note = str(ctx.body.get("note", ""))
    if not gate.admit(live.call, live.policy, role, f"staff:{staff.id}", note):
        raise ApiError(409, "not_held", f"the {role} side is not waiting for its identity check")
    return call_json(live)


def _audit(ctx: Ctx, staff: Staff, booking_id: int, kind: str, detail: dict[str, Any]) -> None:
    ctx.audit(kind, detail, staff.establishment_id, f"staff:{staff.id}", booking_id=booking_id)
