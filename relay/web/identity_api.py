"""Staff endpoints for face enrolment: upload a visitor's or prisoner's photo, see, delete.

The routes are the ``IDENTITY_PREFIX`` rows of relay/web/routes.py (their own handler table
here, mounted by :func:`add_routes`). An upload's body is the photo itself (JPEG or PNG,
checked by its content, at most ``Config.identity_photo_max_bytes``); enrolment, checks and
storage are relay/identity/enrolment.py's. Every answer, refusals included, is audited with
the staff member as actor; a photo that cannot be used is a 422 with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from relay import keys
from relay.identity.enrolment import Enrolled, FaceEnrolments, Refused, SubjectKind
from relay.records.store import Staff
from relay.web import models
from relay.web.api import ApiError, error_response, respond, session_staff
from relay.web.routes import IDENTITY_PREFIX, OPERATIONS, Op, role_allows

Handler = Callable[[web.Request, Op, Staff, SubjectKind, int], Awaitable[Any]]


def _enrolments(request: web.Request) -> FaceEnrolments:
    return request.config_dict[keys.FACE_ENROLMENTS]


def _audit(request: web.Request, staff: Staff, kind: str, detail: dict[str, Any]) -> None:
    request.config_dict[keys.AUDIT_LOG].append(
        kind, detail, establishment_id=staff.establishment_id, actor=f"staff:{staff.id}"
    )


def _subject(request: web.Request, staff: Staff, kind: SubjectKind) -> int:
    """The id in the path, of a person this staff member may act on, or a 404."""
    name = f"{kind}_id"
    subject_id = models.parse_id(request.match_info[name])
    store = request.config_dict[keys.STORE]
    if subject_id is not None and kind == "visitor" and store.visitor(subject_id) is not None:
        return subject_id
    if subject_id is not None and kind == "prisoner":
        row = store.prisoner(subject_id)
        if row is not None and row["establishment_id"] == staff.establishment_id:
            return subject_id
    raise ApiError(404, f"{kind}_not_found", f"no such {kind}")


def _status(kind: SubjectKind, subject_id: int, enrolled: Enrolled | None) -> dict[str, Any]:
    if enrolled is None:
        return {"kind": kind, "subject_id": subject_id, "enrolled": False}
    return enrolled.public()


async def _put(
    request: web.Request, op: Op, staff: Staff, kind: SubjectKind, subject_id: int
) -> Any:
    config = request.config_dict[keys.CONFIG]
    limit = config.identity_photo_max_bytes
    chunks: list[bytes] = []
    size = 0
    while size <= limit:  # read() returns what has arrived: loop to the limit or the end
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    photo = b"".join(chunks)
    if len(photo) > limit:
        raise ApiError(413, "photo_too_large", f"at most {limit} bytes")
    if not photo:
        raise ApiError(400, "no_photo", "send the photo (JPEG or PNG) as the request body")
    result = await _enrolments(request).enrol_face(
        kind, subject_id, photo, actor=f"staff:{staff.id}", establishment_id=staff.establishment_id
    )
    if isinstance(result, Refused):
        raise ApiError(result.status, result.code, result.message)
    return result.public()


async def _get(
    request: web.Request, op: Op, staff: Staff, kind: SubjectKind, subject_id: int
) -> Any:
    enrolled = _enrolments(request).get(kind, subject_id)
    _audit(
        request,
        staff,
        "face_enrolment_viewed",
        {"kind": kind, "subject_id": subject_id, "enrolled": enrolled is not None},
    )
    return _status(kind, subject_id, enrolled)


async def _delete(
    request: web.Request, op: Op, staff: Staff, kind: SubjectKind, subject_id: int
) -> Any:
    enrolments = _enrolments(request)
    if not enrolments.forget(kind, subject_id, actor=f"staff:{staff.id}", reason="staff"):
        raise ApiError(404, "not_enrolled", f"this {kind} has no enrolled face")
    return _status(kind, subject_id, None)


HANDLERS: dict[str, Handler] = {
    f"identity_{kind}_face_{verb}": fn
    for kind in ("visitor", "prisoner")
    for verb, fn in (("put", _put), ("get", _get), ("delete", _delete))
}
"""The handler table of the IDENTITY_PREFIX operations (one per row of relay/web/routes.py)."""


def _bind(op: Op) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    fn = HANDLERS[op.op_id]
    kind: SubjectKind = "visitor" if op.op_id.startswith("identity_visitor") else "prisoner"

    async def route(request: web.Request) -> web.StreamResponse:
        try:
            staff = session_staff(request)
            if staff is None:
                raise ApiError(401, "unauthenticated", "log in as staff first")
            if not role_allows(op.staff_role, staff.role):
                _audit(request, staff, "face_enrolment_refused", {"op": op.op_id, "refused": 403})
                raise ApiError(403, "forbidden", f"only an {op.staff_role} may do this")
            subject_id = _subject(request, staff, kind)
            result = await fn(request, op, staff, kind, subject_id)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        response = respond(op, result)
        response.headers["Cache-Control"] = "no-store"
        return response

    route.__name__ = f"api_{op.op_id}"
    return route


def add_routes(app: web.Application) -> None:
    """Mount the table's identity operations on ``app`` (relay/app.py)."""
    for op in OPERATIONS:
        if op.prefix == IDENTITY_PREFIX:
            app.router.add_route(op.method, op.full_path, _bind(op))
