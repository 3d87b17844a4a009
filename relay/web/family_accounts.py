"""Family accounts over the API: register, verify, sign in and out, reset, household,
consent, contacts and data export (docs/family.md; deleting the account:
relay/web/erasure_api.py).

Answers never tell whether an email has an account (registration and reset say the same
either way; the owner of an address is told by email instead). Bad passwords and bad email
tokens count against the remote address like staff logins (``Ctx.refuse_auth``). Argon2
runs in a thread: it is slow on purpose and the loop serves calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from relay import auth, keys
from relay.notify import feeder
from relay.records.store import Account
from relay.web import models
from relay.web.api import ApiError, Ctx, Handlers
from relay.web.family_session import FAMILY_COOKIE, session_account

log = logging.getLogger("relay.web.family")

HANDLERS = Handlers()
handler = HANDLERS

CHECK_EMAIL = "if the address can be used, an email is on its way: open its link"


def account_of(ctx: Ctx) -> Account:
    """The signed-in family account, or 401."""
    acc = session_account(ctx.request)
    if acc is None:
        raise ApiError(401, "unauthenticated", "sign in first")
    return acc


def _wake(ctx: Ctx) -> None:
    ctx.request.config_dict[keys.NOTIFIER].wake()


def _link(ctx: Ctx, action: str, token: str) -> str:
    """The app's link for an emailed token: in the fragment, so it never reaches a server log
    or a Referer header."""
    return f"{ctx.config.base_url}/app#{action}={token}"


def _hours(ctx: Ctx) -> int:
    return max(1, round(ctx.config.email_token_ttl_s / 3600))


def me_json(ctx: Ctx, acc: Account) -> dict[str, Any]:
    v = ctx.store.visitor(acc.visitor_id)
    assert v is not None
    return {
        "email": acc.email,
        "email_verified": acc.email_verified,
        "visitor_id": v.id,
        "name": v.name,
        "date_of_birth": v.date_of_birth,
        "identity_verified": v.identity_verified,
        "language": acc.language,
        "household": [
            {
                "visitor_id": c.id,
                "name": c.name,
                "date_of_birth": c.date_of_birth,
                "relationship": rel,
                "identity_verified": c.identity_verified,
            }
            for c, rel in ctx.store.household(acc.id)
        ],
        "join_opens_before_s": ctx.config.token_early_s,
    }


def _with_cookie(ctx: Ctx, body: dict[str, Any], token: str | None) -> web.Response:
    resp = web.json_response(body)
    if token is None:
        resp.del_cookie(FAMILY_COOKIE, path="/")
    else:
        resp.set_cookie(
            FAMILY_COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=bool(ctx.config.tls_cert),
            path="/",
        )
    return resp


@handler
async def family_register(ctx: Ctx) -> Any:
    b = ctx.args(models.FamilyRegister)
    pw_hash = await asyncio.to_thread(auth.hash_password, b.password)
    aid = ctx.store.register_account(
        b.email, pw_hash, b.name.strip(), b.date_of_birth, b.language, ctx.now
    )
    if aid is None:
        acc, _ = ctx.store.account_by_email(b.email)
        if acc is not None:  # tell the owner, at most once an hour
            feeder.queue(
                ctx.store,
                ctx.config,
                acc,
                "account_exists",
                f"exists:{int(ctx.now // 3600)}",
                ctx.now,
            )
    else:
        acc = ctx.store.account(aid)
        assert acc is not None
        token = ctx.store.issue_account_token(aid, "verify", ctx.now, ctx.config.email_token_ttl_s)
        feeder.queue(
            ctx.store,
            ctx.config,
            acc,
            "verify_email",
            f"verify:{auth.hash_secret(token)}",
            ctx.now,
            link=_link(ctx, "verify", token),
            hours=_hours(ctx),
        )
        log.info("family account %s registered", aid)
    _wake(ctx)
    return {"ok": True, "message": CHECK_EMAIL}


@handler
async def family_verify(ctx: Ctx) -> Any:
    ctx.check_not_blocked()
    aid = ctx.store.use_account_token(ctx.args(models.FamilyToken).token, "verify", ctx.now)
    if aid is None:
        raise ctx.refuse_auth("bad_token", "this link has expired or was used already", 400)
    ctx.store.mark_email_verified(aid)
    return {"ok": True, "message": "your email address is confirmed: sign in"}


@handler
async def family_login(ctx: Ctx) -> Any:
    ctx.check_not_blocked()
    b = ctx.args(models.FamilyLogin)
    acc, pw_hash = ctx.store.account_by_email(b.email)
    ok = await asyncio.to_thread(auth.verify_password, pw_hash, b.password)
    if not ok or acc is None:
        raise ctx.refuse_auth("bad_credentials", "wrong email or password")
    if not acc.email_verified:
        raise ApiError(403, "email_not_verified", "confirm your email address first")
    token = ctx.store.create_account_session(acc.id, ctx.now)
    log.info("family login account=%s remote=%s", acc.id, ctx.remote)
    return _with_cookie(ctx, me_json(ctx, acc), token)


@handler
async def family_logout(ctx: Ctx) -> Any:
    cookie = ctx.request.cookies.get(FAMILY_COOKIE)
    if cookie:
        ctx.store.delete_account_session(cookie)
    return _with_cookie(ctx, {"ok": True}, None)


@handler
async def family_logout_everywhere(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    ctx.store.sign_out_everywhere(acc.id)
    return _with_cookie(ctx, {"ok": True}, None)


@handler
async def family_reset_request(ctx: Ctx) -> Any:
    acc, _ = ctx.store.account_by_email(ctx.args(models.ResetRequest).email)
    if acc is not None:
        token = ctx.store.issue_account_token(
            acc.id, "reset", ctx.now, ctx.config.email_token_ttl_s
        )
        feeder.queue(
            ctx.store,
            ctx.config,
            acc,
            "password_reset",
            f"reset:{auth.hash_secret(token)}",
            ctx.now,
            link=_link(ctx, "reset", token),
            hours=_hours(ctx),
        )
        _wake(ctx)
    return {"ok": True, "message": CHECK_EMAIL}


@handler
async def family_reset(ctx: Ctx) -> Any:
    ctx.check_not_blocked()
    b = ctx.args(models.PasswordReset)
    aid = ctx.store.use_account_token(b.token, "reset", ctx.now)
    if aid is None:
        raise ctx.refuse_auth("bad_token", "this link has expired or was used already", 400)
    pw_hash = await asyncio.to_thread(auth.hash_password, b.password)
    ctx.store.set_account_password(aid, pw_hash)
    ctx.store.mark_email_verified(aid)  # the link reached the address
    return {"ok": True, "message": "your password is changed: sign in"}


@handler
async def family_me(ctx: Ctx) -> Any:
    return me_json(ctx, account_of(ctx))


@handler
async def family_language(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    ctx.store.set_language(acc.id, ctx.args(models.SetLanguage).language)
    return me_json(ctx, ctx.store.account(acc.id))  # type: ignore[arg-type]


@handler
async def family_add_child(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    b = ctx.args(models.HouseholdChild)
    vid = ctx.store.add_household_child(
        acc.id, b.name.strip(), b.date_of_birth, b.relationship.strip(), ctx.now
    )
    v = ctx.store.visitor(vid)
    assert v is not None
    return {
        "visitor_id": vid,
        "name": v.name,
        "date_of_birth": v.date_of_birth,
        "relationship": b.relationship.strip(),
        "identity_verified": v.identity_verified,
    }


@handler
async def family_consent(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    other, _ = ctx.store.account_by_email(ctx.args(models.ConsentRequest).email)
    if other is not None and other.id != acc.id:
        ctx.store.consent_to_join(acc.visitor_id, other.visitor_id, ctx.now)
    return {"ok": True, "message": "if that person has an account, they can now add you"}


@handler
async def family_contacts(ctx: Ctx) -> Any:
    acc = session_account(ctx.request)
    vids = sorted(ctx.store.linked_visitors(acc.id)) if acc else [ctx.visitor_id()]
    return {"contacts": ctx.store.family_contacts(vids)}


@handler
async def family_export(ctx: Ctx) -> Any:
    acc = account_of(ctx)
    data = ctx.store.account_export(acc.id)
    data["applications"] = [
        {
            k: getattr(a, k)
            for k in (
                "prisoner_number",
                "relationship",
                "date_of_birth",
                "address",
                "status",
                "reason",
                "created_at",
            )
        }
        for a in ctx.store.account_applications(acc.id)
    ]
    log.info("family data export account=%s", acc.id)
    return web.Response(
        body=json.dumps(data, indent=2, default=str).encode("utf-8"),
        content_type="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="my-data.json"',
            "Cache-Control": "no-store",
        },
    )
