"""Erasure over the API (relay/records/erasure.py does it; docs/erasure.md says what goes).

- A family member deletes their own account: signed in, with their password again and an
  explicit ``confirm: true`` (like a bank app, a session alone is not enough for something
  that cannot be undone). Wrong passwords count like sign-in failures.
- An admin erases a visitor or a prisoner of their own establishment with a reason code.
  Records of another establishment answer 404 like unknown ones; a visitor also linked to
  another establishment is refused (409): their approvals here can be revoked instead, and
  one establishment must not delete another's records. Every staff attempt is audited,
  refused ones too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from relay import auth, keys
from relay.records.erasure import Erased, Erasure, ErasureError
from relay.records.store import Staff
from relay.web import models
from relay.web.api import ApiError, Ctx, Handlers, session_staff
from relay.web.family_accounts import account_of
from relay.web.family_session import FAMILY_COOKIE

log = logging.getLogger("relay.web.erasure")

HANDLERS = Handlers()
handler = HANDLERS

DELETED = (
    "your account is deleted: you are signed out. Your call history stays, without your "
    "name, and recordings are deleted when the prison's retention period ends"
)


def _erasure(ctx: Ctx) -> Erasure:
    return ctx.request.config_dict[keys.ERASURE]


def _staff(ctx: Ctx, subject: dict[str, int]) -> Staff:
    """The admin asking; an officer's attempt is audited before the 403."""
    try:
        staff = ctx.staff()
    except ApiError as exc:
        who = session_staff(ctx.request)
        if who is not None:
            _refused(ctx, who, subject, exc.code)
        raise
    assert staff is not None
    return staff


def _refused(ctx: Ctx, staff: Staff, subject: dict[str, int], code: str) -> None:
    ctx.audit(
        "erasure_refused", {**subject, "code": code}, staff.establishment_id, f"staff:{staff.id}"
    )


def _answer(done: Erased, message: str) -> dict[str, Any]:
    return {
        "ok": True,
        "message": message,
        "visitor_ids": done.visitor_ids,
        "prisoner_id": done.prisoner_id,
        "bookings_stopped": done.bookings_stopped,
        "bookings_reduced": done.bookings_reduced,
        "applications": done.applications,
        "faces_forgotten": done.faces_forgotten,
    }


def _stopped(done: Erased) -> str:
    n = len(done.bookings_stopped)
    return f"{n} coming booking{'' if n == 1 else 's'} stopped"


@handler
async def family_delete_account(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    ctx.check_not_blocked()
    b = ctx.args(models.DeleteAccount)
    _, pw_hash = ctx.store.account_by_email(acc.email)
    if not await asyncio.to_thread(auth.verify_password, pw_hash, b.password):
        raise ctx.refuse_auth("bad_credentials", "wrong password")
    try:
        await _erasure(ctx).erase_visitor(
            acc.visitor_id, f"visitor:{acc.visitor_id}", "person_asked"
        )
    except ErasureError as exc:  # a second tab sent it at the same moment
        raise ApiError(409, exc.code, exc.message) from None
    resp = web.json_response({"ok": True, "message": DELETED})
    resp.del_cookie(FAMILY_COOKIE, path="/")
    return resp


@handler
async def staff_erase_visitor(ctx: Ctx) -> Any:
    vid = ctx.path_id("visitor_id")
    subject = {"visitor_id": vid}
    staff = _staff(ctx, subject)
    store = ctx.store
    linked = store.visitor_establishments(vid)
    if staff.establishment_id not in linked:
        _refused(ctx, staff, subject, "visitor_not_found")
        raise ApiError(404, "visitor_not_found", "no such visitor here")
    if store.visitor_erased_at(vid) is not None:
        _refused(ctx, staff, subject, "already_erased")
        raise ApiError(409, "already_erased", "this visitor's record was erased already")
    _, children = store.household_of_holder(vid)
    for child in children:
        linked |= store.visitor_establishments(child)
    if linked - {staff.establishment_id}:
        _refused(ctx, staff, subject, "visitor_linked_elsewhere")
        raise ApiError(
            409,
            "visitor_linked_elsewhere",
            "this visitor (or a child in their household) is also linked to another "
            "establishment: revoke their approvals here instead",
        )
    b = ctx.args(models.EraseVisitor)
    try:
        done = await _erasure(ctx).erase_visitor(
            vid, f"staff:{staff.id}", b.reason, staff.establishment_id
        )
    except ErasureError as exc:
        raise ApiError(409, exc.code, exc.message) from None
    people = len(done.visitor_ids)
    who = "the visitor's record is" if people == 1 else f"{people} records (with the household) are"
    return _answer(done, f"{who} erased; {_stopped(done)}")


@handler
async def staff_erase_prisoner(ctx: Ctx) -> Any:
    pid = ctx.path_id("prisoner_id")
    subject = {"prisoner_id": pid}
    staff = _staff(ctx, subject)
    row = ctx.store.prisoner(pid)
    if row is None or row["establishment_id"] != staff.establishment_id:
        _refused(ctx, staff, subject, "prisoner_not_found")
        raise ApiError(404, "prisoner_not_found", "no such prisoner here")
    b = ctx.args(models.ErasePrisoner)
    try:
        done = await _erasure(ctx).erase_prisoner(pid, f"staff:{staff.id}", b.reason)
    except ErasureError as exc:
        _refused(ctx, staff, subject, exc.code)
        raise ApiError(409, exc.code, exc.message) from None
    return _answer(done, f"the prisoner's record is erased; {_stopped(done)}")
