"""The booking API: JSON over HTTP under ``/api/v1/`` for the family app, the prison kiosk and
laptop, and the staff console. Routes come from the table in ``relay.web.routes``; request
validation, response shapes and the OpenAPI document from the models in ``relay.web.models``.

Who is asking (see docs/booking.md):

* a family member: ``Authorization: Bearer <visitor id>.<secret>``, the access key issued
  once when the visitor was vetted (only its SHA-256 is stored);
* the prison laptop: ``laptop_id`` + ``laptop_secret`` in the JSON body (the laptop page's
  kiosk signs in with a device key and the prisoner's PIN: relay/web/kiosk_api.py);
* staff: the ``relay_staff`` session cookie from ``POST /api/v1/staff/login``. A staff member
  only ever sees or changes their own establishment's records: anything else is a 404.

Every failure is ``{"error": {"code", "message"}}`` with a 4xx status; a handler bug becomes a
500 with the same shape (logged, never a traceback to the client). Bad credentials and
refused tokens count per remote address; past ``bad_token_limit_per_min`` the address gets
429 until the minute has passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, unquote_to_bytes

from aiohttp import web
from pydantic import BaseModel, ValidationError

from protocol import tokens
from protocol.tokens import JoinClaims
from relay import auth, keys
from relay.cluster.bus import BusError
from relay.records.store import AdmissionRefused, Booking, Staff, StoreError
from relay.web import models
from relay.web.family_session import session_account
from relay.web.jsonbody import BodyError, parse_json
from relay.web.openapi import openapi_document
from relay.web.origins import same_origin
from relay.web.routes import API_PREFIX, OPERATIONS, Op, role_allows
from relay.web.signalling import close_watchers

log = logging.getLogger("relay.web.api")

STAFF_COOKIE = "relay_staff"
MAX_BODY = 64 * 1024
M = TypeVar("M", bound=BaseModel)

_CONFLICT = {
    "allowance_exceeded", "slot_full", "prisoner_busy", "booking_not_pending",
    "booking_not_active", "booking_started", "username_taken", "laptop_unavailable",
    "call_in_progress",
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


# --------------------------------------------------------------------------- staff sign-in


def session_staff(request: web.Request) -> Staff | None:
    """The staff member whose session cookie this request carries, or None. The one staff
    sign-in check: the booking API (``Ctx.staff``) and the recordings routes
    (``authorize_staff``) both use it."""
    cookie = request.cookies.get(STAFF_COOKIE)
    if not cookie:
        return None
    now = request.config_dict[keys.CLOCK]()  # the API's clock (tests move it)
    return request.config_dict[keys.STORE].session_staff(cookie, now)


def authorize_staff(request: web.Request) -> Staff:
    """``app[keys.AUTHORIZE_STAFF]`` for the recordings routes: the staff member, or 401."""
    staff = session_staff(request)
    if staff is None:
        raise web.HTTPUnauthorized(text="log in as staff first")
    return staff


# --------------------------------------------------------------------------- request context


class Ctx:
    """What a handler gets: the request, its validated body (or query) and the services.

    ``model`` is the validated model (None when the operation takes none); ``body`` the fields
    the client sent, as a dict (defaults are the handler's business)."""

    def __init__(self, request: web.Request, op: Op, model: BaseModel | None) -> None:
        self.request = request
        self.op = op
        self.model = model
        self.body: dict[str, Any] = (
            {} if model is None else model.model_dump(by_alias=True, exclude_unset=True)
        )
        cd = request.config_dict
        self.store = cd[keys.STORE]
        self.config = cd[keys.CONFIG]
        self.secret = cd[keys.TOKEN_SECRET]
        self.limiter = cd[keys.AUTH_LIMITER]
        self.lifecycle = cd[keys.LIFECYCLE]
        self.now = cd[keys.CLOCK]()
        self.remote = request.remote or "unknown"

    def args(self, cls: type[M]) -> M:
        """The validated body or query, typed."""
        assert isinstance(self.model, cls), (self.op.op_id, cls)
        return self.model

    def path_id(self, name: str) -> int:
        value = models.parse_id(self.request.match_info[name])
        if value is None:
            raise ApiError(404, "not_found", f"no such {name.removesuffix('_id')}")
        return value

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
        """The family member asking: a family session cookie, else a bearer access key."""
        account = session_account(self.request)
        if account is not None:
            return account.visitor_id
        header = self.request.headers.get("Authorization", "")
        if not header:
            if required:
                raise ApiError(401, "unauthenticated", "send 'Authorization: Bearer <key>'")
            return None
        self.check_not_blocked()
        scheme, _, key = header.partition(" ")
        ident, _, secret = key.strip().partition(".")
        vid = models.parse_id(ident)
        if scheme.lower() != "bearer" or not ident.isdigit() or not secret:
            raise self.refuse_auth("bad_credentials", "malformed visitor access key")
        if vid is None or self.store.check_visitor(vid, secret) is None:
            raise self.refuse_auth("bad_credentials", "unknown visitor access key")
        return vid

    def staff(self, required: bool = True) -> Staff | None:
        staff = session_staff(self.request)
        if staff is None and required:
            raise ApiError(401, "unauthenticated", "log in as staff first")
        if staff is not None and not role_allows(self.op.staff_role, staff.role):
            raise ApiError(403, "forbidden", f"only an {self.op.staff_role} may do this")
        return staff

    def laptop(self):
        self.check_not_blocked()
        lap = self.store.check_laptop(self.body["laptop_id"], self.body["laptop_secret"])
        if lap is None:
            raise self.refuse_auth("bad_credentials", "unknown laptop or wrong secret")
        return lap

    def audit(
        self,
        kind: str,
        detail: dict[str, Any],
        establishment_id: int,
        actor: str,
        booking_id: int | None = None,
    ) -> None:
        """One audit entry for what this request did, at the request's time."""
        self.request.config_dict[keys.AUDIT_LOG].append(
            kind,
            detail,
            booking_id=booking_id,
            establishment_id=establishment_id,
            actor=actor,
            at=self.now,
        )

    def staff_booking(self, staff: Staff, booking_id: int) -> Booking:
        b = self.store.booking(booking_id)
        if b is None or b.establishment_id != staff.establishment_id:
            raise ApiError(404, "booking_not_found", "no such booking")
        return b


# --------------------------------------------------------------------------- JSON shapes


def staff_json(s: Staff) -> dict[str, Any]:
    return models.Staff.model_validate(s).model_dump(mode="json")


LEGAL_CALL_REFUSED = (
    "legal calls are booked by staff (for a registered legal representative), "
    "never by a family account or the kiosk"
)


def refuse_legal(call_type: str) -> None:
    """Legal calls are unrecorded and unheard: the booking route is the safeguard."""
    if call_type == "legal":
        raise ApiError(403, "legal_call_not_allowed", LEGAL_CALL_REFUSED)


# --------------------------------------------------------------------------- tokens


def issue_join_token(
    ctx: Ctx, booking: Booking, participant: str, role: str, jti: str = ""
) -> dict[str, Any]:
    """Issue a token after checking the live booking exactly as the relay will on joining
    (``jti``: a watcher's staff session, ``auth.session_ref``)."""
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
        jti=jti,
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


class Handlers(dict[str, Handler]):
    """One module's handlers by operation id (the route table's ``op_id``). Used as the
    decorator that names them; the composition root hands every table to ``setup_api``."""

    def __call__(self, fn: Handler) -> Handler:
        self[fn.__name__] = fn
        return fn


HANDLERS = Handlers()
handler = HANDLERS


@handler
async def openapi(ctx: Ctx) -> Any:
    return _OPENAPI


@handler
async def request_booking(ctx: Ctx) -> Any:
    vid = ctx.visitor_id()
    b = ctx.args(models.BookingRequest)
    refuse_legal(b.call_type)
    prisoner = ctx.store.prisoner_by_number(b.prisoner_number)
    # Not an approved contact looks exactly like no such prisoner: the API must not tell a
    # stranger who is in custody.
    if prisoner is None or not ctx.store.is_approved_contact(prisoner["id"], vid):
        raise ApiError(404, "prisoner_not_found", "no such prisoner among your contacts")
    party = ctx.store.family_party(vid, b.main_visitor_id, b.visitor_ids)
    return ctx.store.request_booking(
        prisoner_id=prisoner["id"],
        call_type=b.call_type,
        starts_at=b.starts_at,
        minutes=b.minutes,
        main_visitor_id=vid,
        visitor_ids=party,
        requested_by="family",
        now=ctx.now,
        actor=f"visitor:{vid}",
    )


@handler
async def my_bookings(ctx: Ctx) -> Any:
    vid = ctx.visitor_id()
    return {"bookings": ctx.store.visitor_bookings(vid)}


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
    return await ctx.lifecycle.cancel(b.id, actor, ctx.now, ctx.body.get("reason", ""))


@handler
async def reschedule_booking(ctx: Ctx) -> Any:
    b, actor, staff = _booking_for_family_or_staff(ctx, main_only=True)
    return await ctx.lifecycle.reschedule(
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
    b = ctx.args(models.StaffLogin)
    staff, pw_hash = ctx.store.staff_password_hash(b.username)
    # argon2 is ~50 ms of CPU: off the event loop. The store itself stays on the loop.
    ok = await asyncio.to_thread(auth.verify_password, pw_hash, b.password)
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
        # the session's watch tokens stop working, and its open watchers are closed
        close_watchers(ctx.request.config_dict[keys.SESSIONS], auth.session_ref(cookie))
        cluster = ctx.request.config_dict.get(keys.CLUSTER)
        if cluster is not None:  # and those watching through other nodes
            await cluster.staff_logged_out(auth.session_ref(cookie))
    resp = web.json_response({"ok": True})
    resp.del_cookie(STAFF_COOKIE, path="/")
    return resp


@handler
async def staff_me(ctx: Ctx) -> Any:
    return ctx.staff()


@handler
async def staff_bookings(ctx: Ctx) -> Any:
    staff = ctx.staff()
    q = ctx.args(models.StaffBookingsQuery)
    found = ctx.store.list_bookings(
        staff.establishment_id,
        status=q.status,
        starts_from=q.from_,
        starts_before=q.to,
        limit=q.limit,
    )
    return {"bookings": found}


@handler
async def staff_book(ctx: Ctx) -> Any:
    """Staff book on a family's or legal representative's behalf: the same rules as any
    request, then approved at once (staff are who approve). If the approval is refused
    (no free laptop, say), the request is declined with that reason and the refusal returned,
    so no half-made booking waits in the queue."""
    staff = ctx.staff()
    b = ctx.args(models.StaffBookingRequest)
    prisoner = ctx.store.prisoner_by_number(b.prisoner_number)
    if prisoner is None or prisoner["establishment_id"] != staff.establishment_id:
        raise ApiError(404, "prisoner_not_found", "no such prisoner here")
    booking = ctx.store.request_booking(
        prisoner_id=prisoner["id"],
        call_type=b.call_type,
        starts_at=b.starts_at,
        minutes=b.minutes,
        main_visitor_id=b.main_visitor_id,
        visitor_ids=b.visitor_ids,
        requested_by="staff",
        now=ctx.now,
        actor=f"staff:{staff.id}",
    )
    try:
        return ctx.store.approve_booking(booking.id, staff.id, ctx.now, b.laptop_id)
    except StoreError as exc:
        ctx.store.decline_booking(booking.id, staff.id, ctx.now, f"not approved: {exc.message}")
        raise


@handler
async def staff_approve(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    return ctx.store.approve_booking(b.id, staff.id, ctx.now, ctx.args(models.Approve).laptop_id)


@handler
async def staff_decline(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    return ctx.store.decline_booking(b.id, staff.id, ctx.now, ctx.args(models.Decline).reason)


@handler
async def staff_outcome(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    reason = ctx.body.get("reason", "") or f"set by staff:{staff.id}"
    return ctx.lifecycle.staff_outcome(b.id, ctx.body["outcome"], reason, ctx.now)


@handler
async def staff_watch_token(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.staff_booking(staff, ctx.path_id("booking_id"))
    session = auth.session_ref(ctx.request.cookies[STAFF_COOKIE])  # bound to this session
    return issue_join_token(ctx, b, f"staff:{staff.id}", "watcher", jti=session)


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
    q = ctx.args(models.ContactsQuery)
    return {"contacts": ctx.store.contacts(staff.establishment_id, q.prisoner_id)}


@handler
async def staff_approve_contact(ctx: Ctx) -> Any:
    staff = ctx.staff()
    b = ctx.args(models.ContactRequest)
    prisoner = ctx.store.prisoner(b.prisoner_id)
    if prisoner is None or prisoner["establishment_id"] != staff.establishment_id:
        raise ApiError(404, "prisoner_not_found", "no such prisoner")
    cid = ctx.store.approve_contact(prisoner["id"], b.visitor_id, staff.id, ctx.now)
    return ctx.store.contact(cid)


@handler
async def staff_revoke_contact(ctx: Ctx) -> Any:
    staff = ctx.staff()
    cid = ctx.path_id("contact_id")
    if ctx.store.contact_establishment(cid) != staff.establishment_id:
        raise ApiError(404, "contact_not_found", "no such approval")
    done = await ctx.lifecycle.revoke(cid, staff.id, ctx.now)
    log.info("approval %s revoked by staff:%s; stopped bookings %s, carrying on without the"
             " visitor %s", cid, staff.id, done.stopped, done.reduced)
    return {"contact": ctx.store.contact(cid),
            "cancelled_booking_ids": done.stopped}


@handler
async def staff_register_visitor(ctx: Ctx) -> Any:
    ctx.staff()
    b = ctx.args(models.VisitorRegistration)
    vid, secret = ctx.store.add_visitor(b.name, b.date_of_birth, b.identity_verified, ctx.now)
    return {"visitor_id": vid, "access_key": f"{vid}.{secret}"}


# --------------------------------------------------------------------------- plumbing


_OPENAPI = openapi_document()


def _invalid(where: str, exc: ValidationError) -> ApiError:
    """The first violation, naming the field: ``body.minutes: is required``."""
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join([where, *(str(part)[:40] for part in err["loc"])])
    message = {"missing": "is required", "extra_forbidden": "is not a known field"}.get(
        err["type"], err["msg"]
    )
    return ApiError(400, "invalid_request", f"{loc}: {message}")


async def _read_body(request: web.Request, op: Op) -> BaseModel | None:
    """The validated body (POST) or query (GET) of ``op``, or None when it takes neither."""
    if op.body is None:
        return _read_query(request, op) if op.query is not None else None
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"at most {MAX_BODY} bytes")
    if not raw.strip():
        if op.body_required:
            raise ApiError(400, "invalid_request", "a JSON body is required")
        return op.body()
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
    if ctype.lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    try:
        value = parse_json(raw)
    except BodyError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_request", "body: must be an object")
    try:
        return op.body.model_validate(value)
    except ValidationError as exc:
        raise _invalid("body", exc) from None


def _read_query(request: web.Request, op: Op) -> BaseModel:
    """Known query parameters (the first of each name); unknown ones are ignored."""
    assert op.query is not None
    try:
        # yarl replaces invalid UTF-8 (a lone surrogate's %ED%A0%80) with U+FFFD; refuse it.
        unquote_to_bytes(request.rel_url.raw_query_string).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_unicode", "the query string is not valid UTF-8") from None
    names = {f.alias or name for name, f in op.query.model_fields.items()}
    present = {name: request.query[name] for name in names if name in request.query}
    try:
        return op.query.model_validate(present)
    except ValidationError as exc:
        raise _invalid("query", exc) from None


async def read_request(request: web.Request, op: Op) -> BaseModel | None:
    """Body or query of ``op``, validated; raises ``ApiError``. For the recordings routes."""
    return await _read_body(request, op)


def respond(op: Op, result: Any) -> web.StreamResponse:
    """The success response: ``result`` (a store value, a model or a dict) in ``op``'s
    response model, so every answer has the documented shape."""
    if isinstance(result, web.StreamResponse):
        return result
    if op.response is not None:
        result = op.response.model_validate(result).model_dump(mode="json", exclude_unset=True)
    return web.json_response(result, status=op.status)


CREDENTIAL_FIELDS = frozenset({"password", "laptop_secret"})
"""Body fields that carry a credential: an operation with one is an auth endpoint, where a
refused body counts against the address like a wrong password (so bad bodies cannot flood
it or the log any faster than guesses)."""


def _takes_credentials(op: Op) -> bool:
    return op.body is not None and bool(CREDENTIAL_FIELDS & set(op.body.model_fields))


async def _read_credentials_body(request: web.Request, op: Op) -> BaseModel | None:
    """An auth endpoint's body: 429 while the address is blocked, and a refused body counted."""
    limiter = request.config_dict[keys.AUTH_LIMITER]
    remote = request.remote or "unknown"
    if limiter.blocked(remote):
        raise ApiError(429, "rate_limited", "too many refused attempts; wait a minute",
                       {"Retry-After": str(limiter.retry_after(remote))})
    try:
        return await _read_body(request, op)
    except ApiError as exc:
        limiter.failed(remote)
        log.warning("auth refused code=%s op=%s remote=%s", exc.code, op.op_id, remote)
        raise


def _route(op: Op, fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    read = _read_credentials_body if _takes_credentials(op) else _read_body

    async def route(request: web.Request) -> web.StreamResponse:
        try:
            model = await read(request, op)
            ctx = Ctx(request, op, model)
            result = await fn(ctx)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        except StoreError as exc:
            e = _store_error(exc)
            return error_response(e.status, e.code, e.message)
        except BusError as exc:  # many nodes: the node running the call did not confirm
            return error_response(exc.status, exc.code, exc.message)
        return respond(op, result)

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
    except (asyncio.CancelledError, ConnectionResetError):
        # ConnectionResetError: a streamed download aborted on purpose (a recording that
        # fails verification); its headers are already sent, so no JSON error can follow
        raise
    except Exception:
        log.exception("internal error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong; it has been logged")


def setup_api(app: web.Application, handlers: Mapping[str, Handler]) -> None:
    """Mount the booking API under /api/v1 on ``app`` (relay/app.py builds its services).

    ``handlers`` holds one handler for every operation of the route table under /api/v1; a
    missing one is an error now, not a 404 later."""
    missing = [op.op_id for op in OPERATIONS if op.prefix == API_PREFIX and op.op_id not in handlers]
    if missing:
        raise RuntimeError(f"no handler for operations {missing}")
    app.middlewares.append(same_origin)  # the whole app: /api/v1 and /api/recordings
    app.middlewares.append(_errors)  # JSON errors for /api/recordings too
    api = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    for op in OPERATIONS:
        if op.prefix != API_PREFIX:
            continue  # the recordings routes: mounted by relay.records.recordings
        api.router.add_route(op.method, op.path, _route(op, handlers[op.op_id]), name=op.op_id)
    app.add_subapp(API_PREFIX, api)
