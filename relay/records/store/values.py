"""The store's values: what its methods take and return, and its refusals."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Literal, get_args

from protocol.vocabulary import CALL_TYPES, CallType  # noqa: F401 (CALL_TYPES re-exported)
from relay.records.store.engine import Row

BookingStatus = Literal["requested", "approved", "declined", "cancelled", "completed", "failed"]
BOOKING_STATUSES: tuple[str, ...] = get_args(BookingStatus)
StaffRole = Literal["officer", "admin"]
"""In rising order of privilege: an operation allowed to a role is allowed to those after it."""
STAFF_ROLES: tuple[str, ...] = get_args(StaffRole)
Requester = Literal["family", "prisoner", "staff"]
REQUESTERS: tuple[str, ...] = get_args(Requester)
ContactStatus = Literal["approved", "revoked"]
CallOutcome = Literal["completed", "failed"]
RecordingStatus = Literal["recording", "complete", "interrupted", "failed", "deleted"]

SESSION_IDLE_S = 30 * 60
"""A staff session ends after this long without a request..."""
SESSION_MAX_S = 10 * 3600
"""...and in any case this long after logging in (one shift)."""


@dataclass(frozen=True)
class EstablishmentPolicy:
    establishment_id: int
    name: str
    call_minutes: int = 30
    allowed_call_minutes: tuple[int, ...] = (30, 60)
    monthly_allowance_minutes: int = 60
    max_visitors: int = 4
    min_main_visitor_age: int = 18
    record_social: bool = True
    retention_days: int = 90
    staff_must_resume: bool = False
    capacity: int = 0
    """Active laptops/rooms: how many calls may overlap."""
    unenrolled_needs_staff: bool | None = None
    """A side with nobody enrolled waits for staff to admit it (docs/identity.md); None: the
    establishment never set it, the relay's ``identity_unenrolled_needs_staff`` decides."""


def policy_defaults() -> dict[str, object]:
    """The defaults of every configurable policy field: the one place they are written is
    ``EstablishmentPolicy`` above (``create_establishment`` and the seed read them here)."""
    computed = {"establishment_id", "name", "capacity"}
    return {f.name: f.default for f in fields(EstablishmentPolicy) if f.name not in computed}


@dataclass(frozen=True)
class Booking:
    id: int
    establishment_id: int
    prisoner_id: int
    prisoner_number: str
    call_type: CallType
    starts_at: float
    ends_at: float
    status: BookingStatus
    requested_by: Requester
    main_visitor_id: int
    visitor_ids: tuple[int, ...]
    laptop_id: int | None
    reason: str

    @property
    def minutes(self) -> int:
        return round((self.ends_at - self.starts_at) / 60)


@dataclass(frozen=True)
class Staff:
    id: int
    establishment_id: int
    username: str
    role: StaffRole


@dataclass(frozen=True)
class Laptop:
    id: int
    establishment_id: int
    label: str
    room: str


@dataclass(frozen=True)
class Visitor:
    id: int
    name: str
    date_of_birth: str
    identity_verified: bool


@dataclass(frozen=True)
class Contact:
    id: int
    prisoner_id: int
    visitor_id: int
    status: ContactStatus
    approved_by: int | None
    approved_at: float
    revoked_by: int | None
    revoked_at: float | None


@dataclass(frozen=True)
class Admission:
    booking_id: int
    establishment_id: int
    call_type: CallType
    starts_at: float
    ends_at: float
    role: str
    participant: str
    display_name: str
    approved_faces: int  # family leg: visitors on the booking; prison: 1; watcher: 0
    policy: EstablishmentPolicy
    session_ref: str = ""
    """A watcher's staff session (``auth.session_ref``): logging out closes the watcher."""


class StoreError(Exception):
    """A refused request. ``code`` is stable; the API maps it to an HTTP status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AdmissionRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def month_bounds(ts: float) -> tuple[float, float]:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    start = dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC)
    nxt = dt.datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start.timestamp(), nxt.timestamp()


def age_on(date_of_birth: str, ts: float) -> int:
    born = dt.date.fromisoformat(date_of_birth)
    on = dt.datetime.fromtimestamp(ts, dt.UTC).date()
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _contact(r: Row) -> Contact:
    return Contact(
        id=r["id"],
        prisoner_id=r["prisoner_id"],
        visitor_id=r["visitor_id"],
        status=r["status"],
        approved_by=r["approved_by"],
        approved_at=r["approved_at"],
        revoked_by=r["revoked_by"],
        revoked_at=r["revoked_at"],
    )


def _actor(staff_id: int | None) -> str:
    return "system" if staff_id is None else f"staff:{staff_id}"
