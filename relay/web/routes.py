"""The route table: every HTTP operation of the API in one place (method, path, operation id,
who may call it, body, query and response models, success status).

``relay.web.api`` mounts the ``/api/v1`` operations and ``relay.records.recordings`` the
``/api/recordings`` ones from this table; both check the staff role here
(``role_allows``), and ``relay.web.openapi`` describes every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from relay.records.store.values import STAFF_ROLES, StaffRole
from relay.web import models as m
from relay.web import visiting_models as vm

API_PREFIX = "/api/v1"
RECORDINGS_PREFIX = "/api"
IDENTITY_PREFIX = "/api/identity"
"""Face enrolment: the upload body is the photo (JPEG or PNG), not JSON, so these routes sit
beside /api/v1 like the recordings ones."""

Security = Literal["visitor", "staff", "laptop", "family"]
"""visitor: bearer access key; staff: session cookie; laptop: credentials in the body;
family: the family account's session cookie."""


@dataclass(frozen=True)
class Op:
    op_id: str
    method: str
    path: str  # under ``prefix``, aiohttp style "{booking_id}"
    summary: str
    security: tuple[Security, ...]
    response: type[BaseModel] | None  # None: a free-form object (this document)
    status: int = 200
    body: type[m.Request] | None = None
    body_required: bool = True
    query: type[m.Query] | None = None
    staff_role: StaffRole = "officer"  # the lowest staff role allowed
    prefix: str = API_PREFIX
    media_type: str = "application/json"  # of the success response

    @property
    def full_path(self) -> str:
        return self.prefix + self.path

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(part[1:-1] for part in self.path.split("/") if part.startswith("{"))


def role_allows(required: StaffRole, role: object) -> bool:
    """Whether a staff member of ``role`` may do what needs ``required`` (roles are ranked)."""
    return role in STAFF_ROLES and STAFF_ROLES.index(role) >= STAFF_ROLES.index(required)


_V: tuple[Security, ...] = ("visitor",)
_S: tuple[Security, ...] = ("staff",)
_L: tuple[Security, ...] = ("laptop",)
_VS: tuple[Security, ...] = ("visitor", "staff")

OPERATIONS: tuple[Op, ...] = (
    Op("openapi", "GET", "/openapi.json", "This document.", (), None),
    Op("request_booking", "POST", "/bookings",
       "A family member requests a social call slot (legal calls are booked by staff).",
       _V, m.Booking, 201, m.BookingRequest),
    Op("my_bookings", "GET", "/bookings", "The calling visitor's bookings.", _V, m.BookingList),
    Op("get_booking", "GET", "/bookings/{booking_id}",
       "One booking (a visitor on it, or staff of its establishment).", _VS, m.Booking),
    Op("cancel_booking", "POST", "/bookings/{booking_id}/cancel",
       "Cancel (the main visitor, or staff of the establishment).",
       _VS, m.Booking, body=m.Cancel, body_required=False),
    Op("reschedule_booking", "POST", "/bookings/{booking_id}/reschedule",
       "Move a booking that has not started; every rule is checked again. A visitor's "
       "change goes back to staff for approval; staff keep it approved.",
       _VS, m.Booking, body=m.Reschedule),
    Op("family_join_token", "POST", "/bookings/{booking_id}/join-token",
       "The calling visitor's join link for an approved booking.", _V, m.JoinToken),
    Op("laptop_token", "POST", "/laptop/token",
       "The prison laptop exchanges its credentials for the prison token of a booking "
       "assigned to it.", _L, m.JoinToken, body=m.LaptopTokenRequest),
    Op("staff_login", "POST", "/staff/login",
       "Staff log in; sets the HttpOnly, SameSite=Strict session cookie 'relay_staff'.",
       (), m.Staff, body=m.StaffLogin),
    Op("staff_logout", "POST", "/staff/logout", "End the staff session.", (), m.Ok),
    Op("staff_me", "GET", "/staff/me", "Who is logged in.", _S, m.Staff),
    Op("staff_bookings", "GET", "/staff/bookings",
       "Bookings of the staff member's establishment.", _S, m.BookingList,
       query=m.StaffBookingsQuery),
    Op("staff_book", "POST", "/staff/bookings",
       "Staff book a call (social or legal) on behalf of a family or legal representative; "
       "every rule is checked and the booking is approved at once (docs/booking.md).",
       _S, m.Booking, 201, m.StaffBookingRequest),
    Op("staff_approve", "POST", "/staff/bookings/{booking_id}/approve",
       "Approve a requested booking (every rule re-checked; a laptop assigned).",
       _S, m.Booking, body=m.Approve, body_required=False),
    Op("staff_decline", "POST", "/staff/bookings/{booking_id}/decline",
       "Decline a requested booking.", _S, m.Booking, body=m.Decline, body_required=False),
    Op("staff_outcome", "POST", "/staff/bookings/{booking_id}/outcome",
       "Record how a call ended; 'failed' (technical) gives the allowance back.",
       _S, m.Booking, body=m.Outcome),
    Op("staff_watch_token", "POST", "/staff/bookings/{booking_id}/watch-token",
       "A watcher token for a call of the staff member's establishment.", _S, m.JoinToken),
    Op("staff_prisoners", "GET", "/staff/prisoners", "Prisoners of the establishment.",
       _S, m.PrisonerList),
    Op("staff_contacts", "GET", "/staff/contacts", "Approved contacts in the establishment.",
       _S, m.ContactList, query=m.ContactsQuery),
    Op("staff_approve_contact", "POST", "/staff/contacts",
       "Approve a visitor as a prisoner's contact (admin).", _S, m.Contact, 201,
       m.ContactRequest, staff_role="admin"),
    Op("staff_revoke_contact", "POST", "/staff/contacts/{contact_id}/revoke",
       "Revoke an approval: the visitor's coming bookings with that prisoner are cancelled "
       "and their tokens stop working at once.", _S, m.Revoked),
    Op("staff_calls", "GET", "/staff/calls",
       "Live calls of the staff member's establishment: state, time left, faces, alerts.",
       _S, m.CallList),
    Op("staff_call_pause", "POST", "/staff/calls/{booking_id}/pause",
       "Pause a live call: no media reaches either side until it is resumed.",
       _S, m.CallStatus, body=m.CallNote, body_required=False),
    Op("staff_call_resume", "POST", "/staff/calls/{booking_id}/resume",
       "Resume a call paused by staff (or by vision, where staff must resume).",
       _S, m.CallStatus),
    Op("staff_call_end", "POST", "/staff/calls/{booking_id}/end",
       "End a call now; both sides are told why.", _S, m.CallStatus),
    Op("staff_call_audit", "GET", "/staff/calls/{booking_id}/audit",
       "The call's audit timeline (joins, state changes, vision decisions, staff actions).",
       _S, m.AuditList),
    Op("staff_evidence", "GET", "/staff/evidence/{evidence_id}",
       "An evidence frame (JPEG, boxes) kept with a vision pause.", _S, m.EvidenceFrame),
    Op("staff_register_visitor", "POST", "/staff/visitors",
       "Register a vetted visitor (admin); returns their app access key once.",
       _S, m.VisitorCreated, 201, m.VisitorRegistration, staff_role="admin"),
    # recordings (relay/records/recordings.py): every access and refusal is audited
    Op("recordings_list", "GET", "/recordings",
       "Recordings of the staff member's establishment (each listing is audited).",
       _S, m.RecordingList, query=m.RecordingsQuery, prefix=RECORDINGS_PREFIX),
    Op("recording_get", "GET", "/recordings/{rec_id}", "One recording's record.",
       _S, m.Recording, prefix=RECORDINGS_PREFIX),
    Op("recording_media", "GET", "/recordings/{rec_id}/media",
       "The recording, decrypted as it streams (audited); WebM or Matroska.",
       _S, None, prefix=RECORDINGS_PREFIX, media_type="video/webm"),
    Op("recording_hold", "POST", "/recordings/{rec_id}/hold",
       "Place a legal hold (kept past retention).", _S, m.Recording, body=m.Hold,
       prefix=RECORDINGS_PREFIX),
    Op("recording_release", "DELETE", "/recordings/{rec_id}/hold",
       "Release a legal hold (admin).", _S, m.Recording, staff_role="admin",
       prefix=RECORDINGS_PREFIX),
    # visiting hours and free slots (relay/web/visiting_api.py)
    Op("family_slots", "GET", "/family/slots",
       "Free slots of a prisoner the visitor is an approved contact of, with the allowance "
       "left this month (pending requests count).", _V, vm.SlotList, query=vm.SlotsQuery),
    Op("staff_slots", "GET", "/staff/slots",
       "Free slots of a prisoner of the staff member's establishment.", _S, vm.SlotList,
       query=vm.SlotsQuery),
    Op("staff_visiting_hours", "GET", "/staff/visiting-hours",
       "The establishment's visiting hours: time zone, weekly sessions, blackout dates, "
       "booking window and notice.", _S, vm.VisitingHours),
    Op("staff_set_visiting_hours", "PUT", "/staff/visiting-hours",
       "Replace the establishment's visiting hours (admin; audited).", _S, vm.VisitingHours,
       body=vm.VisitingHoursIn, staff_role="admin"),
    # staff administration (relay/web/staff_admin_api.py)
    Op("staff_directory", "GET", "/staff/directory",
       "Names behind the ids: the establishment's prisoners, their visitors and its staff.",
       _S, vm.Directory),
    Op("staff_search_visitors", "GET", "/staff/visitors",
       "Visitors linked to the establishment whose name contains q, with their approvals.",
       _S, vm.VisitorSearch, query=vm.VisitorSearchQuery),
    Op("staff_add_prisoner", "POST", "/staff/prisoners", "Add a prisoner (admin; audited).",
       _S, vm.NamedPrisoner, 201, vm.PrisonerIn, staff_role="admin"),
    Op("staff_prisoner_eligibility", "POST", "/staff/prisoners/{prisoner_id}/eligibility",
       "Allow or stop a prisoner's video calls (admin; audited).", _S, vm.NamedPrisoner,
       body=vm.EligibilityIn, staff_role="admin"),
    # face enrolment (relay/web/identity_api.py): the PUT body is the photo itself
    Op("identity_visitor_face_put", "PUT", "/visitors/{visitor_id}/face",
       "Enrol a vetted visitor's face from a photo (body: the JPEG or PNG itself; admin). "
       "Refused with a reason (422) when it has no face, several, or one too small, blurred "
       "or dark. Audited.", _S, m.FaceEnrolment, 201, staff_role="admin",
       prefix=IDENTITY_PREFIX),
    Op("identity_visitor_face_get", "GET", "/visitors/{visitor_id}/face",
       "Whether a visitor's face is enrolled (audited).", _S, m.FaceEnrolment,
       prefix=IDENTITY_PREFIX),
    Op("identity_visitor_face_delete", "DELETE", "/visitors/{visitor_id}/face",
       "Delete a visitor's face descriptor and photo (admin; audited).", _S, m.FaceEnrolment,
       staff_role="admin", prefix=IDENTITY_PREFIX),
    Op("identity_prisoner_face_put", "PUT", "/prisoners/{prisoner_id}/face",
       "Enrol a prisoner's face from a photo (body: the JPEG or PNG itself). Audited.",
       _S, m.FaceEnrolment, 201, prefix=IDENTITY_PREFIX),
    Op("identity_prisoner_face_get", "GET", "/prisoners/{prisoner_id}/face",
       "Whether a prisoner's face is enrolled (audited).", _S, m.FaceEnrolment,
       prefix=IDENTITY_PREFIX),
    Op("identity_prisoner_face_delete", "DELETE", "/prisoners/{prisoner_id}/face",
       "Delete a prisoner's face descriptor and photo (admin; audited).", _S,
       m.FaceEnrolment, staff_role="admin", prefix=IDENTITY_PREFIX),
    # the laptop page (relay/web/laptop_api.py): enrolment, device key, today's calls
    Op("laptop_enrol", "POST", "/laptop/enrol",
       "The laptop page exchanges a one-time enrolment code for its device key.",
       _L, m.LaptopEnrolled, body=m.LaptopEnrol),
    Op("laptop_today", "POST", "/laptop/today",
       "Today's calls booked on the laptop holding this device key.",
       _L, m.LaptopToday, body=m.LaptopDevice),
    Op("laptop_join_token", "POST", "/laptop/join-token",
       "The prison token of a booking on the laptop holding this device key.",
       _L, m.JoinToken, body=m.LaptopJoin),
    Op("staff_laptops", "GET", "/staff/laptops",
       "The establishment's laptops and their device keys in force.", _S, m.StaffLaptopList),
    Op("staff_laptop_enrol", "POST", "/staff/laptops/{laptop_id}/enrol",
       "A one-time enrolment code for a laptop (admin); audited.",
       _S, m.LaptopEnrolment, staff_role="admin"),
    # the kiosk on the laptop page (relay/web/kiosk_api.py): prisoner number + PIN
    Op("kiosk_sign_in", "POST", "/kiosk/sign-in",
       "A prisoner signs in on the laptop page with their number and PIN; wrong PINs lock "
       "after kiosk_pin_tries (audited).", _L, m.KioskSignedIn, body=m.KioskSignIn),
    Op("kiosk_home", "POST", "/kiosk/home",
       "The signed-in prisoner's approved contacts and own pending call requests.",
       _L, m.KioskHome, body=m.KioskAsk),
    Op("kiosk_slots", "POST", "/kiosk/slots",
       "Free slots for a call of this length (visiting hours, free laptops, allowance).",
       _L, m.KioskSlots, body=m.KioskSlotsAsk),
    Op("kiosk_request", "POST", "/kiosk/requests",
       "Request a call with an approved contact in a free slot (staff approve it).",
       _L, m.Booking, 201, m.KioskCallRequest),
    Op("kiosk_cancel", "POST", "/kiosk/requests/{booking_id}/cancel",
       "Cancel one of the prisoner's own pending requests.", _L, m.Booking, body=m.KioskAsk),
    Op("staff_set_pin", "POST", "/staff/prisoners/{prisoner_id}/pin",
       "Set a prisoner's kiosk PIN (admin); lifts a lock; audited.",
       _S, m.PinStatus, body=m.StaffPin, staff_role="admin"),
    Op("staff_unlock_pin", "POST", "/staff/prisoners/{prisoner_id}/pin/unlock",
       "Lift a prisoner's kiosk lock after repeated wrong PINs; audited.", _S, m.PinStatus),
    Op("join_preview", "POST", "/join/preview",
       "What the family call page shows before joining: who the call is with and when, and "
       "when its waiting room opens. The join token is the credential (signature checked, "
       "not its window); refusals count like any bad token (relay/web/join_preview.py).",
       (), m.JoinPreview, body=m.JoinPreviewAsk),
    Op("staff_call_message", "POST", "/staff/calls/{booking_id}/message",
       "Send a short message into a live call: both sides show it until dismissed; audited "
       "with the call (relay/web/call_messages.py).",
       _S, m.CallStatus, body=m.CallMessage),
    Op("staff_laptop_revoke", "POST", "/staff/laptops/{laptop_id}/revoke",
       "Revoke a laptop's device keys (admin): they stop at once and a call in progress on "
       "it ends; audited.", _S, m.LaptopRevoked, staff_role="admin"),
    # identity settings of an establishment (relay/web/identity_settings.py)
    Op("staff_identity_settings", "GET", "/staff/establishments/{establishment_id}/identity",
       "The establishment's identity settings: whether a side with nobody enrolled waits "
       "for staff to admit it (in force, and whether the establishment chose it).",
       _S, m.IdentitySettings),
    Op("staff_set_identity_settings", "PUT", "/staff/establishments/{establishment_id}/identity",
       "Set them (admin; audited); null: the relay's default again. From the next call.",
       _S, m.IdentitySettings, body=m.IdentitySettingsIn, staff_role="admin"),
)

_F: tuple[Security, ...] = ("family",)
_FV: tuple[Security, ...] = ("family", "visitor")

FAMILY_OPERATIONS: tuple[Op, ...] = (
    # family accounts (relay/web/family_accounts.py, docs/family.md)
    Op("family_register", "POST", "/family/register",
       "Register a family account; a verification link is emailed. The answer is the same "
       "whether or not the email already has an account.", (), m.Accepted, 202,
       m.FamilyRegister),
    Op("family_verify", "POST", "/family/verify",
       "Confirm the email address with the emailed one-use token.", (), m.Accepted,
       body=m.FamilyToken),
    Op("family_login", "POST", "/family/login",
       "Sign in; sets the HttpOnly, SameSite=Strict session cookie 'relay_family'.",
       (), m.FamilyMe, body=m.FamilyLogin),
    Op("family_logout", "POST", "/family/logout", "End this session.", (), m.Ok),
    Op("family_logout_everywhere", "POST", "/family/logout-everywhere",
       "End every session of the account.", _F, m.Ok),
    Op("family_reset_request", "POST", "/family/password-reset",
       "Email a one-use password reset link (the same answer for any address).",
       (), m.Accepted, 202, m.ResetRequest),
    Op("family_reset", "POST", "/family/password-reset/confirm",
       "Set a new password with the emailed token; every session ends.", (), m.Accepted,
       body=m.PasswordReset),
    Op("family_me", "GET", "/family/me", "The account, its holder and household.", _F,
       m.FamilyMe),
    Op("family_language", "POST", "/family/language",
       "The language of the app and emails (en, cy).", _F, m.FamilyMe, body=m.SetLanguage),
    Op("family_add_child", "POST", "/family/household",
       "Add a child (under 18) to the household.", _F, m.HouseholdMember, 201,
       m.HouseholdChild),
    Op("family_consent", "POST", "/family/consents",
       "Agree to be brought on calls the account holder with this email books (the same "
       "answer whether or not there is one).", _F, m.Accepted, body=m.ConsentRequest),
    Op("family_contacts", "GET", "/family/contacts",
       "The prisoners the household may call, and for whom.", _FV, m.FamilyContactList),
    Op("family_export", "GET", "/family/export",
       "Download what is held about the account holder and their household (JSON).",
       _F, None),
    # vetting (relay/web/vetting_api.py)
    Op("family_apply", "POST", "/family/applications",
       "Apply to be a prisoner's contact (a draft until both photos are added and it is "
       "submitted).", _F, m.Application, 201, m.ApplicationRequest),
    Op("family_applications", "GET", "/family/applications", "The account's applications.",
       _F, m.ApplicationList),
    Op("family_application_photo", "PUT", "/family/applications/{application_id}/photo",
       "Add a photo to a draft: the body is the JPEG or PNG itself (image/jpeg, image/png).",
       _F, m.Application, query=m.PhotoQuery),
    Op("family_submit_application", "POST", "/family/applications/{application_id}/submit",
       "Send a draft with both photos to the establishment's vetting queue.", _F,
       m.Application),
    Op("staff_vetting_queue", "GET", "/staff/vetting",
       "Applications to the staff member's establishment.", _S, m.VettingQueue,
       query=m.VettingQueueQuery),
    Op("staff_vetting_get", "GET", "/staff/vetting/{application_id}", "One application.",
       _S, m.VettingApplication),
    Op("staff_vetting_photo", "GET", "/staff/vetting/{application_id}/photo",
       "An application's photo, decrypted (audited).", _S, None, query=m.PhotoQuery,
       media_type="image/jpeg"),
    Op("staff_vetting_decide", "POST", "/staff/vetting/{application_id}/decide",
       "Approve (everyone named becomes verified and an approved contact) or decline with a "
       "reason the applicant sees (admin; audited).", _S, m.VettingApplication,
       body=m.VettingDecision, staff_role="admin"),
    # the check before the call (relay/web/identity_control.py)
    Op("staff_call_identity", "GET", "/staff/calls/{booking_id}/identity",
       "Per side of a live call: its check before the call, the faces last seen and whom they "
       "matched; the last frame for admins, never on legal calls (audited).",
       _S, m.CallIdentity),
    Op("staff_call_identity_admit", "POST", "/staff/calls/{booking_id}/identity/{role}/admit",
       "Admit a side held by its check before the call by hand (admin; audited with the last "
       "frame).", _S, m.CallStatus, body=m.CallNote, body_required=False, staff_role="admin"),
)
OPERATIONS = OPERATIONS + FAMILY_OPERATIONS

ERASURE_OPERATIONS: tuple[Op, ...] = (
    # erasure (relay/web/erasure_api.py, docs/erasure.md)
    Op("family_delete_account", "POST", "/family/delete-account",
       "Delete the account holder's records and their household's (password and confirm: "
       "true); call history and recordings under retention stay, without personal data. "
       "Signs out.", _F, m.Accepted, body=m.DeleteAccount),
    Op("staff_erase_visitor", "POST", "/staff/visitors/{visitor_id}/erase",
       "Erase a visitor linked only to this establishment (admin; audited): approvals end, "
       "coming calls are cancelled or go on without them, sign-in, photos and face go, the "
       "record stays as a stub.", _S, m.Erased, body=m.EraseVisitor, staff_role="admin"),
    Op("staff_erase_prisoner", "POST", "/staff/prisoners/{prisoner_id}/erase",
       "Erase a prisoner of this establishment (admin; audited): coming calls cancelled, "
       "approvals revoked, kiosk PIN and face deleted, the record stays as a stub.",
       _S, m.Erased, body=m.ErasePrisoner, staff_role="admin"),
)
OPERATIONS = OPERATIONS + ERASURE_OPERATIONS

BY_ID: dict[str, Op] = {op.op_id: op for op in OPERATIONS}
