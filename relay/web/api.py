"""The booking API: JSON over HTTP under ``/api/v1/`` for the family app, the prison kiosk and
laptop, and the staff console. Routes, request schemas and the OpenAPI document all come from
``relay.web.openapi.OPERATIONS``.

Who is asking (see docs/booking.md):

* a family member: ``Authorization: Bearer <visitor id>.<secret>``, the access key issued
  once when the visitor was vetted (only its SHA-256 is stored);
* the prison kiosk/laptop: ``laptop_id`` + ``laptop_secret`` in the JSON body (and for the
  kiosk, the prisoner's number);
* staff: the ``relay_staff`` session cookie from ``POST /api/v1/staff/login``. A staff member
  only ever sees or changes their own establishment's records: anything else is a 404.

Every failure is ``{"error": {"code", "message"}}`` with a 4xx status; a handler bug becomes a
500 with the same shape (logged, never a traceback to the client). Bad credentials and
refused tokens count per remote address; past ``bad_token_limit_per_min`` the address gets
429 until the minute has passed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from protocol import tokens
from protocol.tokens import JoinClaims
from relay import auth
from relay.records.store import AdmissionRefused, Booking, Contact, Staff, Store, StoreError
from relay.web.openapi import API_PREFIX, MAX_ID, OPERATIONS, SCHEMAS, Invalid, Op, openapi_document
from relay.web.openapi import validate as validate_schema

log = logging.getLogger("relay.web.api")

STAFF_COOKIE = "relay_staff"
MAX_BODY = 64 * 1024

_CONFLICT = {
    "allowance_exceeded", "slot_full", "prisoner_busy", "booking_not_pending",
    "booking_not_active", "booking_started", "username_taken", "laptop_unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers=None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def _store_error(exc: StoreError) -> ApiError:
    if exc.code.endswith("_not_found"):
        return ApiError(404, exc.code, exc.message)
    if exc.code in _CONFLICT:
        return ApiError(409, exc.code, exc.message)
    return ApiError(422, exc.code, exc.message)


# --------------------------------------------------------------------------- request context


class Ctx:
    """What a handler gets: the request, its validated body and the services."""

    def __init__(self, request: web.Request, op: Op, body: dict[str, Any]) -> None:
        self.request = request
        self.op = op
        self.body = body
        cd = request.config_dict
        self.store: Store = cd["store"]
        self.config = cd["config"]
        self.secret: bytes = cd["token_secret"]
        self.limiter: auth.BadAttemptLimiter = cd["auth_limiter"]
        self.now: float = cd.get("clock", time.time)()
        self.remote = request.remote or "unknown"

    def path_id(self, name: str) -> int:
        raw = self.request.match_info[name]
        if len(raw) > 16 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
            raise ApiError(404, "not_found", f"no such {name.removesuffix('_id')}")
        return int(raw)

    def check_not_blocked(self) -> None:
        if self.limiter.blocked(self.remote):
            retry = str(self.limiter.retry_after(self.remote))
            raise ApiError(
                429, "rate_limited", "too many refused attempts; wait a minute",
                {"Retry-After": retry},
            )

    def refuse_auth(self, code: str, message: str, status: int = 401) -> ApiError:
        """Count a bad credential against the remote address and log it (no secrets)."""
        self.limiter.failed(self.remote)
        log.warning("auth refused code=%s op=%s remote=%s", code, self.op.op_id, self.remote)
        return ApiError(status, code, message)

    # who is asking

    def visitor_id(self, required: bool = True) -> int | None:
        header = self.request.headers.get("Authorization", "")
        if not header:
            if required:
                raise ApiError(401, "unauthenticated", "send 'Authorization: Bearer <key>'")
            return None
        self.check_not_blocked()
        scheme, _, key = header.partition(" ")
        ident, _, secret = key.strip().partition(".")
        if (
            scheme.lower() != "bearer"
            or len(ident) > 16
            or not ident.isascii()
            or not ident.isdigit()
            or not secret
        ):
            raise self.refuse_auth("bad_credentials", "malformed visitor access key")
        vid = int(ident)
        if vid > MAX_ID or self.store.check_visitor(vid, secret) is None:
            raise self.refuse_auth("bad_credentials", "unknown visitor access key")
        return vid

    def staff(self, required: bool = True) -> Staff | None:
        cookie = self.request.cookies.get(STAFF_COOKIE)
        staff = self.store.session_staff(cookie, self.now) if cookie else None
        if staff is None and required:
            raise ApiError(401, "unauthenticated", "log in as staff first")
        if staff is not None and self.op.staff_role == "admin" and staff.role != "admin":
            raise ApiError(403, "forbidden", "only an admin may do this")
        return staff

    def laptop(self):
        self.check_not_blocked()
        lap = self.store.check_laptop(self.body["laptop_id"], self.body["laptop_secret"])
        if lap is None:
            raise self.refuse_auth("bad_credentials", "unknown laptop or wrong secret")
        return lap

    def staff_booking(self, staff: Staff, booking_id: int) -> Booking:
        b = self.store.booking(booking_id)
        if b is None or b.establishment_id != staff.establishment_id:
            raise ApiError(404, "booking_not_found", "no such booking")
        return b


# --------------------------------------------------------------------------- JSON shapes


def booking_json(b: Booking) -> dict[str, Any]:
    return {
        "id": b.id,
        "establishment_id": b.establishment_id,
        "prisoner_id": b.prisoner_id,
        "prisoner_number": b.prisoner_number,
        "call_type": b.call_type,
        "starts_at": b.starts_at,
        "ends_at": b.ends_at,
        "minutes": b.minutes,
        "status": b.status,
        "requested_by": b.requested_by,
        "main_visitor_id": b.main_visitor_id,
        "visitor_ids": list(b.visitor_ids),
        "laptop_id": b.laptop_id,
        "reason": b.reason,
    }


def contact_json(c: Contact) -> dict[str, Any]:
    return {
        "id": c.id,
        "prisoner_id": c.prisoner_id,
        "visitor_id": c.visitor_id,
        "status": c.status,
        "approved_by": c.approved_by,
        "approved_at": c.approved_at,
        "revoked_by": c.revoked_by,
        "revoked_at": c.revoked_at,
    }


def staff_json(s: Staff) -> dict[str, Any]:
    return {
        "id": s.id,
        "username": s.username,
        "role": s.role,
        "establishment_id": s.establishment_id,
    }


# --------------------------------------------------------------------------- tokens


def issue_join_token(ctx: Ctx, booking: Booking, participant: str, role: str) -> dict[str, Any]:
    """Issue a token after checking the live booking exactly as the relay will on joining."""
    if booking.ends_at <= ctx.now:
        log.warning(
            "token refused code=token_expired booking=%s participant=%s", booking.id, participant
        )
        raise ApiError(409, "token_expired", "the call's slot has ended")
    claims = JoinClaims(
        booking_id=booking.id,
        participant=participant,
        role=role,
        nbf=booking.starts_at - ctx.config.token_early_s,
        exp=booking.ends_at,
    )
    try:
        ctx.store.admit(claims, max(ctx.now, claims.nbf))
    except AdmissionRefused as exc:
        status = 403 if exc.code in ("approval_revoked", "wrong_booking") else 409
        raise ApiError(status, exc.code, exc.message) from None
    token = tokens.issue(ctx.secret, claims)
    out = {
        "token": token,
        "booking_id": booking.id,
        "role": role,
        "participant": participant,
        "nbf": claims.nbf,
        "exp": claims.exp,
    }
    if role == "family":
        out["join_url"] = f"{ctx.config.base_url}/join?token={quote(token)}"
    return out


# --------------------------------------------------------------------------- handlers

Handler = Callable[[Ctx], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def handler(fn: Handler) -> Handler:
    HANDLERS[fn.__name__] = fn
    return fn


@handler
async def openapi(ctx: Ctx) -> Any:
    return openapi_document()


@handler
async def request_booking(ctx: Ctx) -> Any:
    vid = ctx.visitor_id()
    b = ctx.body
    prisoner = ctx.store.prisoner_by_number(b["prisoner_number"])
    # Not an approved contact looks exactly like no such prisoner: the API must not tell a
    # stranger who is in custody.
    if prisoner is None or not ctx.store.is_approved_contact(prisoner["id"], vid):
        raise ApiError(404, "prisoner_not_found", "no such prisoner among your contacts")
    main = b.get("main_visitor_id", vid)
    return ctx.store.request_booking(
        prisoner_id=prisoner["id"],
        call_type=b.get("call_type", "social"),
        starts_at=float(b["starts_at"]),
        minutes=b["minutes"],
        main_visitor_id=main,
        visitor_ids=[vid, *b.get("visitor_ids", [])],
        requested_by="family",
        now=ctx.now,
        actor=f"visitor:{vid}",
    )


@handler
async def my_bookings(ctx: Ctx) -> Any:
    vid = ctx.visitor_id()
    return {"bookings": [booking_json(b) for b in ctx.store.visitor_bookings(vid)]}


def _booking_for_family_or_staff(ctx: Ctx, main_only: bool) -> tuple[Booking, str, Staff | None]:
    """The booking, the actor string, and the staff member (None for a visitor)."""
    bid = ctx.path_id("booking_id")
    staff = ctx.staff(required=False)
    if staff is not None:
        return ctx.staff_booking(staff, bid), f"staff:{staff.id}", staff
    vid = ctx.visitor_id()
    b = ctx.store.booking(bid)
    if b is None or vid not in b.visitor_ids:
        raise ApiError(404, "booking_not_found", "no such booking")
    if main_only and vid != b.main_visitor_id:
        raise ApiError(403, "forbidden", "only the main visitor may change this booking")
    return b, f"visitor:{vid}", None


@handler
async def get_booking(ctx: Ctx) -> Any:
    b, _, _ = _booking_for_family_or_staff(ctx, main_only=False)
    return b


@handler
async def cancel_booking(ctx: Ctx) -> Any:
    b, actor, _ = _booking_for_family_or_staff(ctx, main_only=True)
    lifecycle = ctx.request.config_dict["lifecycle"]
    return await lifecycle.cancel(b.id, actor, ctx.now, ctx.body.get("reason", ""))


@handler
async def reschedule_booking(ctx: Ctx) -> Any:
    b, actor, staff = _booking_for_family_or_staff(ctx, main_only=True)
    return await ctx.request.config_dict["lifecycle"].reschedule(
        b.id, float(ctx.body["starts_at"]), ctx.body["minutes"], actor, ctx.now,
        keep_approval=staff is not None,
    )


@handler
async def family_join_token(ctx: Ctx) -> Any:
    vid = ctx.visitor_id()
    b = ctx.store.booking(ctx.path_id("booking_id"))
    if b is None or vid not in b.visitor_ids:
        raise ApiError(404, "booking_not_found", "no such booking")
    return issue_join_token(ctx, b, f"visitor:{vid}", "family")


def _kiosk_prisoner(ctx: Ctx, laptop) -> Any:
    prisoner = ctx.store.prisoner_by_number(ctx.body["prisoner_number"])
    if prisoner is None or prisoner["establishment_id"] != laptop.establishment_id:
        raise ApiError(404, "prisoner_not_found", "no such prisoner here")
    return prisoner


@handler
async def kiosk_request_booking(ctx: Ctx) -> Any:
    laptop = ctx.laptop()
    prisoner = _kiosk_prisoner(ctx, laptop)
    b = ctx.body
    return ctx.store.request_booking(
        prisoner_id=prisoner["id"],
        call_type=b.get("call_type", "social"),
        starts_at=float(b["starts_at"]),
        minutes=b["minutes"],
        main_visitor_id=b["visitor_id"],
        visitor_ids=b.get("visitor_ids", []),
        requested_by="prisoner",
        now=ctx.now,
        actor=f"laptop:{laptop.id}",
    )


@handler
async def kiosk_cancel_booking(ctx: Ctx) -> Any:
    laptop = ctx.laptop()
    prisoner = _kiosk_prisoner(ctx, laptop)
    b = ctx.store.booking(ctx.path_id("booking_id"))
    if b is None or b.prisoner_id != prisoner["id"]:
        raise ApiError(404, "booking_not_found", "no such booking")
    return await ctx.request.config_dict["lifecycle"].cancel(
        b.id, f"laptop:{laptop.id}", ctx.now, ctx.body.get("reason", "cancelled by prisoner")
    )


@handler
async def laptop_token(ctx: Ctx) -> Any:
    laptop = ctx.laptop()
    b = ctx.store.booking(ctx.body["booking_id"])
    if b is None or b.establishment_id != laptop.establishment_id:
        raise ctx.refuse_auth("booking_not_found", "no such booking", 404)
    if b.laptop_id != laptop.id:
        raise ctx.refuse_auth("wrong_booking", "that booking is not assigned to this laptop", 403)
    return issue_join_token(ctx, b, f"laptop:{laptop.id}", "prison")


@handler
async def staff_login(ctx: Ctx) -> Any:
    ctx.check_not_blocked()
    staff, pw_hash = ctx.store.staff_password_hash(ctx.body["username"])
    # argon2 is ~50 ms of CPU: off the event loop. The store itself stays on the loop.
    ok = await asyncio.to_thread(auth.verify_password, pw_hash, ctx.body["password"])
    if not ok or staff is None:
        raise ctx.refuse_auth("bad_credentials", "wrong username or password")
    token = ctx.store.create_session(staff.id, ctx.now)
    resp = web.json_response(staff_json(staff))
    resp.set_cookie(
        STAFF_COOKIE, token, httponly=True, samesite="Strict",
        secure=bool(ctx.config.tls_cert), path="/",
    )
    log.info("staff login staff=%s remote=%s", staff.id, ctx.remote)
    return resp


@handler
async def staff_logout(ctx: Ctx) -> Any:
    cookie = ctx.request.cookies.get(STAFF_COOKIE)
    if cookie:
        ctx.store.delete_session(cookie)
    resp = web.json_response({"ok": True})
    resp.del_cookie(STAFF_COOKIE, path="/")
    return resp


@handler
async def staff_me(ctx: Ctx) -> Any:
    return staff_json(ctx.staff())


@handler
async def staff_bookings(ctx: Ctx) -> Any:
    staff = ctx.staff()
    q = ctx.body  # query parameters, validated
    found = ctx.store.list_bookings(
        staff.establishment_id,
        status=q.get("status"),
        starts_from=q.get("from"),
        starts_before=q.get("to"),
        limit=q.get("limit", 200),
    )
    return {"bookings": [booking_json(b) for b in found]}


@handler
async def staff_approve(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    return ctx.store.approve_booking(b.id, staff.id, ctx.now, ctx.body.get("laptop_id"))


@handler
async def staff_decline(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    return ctx.store.decline_booking(b.id, staff.id, ctx.now, ctx.body.get("reason", ""))


@handler
async def staff_outcome(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    reason = ctx.body.get("reason", "") or f"set by staff:{staff.id}"
    try:
        return ctx.request.config_dict["lifecycle"].staff_outcome(
            b.id, ctx.body["outcome"], reason, ctx.now
        )
    except StoreError as exc:
        if exc.code == "call_in_progress":
            raise ApiError(409, exc.code, exc.message) from None
        raise


@handler
async def staff_watch_token(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    return issue_join_token(ctx, b, f"staff:{staff.id}", "watcher")


@handler
async def staff_prisoners(ctx: Ctx) -> Any:
    staff = ctx.staff()
    return {
        "prisoners": [
            {
                "id": p["id"],
                "number": p["number"],
                "name": p["name"],
                "video_call_eligible": bool(p["video_call_eligible"]),
            }
            for p in ctx.store.prisoners(staff.establishment_id)
        ]
    }


@handler
async def staff_contacts(ctx: Ctx) -> Any:
    staff = ctx.staff()
    found = ctx.store.contacts(staff.establishment_id, ctx.body.get("prisoner_id"))
    return {"contacts": [contact_json(c) for c in found]}


@handler
async def staff_approve_contact(ctx: Ctx) -> Any:
    staff = ctx.staff()
    prisoner = ctx.store.prisoner(ctx.body["prisoner_id"])
    if prisoner is None or prisoner["establishment_id"] != staff.establishment_id:
        raise ApiError(404, "prisoner_not_found", "no such prisoner")
    cid = ctx.store.approve_contact(prisoner["id"], ctx.body["visitor_id"], staff.id, ctx.now)
    return contact_json(ctx.store.contact(cid))


@handler
async def staff_revoke_contact(ctx: Ctx) -> Any:
    staff = ctx.staff()
    cid = ctx.path_id("contact_id")
    if ctx.store.contact_establishment(cid) != staff.establishment_id:
        raise ApiError(404, "contact_not_found", "no such approval")
    done = await ctx.request.config_dict["lifecycle"].revoke(cid, staff.id, ctx.now)
    log.info("approval %s revoked by staff:%s; stopped bookings %s, carrying on without the"
             " visitor %s", cid, staff.id, done.stopped, done.reduced)
    return {"contact": contact_json(ctx.store.contact(cid)),
            "cancelled_booking_ids": done.stopped}


@handler
async def staff_register_visitor(ctx: Ctx) -> Any:
    ctx.staff()
    b = ctx.body
    vid, secret = ctx.store.add_visitor(
        b["name"], b["date_of_birth"], b["identity_verified"], ctx.now
    )
    return {"visitor_id": vid, "access_key": f"{vid}.{secret}"}


# --------------------------------------------------------------------------- plumbing


async def _read_body(request: web.Request, op: Op) -> dict[str, Any]:
    if op.body is None:
        if op.method == "GET":
            return _read_query(request, op)
        return {}
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"at most {MAX_BODY} bytes")
    if not raw.strip():
        if op.body_required:
            raise ApiError(400, "invalid_request", "a JSON body is required")
        return {}
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
    if ctype.lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    try:
        validate_schema(SCHEMAS[op.body], body)
    except Invalid as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read_query(request: web.Request, op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in op.params:
        if p.where != "query" or p.name not in request.query:
            continue
        raw = request.query[p.name]
        kind = p.schema.get("type")
        try:
            value: Any = raw
            if kind == "integer":
                value = int(raw) if raw.strip().lstrip("-").isdigit() else float("nan")
                if not isinstance(value, int):
                    raise ValueError(raw)
            elif kind == "number":
                value = float(raw)
            validate_schema(p.schema, value, f"query.{p.name}")
        except (ValueError, OverflowError):
            raise ApiError(400, "invalid_request", f"query.{p.name}: has the wrong type") from None
        except Invalid as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        out[p.name] = value
    return out


def _route(op: Op) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    fn = HANDLERS[op.op_id]

    async def route(request: web.Request) -> web.StreamResponse:
        try:
            body = await _read_body(request, op)
            ctx = Ctx(request, op, body)
            result = await fn(ctx)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        except StoreError as exc:
            e = _store_error(exc)
            return error_response(e.status, e.code, e.message)
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, Booking):
            result = booking_json(result)
        return web.json_response(result, status=op.status)

    route.__name__ = f"api_{op.op_id}"
    return route


_HTTP_CODES = {
    400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "body_too_large",
    415: "unsupported_media_type", 429: "rate_limited",
}


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    """Every answer under /api/ is JSON: unknown routes, wrong methods and bugs included."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "internal_error" if exc.status >= 500 else "http_error")
        text = exc.text or ""
        message = exc.reason if not text or text.startswith(f"{exc.status}:") else text
        return error_response(exc.status, code, message)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong; it has been logged")


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def _same_origin(request: web.Request, handler) -> web.StreamResponse:
    """Refuse state-changing requests a browser sends from another site (CSRF defence in
    depth behind the SameSite=Strict cookie). Clients that send no Origin (the laptop, curl)
    are not browsers and pass."""
    if request.method in _UNSAFE:
        origin = request.headers.get("Origin")
        if request.headers.get("Sec-Fetch-Site") == "cross-site" or (
            origin is not None and urlsplit(origin).netloc not in _own_hosts(request)
        ):
            log.warning("cross-origin %s %s refused (origin %.100s)", request.method,
                        request.path, origin)
            return error_response(403, "cross_origin", "requests from another site are refused")
    return await handler(request)


def _own_hosts(request: web.Request) -> set[str]:
    hosts = {request.host}
    public = request.config_dict["config"].public_url
    if public:
        hosts.add(urlsplit(public).netloc)
    return hosts


def setup_api(app: web.Application) -> None:
    """Mount the booking API under /api/v1 on ``app``.

    Needs ``app["config"]`` now and ``app["store"]`` by start-up. Sets ``app["token_secret"]``
    (``load_secret``), ``app["auth_limiter"]`` (shared with signalling) and, at start-up,
    ``app["join_gate"]`` (``relay.auth.JoinGate``: verify + admit + log + rate-limit, for the
    signalling server). ``app["clock"]`` (a ``time.time``-like callable) may be set for tests.
    """
    config = app["config"]
    with warnings.catch_warnings():  # the project keys its app state by plain strings
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        if "token_secret" not in app:
            app["token_secret"] = auth.load_secret(config)
        if "auth_limiter" not in app:
            app["auth_limiter"] = auth.BadAttemptLimiter(config.bad_token_limit_per_min)
    app.middlewares.append(_same_origin)  # the whole app: /api/v1 and /api/recordings
    app.middlewares.append(_errors)  # JSON errors for /api/recordings too
    api = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    for op in OPERATIONS:
        api.router.add_route(op.method, op.path, _route(op), name=op.op_id)
    app.add_subapp(API_PREFIX, api)

    async def _start(app: web.Application) -> None:
        if "join_gate" not in app:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", web.NotAppKeyWarning)
                app["join_gate"] = auth.JoinGate(
                    app["token_secret"], app["store"], app["auth_limiter"]
                )

    app.on_startup.append(_start)


# Handlers for live calls live in their own module; importing it registers them.
from relay.web import call_control  # noqa: E402,F401
