"""The API's request and response bodies, defined once (pydantic v2).

Request validation (``relay.web.api``) and the OpenAPI document (``relay.web.openapi``) are
both generated from these classes. Requests are strict (no coercion: ``"30"`` is not a
number, ``true`` is not an id) and refuse unknown fields. Responses are built from the
store's values (``Booking.model_validate(store_booking)``), so a field added to the store
and not here never leaks, and one missing here fails the contract test.

Vocabularies come from where they are defined: wire-level ones from ``protocol.vocabulary``,
record-level ones from ``relay.records.store.values``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from protocol.vocabulary import CallState, CallType, Role
from relay.records.store.values import (
    BookingStatus,
    CallOutcome,
    ContactStatus,
    RecordingStatus,
    Requester,
    StaffRole,
)

MAX_ID = 2**53 - 1
"""Ids are JSON-safe integers (and fit SQLite's INTEGER)."""
MAX_TIME = 32503680000.0  # year 3000
MAX_CALL_MINUTES = 24 * 60
"""A sanity bound only: the establishment's ``allowed_call_minutes`` decide (store rule)."""
MAX_PARTY = 16
MAX_REASON = 500


def parse_id(raw: str) -> int | None:
    """A positive id within range from a path or query string, or None. The one id parser:
    booking, contact, evidence and recording ids, and the visitor part of an access key."""
    if len(raw) > 16 or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def _unique(items: list[int]) -> list[int]:
    if len(set(items)) != len(items):
        raise ValueError("items must be unique")
    return items


def _iso_date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a date YYYY-MM-DD") from None
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Epoch = Annotated[
    float, Field(ge=0, le=MAX_TIME, allow_inf_nan=False, description="UTC epoch seconds")
]
Secret = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(max_length=MAX_REASON)]
PrisonerNumber = Annotated[str, Field(min_length=1, max_length=32)]
Minutes = Annotated[
    int,
    Field(ge=1, le=MAX_CALL_MINUTES,
          description="call length in minutes: one of the establishment's allowed_call_minutes"),
]
Party = Annotated[
    list[Id],
    Field(max_length=MAX_PARTY, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique),
]
IsoDate = Annotated[
    str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", json_schema_extra={"format": "date"}),
    AfterValidator(_iso_date),
]


class Request(BaseModel):
    """A request body: strict types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Query(BaseModel):
    """Query parameters: strings in, so types are converted (lax), no unknown fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Response(BaseModel):
    """A response body, built from the store's values or a dict."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)


# --------------------------------------------------------------------------- requests


class BookingRequest(Request):
    prisoner_number: PrisonerNumber
    call_type: CallType = "social"
    starts_at: Epoch
    minutes: Minutes
    main_visitor_id: Id | None = None
    visitor_ids: Party = []


class StaffBookingRequest(Request):
    """Staff book on a family's or legal representative's behalf (legal calls included)."""

    prisoner_number: PrisonerNumber
    call_type: CallType = "social"
    starts_at: Epoch
    minutes: Minutes
    main_visitor_id: Id
    visitor_ids: Party = []
    laptop_id: Id | None = None


class Cancel(Request):
    reason: Reason = ""


class Reschedule(Request):
    starts_at: Epoch
    minutes: Minutes


class LaptopTokenRequest(Request):
    laptop_id: Id
    laptop_secret: Secret
    booking_id: Id


class StaffLogin(Request):
    username: Annotated[str, Field(min_length=1, max_length=100)]
    password: Annotated[str, Field(min_length=1, max_length=200)]


class Approve(Request):
    laptop_id: Id | None = None


class Decline(Request):
    reason: Reason = ""


class Outcome(Request):
    outcome: CallOutcome
    reason: Reason = ""


class ContactRequest(Request):
    prisoner_id: Id
    visitor_id: Id


class VisitorRegistration(Request):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    date_of_birth: IsoDate
    identity_verified: bool


class CallNote(Request):
    note: Reason = ""


class Hold(Request):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON)]


# --------------------------------------------------------------------------- query parameters


class StaffBookingsQuery(Query):
    status: BookingStatus | None = None
    from_: Epoch | None = Field(default=None, alias="from")
    to: Epoch | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 200


class ContactsQuery(Query):
    prisoner_id: Id | None = None


class RecordingsQuery(Query):
    booking_id: Id | None = None


# --------------------------------------------------------------------------- responses


class ErrorBody(Response):
    code: str
    message: str


class Error(Response):
    error: ErrorBody


class Booking(Response):
    """The one public shape of a booking: the store's ``Booking`` value, field for field."""

    id: Id
    establishment_id: Id
    prisoner_id: Id
    prisoner_number: str
    call_type: CallType
    starts_at: Epoch
    ends_at: Epoch
    minutes: int
    status: BookingStatus
    requested_by: Requester
    main_visitor_id: Id
    visitor_ids: list[Id]
    laptop_id: Id | None
    reason: str


class BookingList(Response):
    bookings: list[Booking]


class JoinToken(Response):
    token: str
    booking_id: Id
    role: Role
    participant: str
    nbf: Epoch
    exp: Epoch
    join_url: str = Field(default="", description="the family's link to the call page")


class Staff(Response):
    id: Id
    username: str
    role: StaffRole
    establishment_id: Id


class Ok(Response):
    ok: bool


class IdentityStatus(Response):
    """One side's check before the call, as the call row shows it (relay/calls/identity_state.py)."""

    status: Literal["checking", "matched", "admitted", "not_checked", "needs_staff"]
    checks: Annotated[int, Field(ge=0)]
    failures: Annotated[int, Field(ge=0)]
    finding: str | None = Field(description="the joining page's guidance, e.g. come_closer")
    alerted: bool = Field(description="staff were alerted to admit the side by hand")


class CallStatus(Response):
    booking_id: Id
    state: CallState
    reason: str
    pause_reasons: list[str]
    awaiting_staff: bool
    call_type: CallType
    starts_at: Epoch
    ends_at: Epoch
    seconds_left: Annotated[int, Field(ge=0)]
    legs: list[str]
    watchers: Annotated[int, Field(ge=0)]
    faces: dict[str, int]
    approved_faces: dict[str, int]
    alerts: Annotated[int, Field(ge=0)]
    quality: dict[str, LinkQuality] = Field(
        default_factory=dict, description="each party leg's link (issue 17)"
    )
    media_stalled: list[str] = Field(
        default=[], description='party streams that stopped arriving, e.g. "family:video"')
    identity: dict[str, IdentityStatus] = Field(
        default_factory=dict, description="each party side's check before the call")
    vision_behind: list[str] = Field(
        default=[], description="party sides whose face checks are falling behind (issue 20)")


class CallList(Response):
    calls: list[CallStatus]
    vision_refusing: str = Field(
        default="", description="why this node refuses new calls for vision capacity, or empty")


class AuditRecord(Response):
    id: Id
    at: Epoch
    kind: str
    actor: str
    detail: dict[str, Any]
    evidence_id: Id | None


class AuditList(Response):
    records: list[AuditRecord]


class EvidenceFrame(Response):
    id: Id
    booking_id: Id
    jpeg_base64: str
    boxes: list[list[float]]


class Contact(Response):
    id: Id
    prisoner_id: Id
    visitor_id: Id
    status: ContactStatus
    approved_by: Id | None
    approved_at: Epoch
    revoked_by: Id | None
    revoked_at: Epoch | None


class ContactList(Response):
    contacts: list[Contact]


class Revoked(Response):
    contact: Contact
    cancelled_booking_ids: list[Id]


class VisitorCreated(Response):
    visitor_id: Id
    access_key: str = Field(
        description="shown once; the app sends it as 'Authorization: Bearer <key>'"
    )


class Prisoner(Response):
    id: Id
    number: str
    name: str
    video_call_eligible: bool


class PrisonerList(Response):
    prisoners: list[Prisoner]


class Recording(Response):
    """What staff see of a recording: everything but where its file lies."""

    id: Id
    booking_id: Id
    establishment_id: Id
    media_type: str
    started_at: Epoch
    ended_at: Epoch | None
    size: int | None
    sha256: str | None
    retention_until: Epoch
    legal_hold: bool
    hold_reason: str | None
    hold_by: str | None
    hold_at: Epoch | None
    status: RecordingStatus
    deleted_at: Epoch | None
    complete: bool
    segment: int = Field(1, ge=1, description="1, 2, ... within the booking: a call continued "
                         "on another node (its node was lost) is a new segment")


class RecordingList(Response):
    recordings: list[Recording]


# --------------------------------------------------------------------------- identity (relay/web/identity_api.py)

FaceSubject = Literal["visitor", "prisoner"]


class FaceEnrolment(Response):
    """Whether a person's face is enrolled; the descriptor and photo never leave the relay."""

    kind: FaceSubject
    subject_id: Id
    enrolled: bool
    enrolled_at: Epoch | None = None
    enrolled_by: str | None = None
    retention_until: Epoch | None = None
    face_px: int | None = None
    sharpness: float | None = None
    brightness: float | None = None


class LinkQuality(Response):
    """One leg's link, from RTCP once a second (relay/media/bandwidth.py)."""

    grade: str = Field(pattern="^(good|fair|poor)$")
    loss_up: Annotated[float, Field(ge=0, le=1)]
    loss_down: Annotated[float, Field(ge=0, le=1)]
    rtt_ms: int | None
    jitter_ms: Annotated[float, Field(ge=0)]
    bandwidth_kbps: int | None = Field(description="the leg's downlink estimate (its REMB)")

# --------------------------------------------------------------------------- family accounts

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=254,
                      pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    Field(json_schema_extra={"format": "email"}),
]
Password = Annotated[
    str, Field(min_length=10, max_length=200, description="at least 10 characters")
]
PersonName = Annotated[str, Field(min_length=1, max_length=200)]
Language = Literal["en", "cy"]
EmailToken = Annotated[str, Field(min_length=20, max_length=200)]
ShortText = Annotated[str, Field(min_length=1, max_length=100)]
Address = Annotated[str, Field(min_length=5, max_length=500)]


class FamilyRegister(Request):
    email: Email
    password: Password
    name: PersonName
    date_of_birth: IsoDate
    language: Language = "en"


class FamilyLogin(Request):
    email: Annotated[str, Field(min_length=1, max_length=254)]
    password: Annotated[str, Field(min_length=1, max_length=200)]


class FamilyToken(Request):
    token: EmailToken


class ResetRequest(Request):
    email: Annotated[str, Field(min_length=1, max_length=254)]


class PasswordReset(Request):
    token: EmailToken
    password: Password


class SetLanguage(Request):
    language: Language


class HouseholdChild(Request):
    name: PersonName
    date_of_birth: IsoDate
    relationship: ShortText


class Accepted(Response):
    ok: bool
    message: str


class HouseholdMember(Response):
    visitor_id: Id
    name: str
    date_of_birth: str
    relationship: str
    identity_verified: bool


class FamilyMe(Response):
    email: str
    email_verified: bool
    visitor_id: Id
    name: str
    date_of_birth: str
    identity_verified: bool
    language: Language
    household: list[HouseholdMember]
    join_opens_before_s: float = Field(
        description="how long before a call starts its Join button opens (the waiting room)"
    )


class FamilyContact(Response):
    """One approval the family holds: whom, for which of them, and its status."""

    prisoner_id: Id
    prisoner_number: str
    prisoner_name: str
    visitor_id: Id
    status: ContactStatus


class FamilyContactList(Response):
    contacts: list[FamilyContact]


# --------------------------------------------------------------------------- vetting

ApplicationStatus = Literal["draft", "submitted", "approved", "declined"]


class ApplicationRequest(Request):
    prisoner_number: PrisonerNumber
    prisoner_name: Annotated[
        str, Field(min_length=1, max_length=200,
                   description="the prisoner's name as the family knows it (surname checked)")
    ]
    relationship: ShortText
    date_of_birth: IsoDate
    address: Address
    member_ids: Party = Field(
        default=[], description="household children to be approved with the applicant"
    )


class Application(Response):
    """What the applicant sees of their application (no photos, ever)."""

    id: Id
    prisoner_id: Id
    prisoner_number: str
    prisoner_name: str
    relationship: str
    status: ApplicationStatus
    reason: str
    created_at: Epoch
    submitted_at: Epoch | None
    decided_at: Epoch | None
    member_ids: list[Id]
    photos: list[str]


class ApplicationList(Response):
    applications: list[Application]


class VettingPerson(Response):
    visitor_id: Id
    name: str
    date_of_birth: str


class VettingApplication(Application):
    """What staff of the prisoner's establishment see."""

    date_of_birth: str
    address: str
    applicant: VettingPerson
    members: list[VettingPerson]
    existing_contacts: list[VettingPerson]
    face_enrolment: str | None = Field(
        default=None,
        description="after an approval: 'enrolled' when the face photo became the applicant's "
        "identity reference, else why it could not (docs/identity.md)",
    )


class VettingQueue(Response):
    applications: list[VettingApplication]


class VettingQueueQuery(Query):
    status: ApplicationStatus = "submitted"


class VettingDecision(Request):
    decision: Literal["approve", "decline"]
    reason: Reason = ""


class PhotoQuery(Query):
    kind: Literal["identity", "face"]


class ConsentRequest(Request):
    email: Annotated[
        str, Field(min_length=1, max_length=254,
                   description="the account holder whose calls you agree to come on")
    ]
# --------------------------------------------------------------------------- the laptop page

EnrolmentCode = Annotated[str, Field(min_length=4, max_length=20)]
DeviceKey = Annotated[str, Field(min_length=3, max_length=200)]


class LaptopEnrol(Request):
    code: EnrolmentCode


class LaptopDevice(Request):
    device_key: DeviceKey


class LaptopJoin(Request):
    device_key: DeviceKey
    booking_id: Id


class LaptopInfo(Response):
    id: Id
    label: str
    room: str


class LaptopEnrolled(Response):
    laptop: LaptopInfo
    device_key: str = Field(description="kept by the laptop's browser; shown only this once")


class LaptopCall(Response):
    booking_id: Id
    call_type: CallType
    starts_at: Epoch
    ends_at: Epoch
    status: BookingStatus
    visitors: list[str]


class LaptopToday(Response):
    laptop: LaptopInfo
    now: Epoch
    waiting_room_s: float = Field(description="how long before a call its waiting room opens")
    calls: list[LaptopCall]


class StaffLaptop(Response):
    id: Id
    label: str
    room: str
    device_keys: Annotated[int, Field(ge=0)]
    enrolled_at: Epoch | None


class StaffLaptopList(Response):
    laptops: list[StaffLaptop]


class LaptopEnrolment(Response):
    laptop_id: Id
    code: str = Field(description="one-time, typed on the laptop page; shown only this once")
    expires_at: Epoch


class LaptopRevoked(Response):
    laptop_id: Id
    revoked_keys: Annotated[int, Field(ge=0)]
    ended_booking_ids: list[Id]


# --------------------------------------------------------------------------- staff messages

MAX_STAFF_MESSAGE = 300


class CallMessage(Request):
    text: Annotated[str, Field(min_length=1, max_length=MAX_STAFF_MESSAGE,
                               description="shown on both sides of the call until dismissed")]


# --------------------------------------------------------------------------- the kiosk (laptop page)

Pin = Annotated[str, Field(pattern=r"^[0-9]{4,8}$", description="4 to 8 digits")]
KioskSessionToken = Annotated[str, Field(min_length=10, max_length=200)]


class KioskSignIn(Request):
    device_key: DeviceKey
    prisoner_number: PrisonerNumber
    pin: Annotated[str, Field(min_length=1, max_length=20)]


class KioskAsk(Request):
    device_key: DeviceKey
    session: KioskSessionToken


class KioskSlotsAsk(KioskAsk):
    minutes: Minutes


class KioskCallRequest(KioskAsk):
    visitor_id: Id
    starts_at: Epoch
    minutes: Minutes


class KioskPrisoner(Response):
    number: str
    name: str


class KioskSignedIn(Response):
    session: str
    expires_at: Epoch
    prisoner: KioskPrisoner


class KioskContact(Response):
    visitor_id: Id
    name: str


class KioskBooking(Response):
    booking_id: Id
    status: BookingStatus
    starts_at: Epoch
    ends_at: Epoch
    visitors: list[str]


class KioskHome(Response):
    prisoner: KioskPrisoner
    contacts: list[KioskContact]
    call_minutes: list[int]
    requests: list[KioskBooking]


class KioskSlot(Response):
    starts_at: Epoch
    ends_at: Epoch


class KioskSlots(Response):
    minutes: int
    slots: list[KioskSlot]


class StaffPin(Request):
    pin: Pin


class PinStatus(Response):
    prisoner_id: Id
    has_pin: bool
    locked: bool
    failures: Annotated[int, Field(ge=0)]


# --------------------------------------------------------------------------- the family call page

class JoinPreviewAsk(Request):
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class JoinPreview(Response):
    booking_id: Id
    call_type: CallType
    with_name: str = Field(description="who the call is with (the prisoner)")
    starts_at: Epoch
    ends_at: Epoch
    opens_at: Epoch = Field(description="when the waiting room opens (the token's not-before)")
    now: Epoch


# --------------------------------------------------------------------------- the check before the call


class IdentityFace(Response):
    name: str | None = Field(description="the enrolled person it matched; null: nobody")
    matched: bool
    distance: float | None = Field(description="descriptor distance to the closest enrolled person")
    box: list[float]


class IdentitySide(Response):
    role: Literal["family", "prison"]
    status: IdentityStatus | None = Field(description="the check before the call; null: none")
    admitted_by: str | None = None
    faces: list[IdentityFace] = Field(description="the latest check's faces (re-check in the call)")
    threshold: float
    evidence_jpeg_base64: str | None = Field(
        description="the last check's frame before the call (admins; never on legal calls)")
    evidence_withheld: str | None = None


class CallIdentity(Response):
    booking_id: Id
    call_type: CallType
    sides: list[IdentitySide]



# --------------------------------------------------------------------------- identity settings


class IdentitySettingsIn(Request):
    unenrolled_needs_staff: bool | None = Field(
        description="a side with nobody enrolled waits for staff to admit it; null: the "
        "relay's default (RELAY_IDENTITY_UNENROLLED_NEEDS_STAFF) again"
    )


class IdentitySettings(Response):
    establishment_id: Id
    unenrolled_needs_staff: bool = Field(description="in force for the next call that joins")
    set_here: bool = Field(description="the establishment chose it; false: the relay's default")
    relay_default: bool
# --------------------------------------------------------------------------- erasure (relay/web/erasure_api.py)

from relay.records.erasure import PrisonerReason, VisitorReason  # noqa: E402 (appended section)


class DeleteAccount(Request):
    password: Annotated[str, Field(min_length=1, max_length=200)]
    confirm: Literal[True] = Field(
        description="true: the person ticked that they understand it cannot be undone")


class EraseVisitor(Request):
    reason: VisitorReason
    confirm: Literal[True] = Field(description="true: the admin confirmed the erasure")


class ErasePrisoner(Request):
    reason: PrisonerReason
    confirm: Literal[True] = Field(description="true: the admin confirmed the erasure")


class Erased(Response):
    ok: bool
    message: str
    visitor_ids: list[Id] = Field(description="visitor records reduced to stubs (ids)")
    prisoner_id: Id | None = None
    bookings_stopped: list[Id] = Field(description="coming bookings cancelled or ended early")
    bookings_reduced: list[Id] = Field(description="bookings that go on without the visitor")
    applications: list[Id] = Field(description="vetting applications withdrawn or cleared")
    faces_forgotten: int
