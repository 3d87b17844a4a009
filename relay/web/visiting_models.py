"""Request and response bodies of visiting hours, free slots and staff administration
(relay/web/visiting_api.py, relay/web/staff_admin_api.py). Same rules as relay/web/models.py:
strict requests, no unknown fields, responses built from the store's values."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from relay.web.models import (
    Epoch,
    Id,
    IsoDate,
    Minutes,
    PrisonerNumber,
    Query,
    Reason,
    Request,
    Response,
)

HHMM = Annotated[
    str,
    Field(
        pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$",
        description="local time HH:MM; 24:00 ends a day",
    ),
]
Weekday = Annotated[int, Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")]
Rooms = Annotated[
    int, Field(ge=0, le=1000, description="calls at once in this session; 0 = one per laptop")
]
MAX_SLOTS = 1000
DEFAULT_SLOTS = 200
Name = Annotated[str, Field(min_length=1, max_length=200)]


# --------------------------------------------------------------------------- requests


class VisitingSessionIn(Request):
    weekday: Weekday
    starts: HHMM
    ends: HHMM
    rooms: Rooms = 0


class BlackoutIn(Request):
    date: IsoDate
    reason: Reason = ""


class VisitingHoursIn(Request):
    """The establishment's whole timetable, replaced at once."""

    timezone: Annotated[str, Field(min_length=1, max_length=64, description="IANA time zone")]
    booking_window_days: Annotated[int, Field(ge=1, le=366)]
    notice_hours: Annotated[int, Field(ge=0, le=336)]
    sessions: Annotated[list[VisitingSessionIn], Field(max_length=100)]
    blackout_dates: Annotated[list[BlackoutIn], Field(max_length=400)] = []


class SlotsQuery(Query):
    prisoner_id: Id
    minutes: Minutes
    limit: Annotated[int, Field(ge=1, le=MAX_SLOTS, description="the earliest this many")] = (
        DEFAULT_SLOTS
    )


class VisitorSearchQuery(Query):
    q: Annotated[str, Field(min_length=1, max_length=100, description="part of a name")]


class PrisonerIn(Request):
    number: PrisonerNumber
    name: Name
    video_call_eligible: bool = True


class EligibilityIn(Request):
    video_call_eligible: bool


# --------------------------------------------------------------------------- responses


class VisitingSession(Response):
    weekday: Weekday
    starts: str
    ends: str
    rooms: int


class BlackoutDate(Response):
    date: str
    reason: str


class VisitingHours(Response):
    establishment_id: Id
    timezone: str
    booking_window_days: int
    notice_hours: int
    allowed_call_minutes: list[int]
    sessions: list[VisitingSession]
    blackout_dates: list[BlackoutDate]


class Slot(Response):
    starts_at: Epoch
    ends_at: Epoch
    local_start: str = Field(description="ISO 8601 local time with its UTC offset")
    laptop_id: Id | None


class Allowance(Response):
    """The prisoner's social-call minutes this local month."""

    limit: int
    used: int = Field(description="approved or completed")
    pending: int = Field(description="requested, waiting for staff")


class SlotList(Response):
    timezone: str
    minutes: int
    slots: list[Slot]
    more: bool = Field(description="more free slots follow the last one listed")
    allowance: Allowance


class NamedPrisoner(Response):
    id: Id
    number: str
    name: str
    video_call_eligible: bool


class NamedVisitor(Response):
    id: Id
    name: str


class NamedStaff(Response):
    id: Id
    username: str


class Directory(Response):
    """Names for the ids the console shows: the establishment's prisoners, the visitors
    linked to them (approved or revoked), and its staff."""

    prisoners: list[NamedPrisoner]
    visitors: list[NamedVisitor]
    staff: list[NamedStaff]


class VisitorContact(Response):
    contact_id: Id
    prisoner_id: Id
    prisoner_name: str
    prisoner_number: str
    status: str


class FoundVisitor(Response):
    id: Id
    name: str
    date_of_birth: str
    identity_verified: bool
    contacts: list[VisitorContact]


class VisitorSearch(Response):
    visitors: list[FoundVisitor]
