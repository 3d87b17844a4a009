"""The booking API's contract: one table of operations and JSON schemas, from which come both
the OpenAPI 3 document served at ``/api/v1/openapi.json`` and the request validation.

``validate(schema, value)`` is a small validator for the subset of JSON Schema used here
(type, nullable, enum, properties/required/additionalProperties, items, min/max, lengths,
pattern, format date): one source of truth, and no dependency outside the lock file.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

API_PREFIX = "/api/v1"
MAX_ID = 2**53 - 1
MAX_TIME = 32503680000.0  # year 3000

ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
NULLABLE_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID, "nullable": True}
EPOCH = {"type": "number", "minimum": 0, "maximum": MAX_TIME, "description": "UTC epoch seconds"}
SECRET = {"type": "string", "minLength": 1, "maxLength": 200}
MINUTES = {"type": "integer", "enum": [30, 60], "description": "call length in minutes"}
CALL_TYPE = {"type": "string", "enum": ["social", "legal"]}
STATUS = {
    "type": "string",
    "enum": ["requested", "approved", "declined", "cancelled", "completed", "failed"],
}
REASON = {"type": "string", "maxLength": 500}


def _obj(props: dict[str, Any], required: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(
        {
            "error": _obj(
                {"code": {"type": "string"}, "message": {"type": "string"}}, ["code", "message"]
            )
        },
        ["error"],
    ),
    "Booking": _obj(
        {
            "id": ID,
            "establishment_id": ID,
            "prisoner_id": ID,
            "prisoner_number": {"type": "string"},
            "call_type": CALL_TYPE,
            "starts_at": EPOCH,
            "ends_at": EPOCH,
            "minutes": {"type": "integer"},
            "status": STATUS,
            "requested_by": {"type": "string", "enum": ["family", "prisoner", "staff"]},
            "main_visitor_id": ID,
            "visitor_ids": {"type": "array", "items": ID},
            "laptop_id": NULLABLE_ID,
            "reason": {"type": "string"},
        },
        [
            "id", "establishment_id", "prisoner_id", "prisoner_number", "call_type",
            "starts_at", "ends_at", "minutes", "status", "requested_by", "main_visitor_id",
            "visitor_ids", "laptop_id", "reason",
        ],
    ),
    "BookingList": _obj(
        {"bookings": {"type": "array", "items": _ref("Booking")}}, ["bookings"]
    ),
    "BookingRequest": _obj(
        {
            "prisoner_number": {"type": "string", "minLength": 1, "maxLength": 32},
            "call_type": CALL_TYPE,
            "starts_at": EPOCH,
            "minutes": MINUTES,
            "main_visitor_id": ID,
            "visitor_ids": {"type": "array", "items": ID, "maxItems": 16, "uniqueItems": True},
        },
        ["prisoner_number", "starts_at", "minutes"],
    ),
    "KioskBookingRequest": _obj(
        {
            "laptop_id": ID,
            "laptop_secret": SECRET,
            "prisoner_number": {"type": "string", "minLength": 1, "maxLength": 32},
            "visitor_id": ID,
            "visitor_ids": {"type": "array", "items": ID, "maxItems": 16, "uniqueItems": True},
            "call_type": CALL_TYPE,
            "starts_at": EPOCH,
            "minutes": MINUTES,
        },
        ["laptop_id", "laptop_secret", "prisoner_number", "visitor_id", "starts_at", "minutes"],
    ),
    "KioskCancel": _obj(
        {
            "laptop_id": ID,
            "laptop_secret": SECRET,
            "prisoner_number": {"type": "string", "minLength": 1, "maxLength": 32},
            "reason": REASON,
        },
        ["laptop_id", "laptop_secret", "prisoner_number"],
    ),
    "Cancel": _obj({"reason": REASON}),
    "Reschedule": _obj({"starts_at": EPOCH, "minutes": MINUTES}, ["starts_at", "minutes"]),
    "LaptopTokenRequest": _obj(
        {"laptop_id": ID, "laptop_secret": SECRET, "booking_id": ID},
        ["laptop_id", "laptop_secret", "booking_id"],
    ),
    "JoinToken": _obj(
        {
            "token": {"type": "string"},
            "booking_id": ID,
            "role": {"type": "string", "enum": ["family", "prison", "watcher"]},
            "participant": {"type": "string"},
            "nbf": EPOCH,
            "exp": EPOCH,
            "join_url": {"type": "string"},
        },
        ["token", "booking_id", "role", "participant", "nbf", "exp"],
    ),
    "StaffLogin": _obj(
        {
            "username": {"type": "string", "minLength": 1, "maxLength": 100},
            "password": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        ["username", "password"],
    ),
    "Staff": _obj(
        {
            "id": ID,
            "username": {"type": "string"},
            "role": {"type": "string", "enum": ["officer", "admin"]},
            "establishment_id": ID,
        },
        ["id", "username", "role", "establishment_id"],
    ),
    "Ok": _obj({"ok": {"type": "boolean"}}, ["ok"]),
    "CallStatus": _obj(
        {
            "booking_id": ID,
            "state": {"type": "string",
                      "enum": ["scheduled", "waiting", "live", "paused", "ended"]},
            "reason": {"type": "string"},
            "pause_reasons": {"type": "array", "items": {"type": "string"}},
            "awaiting_staff": {"type": "boolean"},
            "call_type": CALL_TYPE,
            "starts_at": EPOCH,
            "ends_at": EPOCH,
            "seconds_left": {"type": "integer", "minimum": 0},
            "legs": {"type": "array", "items": {"type": "string"}},
            "watchers": {"type": "integer", "minimum": 0},
            "faces": {"type": "object", "additionalProperties": {"type": "integer"}},
            "approved_faces": {"type": "object", "additionalProperties": {"type": "integer"}},
            "alerts": {"type": "integer", "minimum": 0},
        },
        ["booking_id", "state", "reason", "pause_reasons", "awaiting_staff", "call_type",
         "starts_at", "ends_at", "seconds_left", "legs", "watchers", "faces",
         "approved_faces", "alerts"],
    ),
    "Recording": _obj(
        {
            "id": ID,
            "booking_id": ID,
            "establishment_id": ID,
            "media_type": {"type": "string"},
            "started_at": EPOCH,
            "ended_at": {**EPOCH, "nullable": True},
            "size": {"type": "integer", "nullable": True},
            "sha256": {"type": "string", "nullable": True},
            "retention_until": EPOCH,
            "legal_hold": {"type": "boolean"},
            "hold_reason": {"type": "string", "nullable": True},
            "hold_by": {"type": "string", "nullable": True},
            "hold_at": {**EPOCH, "nullable": True},
            "status": {"type": "string",
                       "enum": ["recording", "complete", "interrupted", "failed", "deleted"]},
            "deleted_at": {**EPOCH, "nullable": True},
            "complete": {"type": "boolean"},
        },
        ["id", "booking_id", "establishment_id", "media_type", "started_at", "status",
         "legal_hold", "retention_until", "complete"],
    ),
    "RecordingList": _obj(
        {"recordings": {"type": "array", "items": _ref("Recording")}}, ["recordings"]
    ),
    "Hold": _obj({"reason": {"type": "string", "minLength": 1, "maxLength": 500}}, ["reason"]),
    "CallList": _obj({"calls": {"type": "array", "items": _ref("CallStatus")}}, ["calls"]),
    "CallNote": _obj({"note": REASON}),
    "AuditRecord": _obj(
        {
            "id": ID,
            "at": EPOCH,
            "kind": {"type": "string"},
            "actor": {"type": "string"},
            "detail": {"type": "object"},
            "evidence_id": NULLABLE_ID,
        },
        ["id", "at", "kind", "actor", "detail", "evidence_id"],
    ),
    "AuditList": _obj(
        {"records": {"type": "array", "items": _ref("AuditRecord")}}, ["records"]
    ),
    "EvidenceFrame": _obj(
        {
            "id": ID,
            "booking_id": ID,
            "jpeg_base64": {"type": "string"},
            "boxes": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        },
        ["id", "booking_id", "jpeg_base64", "boxes"],
    ),
    "Approve": _obj({"laptop_id": ID}),
    "Decline": _obj({"reason": REASON}),
    "Outcome": _obj(
        {"outcome": {"type": "string", "enum": ["completed", "failed"]}, "reason": REASON},
        ["outcome"],
    ),
    "Contact": _obj(
        {
            "id": ID,
            "prisoner_id": ID,
            "visitor_id": ID,
            "status": {"type": "string", "enum": ["approved", "revoked"]},
            "approved_by": NULLABLE_ID,
            "approved_at": EPOCH,
            "revoked_by": NULLABLE_ID,
            "revoked_at": {**EPOCH, "nullable": True},
        },
        [
            "id", "prisoner_id", "visitor_id", "status", "approved_by", "approved_at",
            "revoked_by", "revoked_at",
        ],
    ),
    "ContactList": _obj({"contacts": {"type": "array", "items": _ref("Contact")}}, ["contacts"]),
    "ContactRequest": _obj({"prisoner_id": ID, "visitor_id": ID}, ["prisoner_id", "visitor_id"]),
    "Revoked": _obj(
        {"contact": _ref("Contact"), "cancelled_booking_ids": {"type": "array", "items": ID}},
        ["contact", "cancelled_booking_ids"],
    ),
    "VisitorRegistration": _obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "date_of_birth": {"type": "string", "format": "date"},
            "identity_verified": {"type": "boolean"},
        },
        ["name", "date_of_birth", "identity_verified"],
    ),
    "VisitorCreated": _obj(
        {
            "visitor_id": ID,
            "access_key": {
                "type": "string",
                "description": "shown once; the app sends it as 'Authorization: Bearer <key>'",
            },
        },
        ["visitor_id", "access_key"],
    ),
    "Prisoner": _obj(
        {
            "id": ID,
            "number": {"type": "string"},
            "name": {"type": "string"},
            "video_call_eligible": {"type": "boolean"},
        },
        ["id", "number", "name", "video_call_eligible"],
    ),
    "PrisonerList": _obj(
        {"prisoners": {"type": "array", "items": _ref("Prisoner")}}, ["prisoners"]
    ),
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Op:
    op_id: str
    method: str
    path: str  # under API_PREFIX, aiohttp style "{booking_id}"
    summary: str
    security: tuple[str, ...]  # "visitor", "staff", "laptop" (credentials in body), or ()
    response: str  # schema name of the success body
    status: int = 200
    body: str | None = None
    body_required: bool = True
    params: tuple[Param, ...] = field(default_factory=tuple)
    staff_role: str = "officer"  # lowest staff role allowed


BOOKING_ID = Param("booking_id", "path", ID, True)
CONTACT_ID = Param("contact_id", "path", ID, True)

OPERATIONS: tuple[Op, ...] = (
    Op("openapi", "GET", "/openapi.json", "This document.", (), "", 200),
    Op("request_booking", "POST", "/bookings", "A family member requests a call slot.",
       ("visitor",), "Booking", 201, "BookingRequest"),
    Op("my_bookings", "GET", "/bookings", "The calling visitor's bookings.",
       ("visitor",), "BookingList"),
    Op("get_booking", "GET", "/bookings/{booking_id}",
       "One booking (a visitor on it, or staff of its establishment).",
       ("visitor", "staff"), "Booking", params=(BOOKING_ID,)),
    Op("cancel_booking", "POST", "/bookings/{booking_id}/cancel",
       "Cancel (the main visitor, or staff of the establishment).",
       ("visitor", "staff"), "Booking", body="Cancel", body_required=False,
       params=(BOOKING_ID,)),
    Op("reschedule_booking", "POST", "/bookings/{booking_id}/reschedule",
       "Move a booking that has not started; every rule is checked again. A visitor's "
       "change goes back to staff for approval; staff keep it approved.",
       ("visitor", "staff"), "Booking", body="Reschedule", params=(BOOKING_ID,)),
    Op("family_join_token", "POST", "/bookings/{booking_id}/join-token",
       "The calling visitor's join link for an approved booking.",
       ("visitor",), "JoinToken", params=(BOOKING_ID,)),
    Op("kiosk_request_booking", "POST", "/kiosk/bookings",
       "A prisoner requests a call to an approved contact, from the kiosk/laptop.",
       ("laptop",), "Booking", 201, "KioskBookingRequest"),
    Op("kiosk_cancel_booking", "POST", "/kiosk/bookings/{booking_id}/cancel",
       "A prisoner cancels one of their bookings from the kiosk/laptop.",
       ("laptop",), "Booking", body="KioskCancel", params=(BOOKING_ID,)),
    Op("laptop_token", "POST", "/laptop/token",
       "The prison laptop exchanges its credentials for the prison token of a booking "
       "assigned to it.", ("laptop",), "JoinToken", body="LaptopTokenRequest"),
    Op("staff_login", "POST", "/staff/login",
       "Staff log in; sets the HttpOnly, SameSite=Strict session cookie 'relay_staff'.",
       (), "Staff", body="StaffLogin"),
    Op("staff_logout", "POST", "/staff/logout", "End the staff session.", (), "Ok"),
    Op("staff_me", "GET", "/staff/me", "Who is logged in.", ("staff",), "Staff"),
    Op("staff_bookings", "GET", "/staff/bookings",
       "Bookings of the staff member's establishment.", ("staff",), "BookingList",
       params=(
           Param("status", "query", STATUS),
           Param("from", "query", EPOCH),
           Param("to", "query", EPOCH),
           Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
       )),
    Op("staff_approve", "POST", "/staff/bookings/{booking_id}/approve",
       "Approve a requested booking (every rule re-checked; a laptop assigned).",
       ("staff",), "Booking", body="Approve", body_required=False, params=(BOOKING_ID,)),
    Op("staff_decline", "POST", "/staff/bookings/{booking_id}/decline",
       "Decline a requested booking.", ("staff",), "Booking", body="Decline",
       body_required=False, params=(BOOKING_ID,)),
    Op("staff_outcome", "POST", "/staff/bookings/{booking_id}/outcome",
       "Record how a call ended; 'failed' (technical) gives the allowance back.",
       ("staff",), "Booking", body="Outcome", params=(BOOKING_ID,)),
    Op("staff_watch_token", "POST", "/staff/bookings/{booking_id}/watch-token",
       "A watcher token for a call of the staff member's establishment.",
       ("staff",), "JoinToken", params=(BOOKING_ID,)),
    Op("staff_prisoners", "GET", "/staff/prisoners", "Prisoners of the establishment.",
       ("staff",), "PrisonerList"),
    Op("staff_contacts", "GET", "/staff/contacts", "Approved contacts in the establishment.",
       ("staff",), "ContactList",
       params=(Param("prisoner_id", "query", ID),)),
    Op("staff_approve_contact", "POST", "/staff/contacts",
       "Approve a visitor as a prisoner's contact (admin).", ("staff",), "Contact", 201,
       "ContactRequest", staff_role="admin"),
    Op("staff_revoke_contact", "POST", "/staff/contacts/{contact_id}/revoke",
       "Revoke an approval: the visitor's coming bookings with that prisoner are cancelled "
       "and their tokens stop working at once.", ("staff",), "Revoked",
       params=(CONTACT_ID,)),
    Op("staff_calls", "GET", "/staff/calls",
       "Live calls of the staff member's establishment: state, time left, faces, alerts.",
       ("staff",), "CallList"),
    Op("staff_call_pause", "POST", "/staff/calls/{booking_id}/pause",
       "Pause a live call: no media reaches either side until it is resumed.",
       ("staff",), "CallStatus", body="CallNote", body_required=False, params=(BOOKING_ID,)),
    Op("staff_call_resume", "POST", "/staff/calls/{booking_id}/resume",
       "Resume a call paused by staff (or by vision, where staff must resume).",
       ("staff",), "CallStatus", params=(BOOKING_ID,)),
    Op("staff_call_end", "POST", "/staff/calls/{booking_id}/end",
       "End a call now; both sides are told why.",
       ("staff",), "CallStatus", params=(BOOKING_ID,)),
    Op("staff_call_audit", "GET", "/staff/calls/{booking_id}/audit",
       "The call's audit timeline (joins, state changes, vision decisions, staff actions).",
       ("staff",), "AuditList", params=(BOOKING_ID,)),
    Op("staff_evidence", "GET", "/staff/evidence/{evidence_id}",
       "An evidence frame (JPEG, boxes) kept with a vision pause.",
       ("staff",), "EvidenceFrame", params=(Param("evidence_id", "path", ID, True),)),
    Op("staff_register_visitor", "POST", "/staff/visitors",
       "Register a vetted visitor (admin); returns their app access key once.",
       ("staff",), "VisitorCreated", 201, "VisitorRegistration", staff_role="admin"),
)


def _recording_paths() -> dict[str, dict[str, Any]]:
    """The recordings API (relay/records/recordings.py: its own routes, audited), described here so the
    one document covers every endpoint."""
    rec_id = {"name": "rec_id", "in": "path", "required": True, "schema": ID}
    staff = [{"staffSession": []}]

    def answer(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
        return {
            "200": {"description": "success", "content": {media: {"schema": schema}}},
            "4XX": {"description": "refused: the error code says why",
                    "content": {"application/json": {"schema": _ref("Error")}}},
        }

    return {
        "/api/recordings": {"get": {
            "operationId": "recordings_list", "security": staff,
            "summary": "Recordings of the staff member's establishment (each listing is audited).",
            "parameters": [{"name": "booking_id", "in": "query", "required": False,
                            "schema": ID}],
            "responses": answer(_ref("RecordingList"))}},
        "/api/recordings/{rec_id}": {"get": {
            "operationId": "recording_get", "security": staff, "parameters": [rec_id],
            "summary": "One recording's record.", "responses": answer(_ref("Recording"))}},
        "/api/recordings/{rec_id}/media": {"get": {
            "operationId": "recording_media", "security": staff, "parameters": [rec_id],
            "summary": "The recording, decrypted as it streams (audited); WebM or Matroska.",
            "responses": answer({"type": "string", "format": "binary"}, "video/webm")}},
        "/api/recordings/{rec_id}/hold": {
            "post": {"operationId": "recording_hold", "security": staff,
                     "parameters": [rec_id], "summary": "Place a legal hold (kept past retention).",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": _ref("Hold")}}},
                     "responses": answer(_ref("Recording"))},
            "delete": {"operationId": "recording_release", "security": staff,
                       "parameters": [rec_id], "summary": "Release a legal hold.",
                       "responses": answer(_ref("Recording"))},
        },
    }


def openapi_document(server_url: str = "") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = dict(_recording_paths())
    for op in OPERATIONS:
        doc: dict[str, Any] = {"operationId": op.op_id, "summary": op.summary}
        if op.params:
            doc["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "schema": p.schema}
                for p in op.params
            ]
        if op.body:
            doc["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": _ref(op.body)}},
            }
        sec = [s for s in op.security if s in ("visitor", "staff")]
        if sec:
            doc["security"] = [{{"visitor": "visitorKey", "staff": "staffSession"}[s]: []}
                               for s in sec]
        ok_schema = _ref(op.response) if op.response else {"type": "object"}
        doc["responses"] = {
            str(op.status): {
                "description": "success",
                "content": {"application/json": {"schema": ok_schema}},
            },
            "4XX": {
                "description": "refused: the error code says why",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        }
        paths.setdefault(API_PREFIX + op.path, {})[op.method.lower()] = doc
    out: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "visitrelay booking API",
            "version": "1",
            "description": "Bookings, approvals and join tokens for prison video calls. "
            "Every error is {\"error\": {\"code\", \"message\"}} with a stable code.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "visitorKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The visitor's access key '<visitor id>.<secret>', "
                    "issued once at vetting.",
                },
                "staffSession": {"type": "apiKey", "in": "cookie", "name": "relay_staff"},
            },
        },
    }
    if server_url:
        out["servers"] = [{"url": server_url}]
    return out


# --------------------------------------------------------------------------- validation


class Invalid(ValueError):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    and math.isfinite(v),
}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def validate(schema: dict[str, Any], value: Any, where: str = "body") -> None:
    """Raise Invalid for the first violation found."""
    schema = _resolve(schema)
    if value is None and schema.get("nullable"):
        return
    kind = schema.get("type")
    if kind and not _TYPES[kind](value):
        raise Invalid(where, f"must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(where, f"must be one of {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise Invalid(where, f"must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise Invalid(where, f"must be <= {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise Invalid(where, f"must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise Invalid(where, f"must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise Invalid(where, "has the wrong format")
        if schema.get("format") == "date":
            try:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    raise ValueError(value)
                dt.date.fromisoformat(value)
            except ValueError:
                raise Invalid(where, "must be a date YYYY-MM-DD") from None
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise Invalid(where, f"needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise Invalid(where, f"takes at most {schema['maxItems']} items")
        if schema.get("uniqueItems"):
            seen = [repr(v) for v in value]
            if len(set(seen)) != len(seen):
                raise Invalid(where, "items must be unique")
        for i, item in enumerate(value):
            validate(schema.get("items", {}), item, f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise Invalid(f"{where}.{name}", "is required")
        for name, item in value.items():
            if name in props:
                validate(props[name], item, f"{where}.{name}")
            elif schema.get("additionalProperties", True) is False:
                raise Invalid(f"{where}.{str(name)[:40]}", "is not a known field")
