"""Vetting over the API: a family applies to be a prisoner's contact, adds two photos and
submits; staff of that prisoner's establishment review and decide (docs/family.md).

Photos are checked and re-encoded (relay/records/photos.py), sealed at rest with the
recordings key, never served to a family, and every staff view of one is audited, as is
every decision. Another establishment's application is a 404, like an unknown one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from relay import keys
from relay.identity.enrolment import Enrolled
from relay.notify import feeder
from relay.records import photos
from relay.records.store import Application, Staff
from relay.web import models
from relay.web.api import ApiError, Ctx, Handlers
from relay.web.family_accounts import account_of

log = logging.getLogger("relay.web.vetting")

HANDLERS = Handlers()
handler = HANDLERS

_IMAGE_TYPES = ("image/jpeg", "image/png")


def _surname(name: str) -> str:
    parts = name.casefold().split()
    return parts[-1] if parts else ""


def application_json(a: Application) -> dict[str, Any]:
    return {
        "id": a.id,
        "prisoner_id": a.prisoner_id,
        "prisoner_number": a.prisoner_number,
        "prisoner_name": a.prisoner_name,
        "relationship": a.relationship,
        "status": a.status,
        "reason": a.reason,
        "created_at": a.created_at,
        "submitted_at": a.submitted_at,
        "decided_at": a.decided_at,
        "member_ids": list(a.member_ids),
        "photos": list(a.photos),
    }


def _person(ctx: Ctx, vid: int) -> dict[str, Any]:
    v = ctx.store.visitor(vid)
    assert v is not None
    return {"visitor_id": v.id, "name": v.name, "date_of_birth": v.date_of_birth}


def staff_application_json(ctx: Ctx, a: Application) -> dict[str, Any]:
    existing = [
        c.visitor_id
        for c in ctx.store.contacts(a.establishment_id, a.prisoner_id)
        if c.status == "approved"
    ]
    return {
        **application_json(a),
        "date_of_birth": a.date_of_birth,
        "address": a.address,
        "applicant": _person(ctx, a.visitor_id),
        "members": [_person(ctx, v) for v in a.member_ids],
        "existing_contacts": [_person(ctx, v) for v in existing],
    }


def _own_application(ctx: Ctx, account_id: int) -> Application:
    a = ctx.store.application(ctx.path_id("application_id"))
    if a is None or a.account_id != account_id:
        raise ApiError(404, "application_not_found", "no such application")
    return a


def _staff_application(ctx: Ctx) -> tuple[Staff, Application]:
    staff = ctx.staff()
    a = ctx.store.application(ctx.path_id("application_id"))
    if a is None or a.establishment_id != staff.establishment_id:
        raise ApiError(404, "application_not_found", "no such application")
    return staff, a


def _audit(ctx: Ctx, event: str, staff: Staff, a: Application, **detail: Any) -> None:
    ctx.audit(
        event,
        {"application": a.id, "prisoner": a.prisoner_id, **detail},
        a.establishment_id,
        f"staff:{staff.id}",
    )


# --------------------------------------------------------------------------- family side


@handler
async def family_apply(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    b = ctx.args(models.ApplicationRequest)
    prisoner = ctx.store.prisoner_by_number(b.prisoner_number.strip().upper())
    # A wrong number and a wrong name answer alike: nobody learns who is in custody.
    if prisoner is None or _surname(prisoner["name"]) != _surname(b.prisoner_name):
        raise ApiError(
            404, "prisoner_not_found", "no prisoner with that number and name: check both with them"
        )
    household = {v.id for v, _ in ctx.store.household(acc.id)}
    if any(v not in household for v in b.member_ids):
        raise ApiError(
            422, "visitor_not_in_household", "you can only include the children in your household"
        )
    aid = ctx.store.create_application(
        account_id=acc.id,
        visitor_id=acc.visitor_id,
        prisoner_id=prisoner["id"],
        relationship=b.relationship.strip(),
        date_of_birth=b.date_of_birth,
        address=b.address.strip(),
        member_ids=b.member_ids,
        now=ctx.now,
    )
    return application_json(ctx.store.application(aid))  # type: ignore[arg-type]


@handler
async def family_applications(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    return {"applications": [application_json(a) for a in ctx.store.account_applications(acc.id)]}


@handler
async def family_application_photo(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    a = _own_application(ctx, acc.id)
    kind = ctx.args(models.PhotoQuery).kind
    ctype = ctx.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype not in _IMAGE_TYPES:
        raise ApiError(415, "unsupported_media_type", "send the photo as image/jpeg or image/png")
    limit = ctx.config.photo_max_bytes
    data = await _read_upload(ctx, limit)
    try:
        jpeg = await asyncio.to_thread(photos.clean_jpeg, data, limit, ctx.config.photo_max_px)
    except photos.PhotoError as exc:
        status = 413 if exc.code == "photo_too_large" else 422
        raise ApiError(status, exc.code, exc.message) from None
    key = ctx.request.config_dict[keys.RECORDING_KEY]
    path, digest = await asyncio.to_thread(photos.seal_photo, ctx.config.vetting_path, key, jpeg)
    try:
        old = ctx.store.put_photo(a.id, kind, path, digest, len(jpeg), ctx.now)
    except Exception:
        photos.delete_photo(path)
        raise
    if old:
        photos.delete_photo(old)
    return application_json(ctx.store.application(a.id))  # type: ignore[arg-type]


async def _read_upload(ctx: Ctx, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes plus one (so an oversize one is told apart)."""
    declared = ctx.request.content_length
    if declared is not None and declared > limit:
        raise ApiError(413, "photo_too_large", f"a photo may be at most {limit // 1024} KB")
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await ctx.request.content.read(limit + 1 - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


@handler
async def family_submit_application(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    a = _own_application(ctx, acc.id)
    return application_json(ctx.store.submit_application(a.id, ctx.now))


# --------------------------------------------------------------------------- staff side


@handler
async def staff_vetting_queue(ctx: Ctx) -> Any:
    staff = ctx.staff()
    status = ctx.args(models.VettingQueueQuery).status
    found = ctx.store.vetting_queue(staff.establishment_id, status)
    return {"applications": [staff_application_json(ctx, a) for a in found]}


@handler
async def staff_vetting_get(ctx: Ctx) -> Any:
    _, a = _staff_application(ctx)
    return staff_application_json(ctx, a)


@handler
async def staff_vetting_photo(ctx: Ctx) -> Any:
    staff, a = _staff_application(ctx)
    kind = ctx.args(models.PhotoQuery).kind
    found = ctx.store.photo(a.id, kind)
    if found is None:
        raise ApiError(404, "photo_not_found", "no such photo")
    jpeg = await asyncio.to_thread(
        photos.open_photo, found[0], ctx.request.config_dict[keys.RECORDING_KEY]
    )
    _audit(ctx, "vetting_photo_viewed", staff, a, kind=kind)
    return web.Response(
        body=jpeg,
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@handler
async def staff_vetting_decide(ctx: Ctx) -> Any:
    staff, a = _staff_application(ctx)
    b = ctx.args(models.VettingDecision)
    approve = b.decision == "approve"
    if not approve and not b.reason.strip():
        raise ApiError(400, "reason_required", "say why, so the applicant knows")
    a = ctx.store.decide_application(a.id, staff.id, approve, b.reason.strip(), ctx.now)
    _audit(ctx, "vetting_decided", staff, a, decision=b.decision)
    acc = ctx.store.account(a.account_id)
    if acc is not None:
        template = "application_approved" if approve else "application_declined"
        feeder.queue(
            ctx.store,
            ctx.config,
            acc,
            template,
            f"application:{a.id}",
            ctx.now,
            prisoner=a.prisoner_name,
            establishment=ctx.store.establishment_name(a.establishment_id),
            reason=a.reason,
        )
        ctx.request.config_dict[keys.NOTIFIER].wake()
    log.info("application %s %s by staff:%s", a.id, a.status, staff.id)
    out = staff_application_json(ctx, a)
    if approve and acc is not None:
        out["face_enrolment"] = await _enrol_face(ctx, staff, a, acc.visitor_id)
    return out


async def _enrol_face(ctx: Ctx, staff: Staff, a: Application, visitor_id: int) -> str:
    """The applicant's face photo becomes their identity reference (relay/identity), so the
    vetted face is the one checked on camera. An unusable photo does not undo the approval:
    staff are told why, and can upload another (PUT /api/identity/visitors/{id}/face)."""
    found = ctx.store.photo(a.id, "face")
    if found is None:
        return "no face photo was sent with the application"
    jpeg = await asyncio.to_thread(
        photos.open_photo, found[0], ctx.request.config_dict[keys.RECORDING_KEY]
    )
    result = await ctx.request.config_dict[keys.FACE_ENROLMENTS].enrol_face(
        "visitor", visitor_id, jpeg, actor=f"staff:{staff.id}",
        establishment_id=a.establishment_id,
    )
    return "enrolled" if isinstance(result, Enrolled) else result.message
