"""Erasure: the one owner of deleting a visitor's or a prisoner's record with what it owns.

A family member deletes their own account (relay/web/erasure_api.py), or an admin of the
establishment erases a visitor (vetting refused for good) or a prisoner (released,
transferred). What goes and what stays, table by table, is docs/erasure.md; in short:

1. The calls first, through the lifecycle (the one path for booking changes that touch
   calls): approvals revoked, coming bookings cancelled or the person taken off them, a
   live call ended with its reason to the other side.
2. The face descriptor and photo, through ``FaceEnrolments.forget``.
3. The records, in one transaction (``Store.stub_visitor`` / ``stub_prisoner``): sign-in,
   household, consents, pending applications and their photos go; the row stays as a
   pseudonymous stub because past bookings and the hash-chained audit trail name its id.
4. One audit record, ``visitor_erased`` or ``prisoner_erased``: ids and a reason code only.

An account holder's household children go with them: they have no sign-in of their own and
nobody else could manage them. Recordings are not deleted early: they follow the
establishment's retention and legal holds like every other recording.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from relay.records import photos
from relay.records.audit import AuditLog
from relay.records.store import Store

if TYPE_CHECKING:
    from relay.calls.lifecycle import CallLifecycle
    from relay.identity.enrolment import FaceEnrolments

log = logging.getLogger(__name__)

VisitorReason = Literal[
    "person_asked", "vetting_refused", "no_longer_visiting", "duplicate_record", "other"
]
PrisonerReason = Literal["released", "transferred", "duplicate_record", "other"]
"""Reason codes, not free text: an audit record must never carry personal data, and the
hash chain means a record once written cannot be corrected."""


class ErasureError(Exception):
    """A refusal with a code for programs and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Erased:
    """What one erasure did (ids only)."""

    visitor_ids: list[int] = field(default_factory=list)
    prisoner_id: int | None = None
    bookings_stopped: list[int] = field(default_factory=list)
    bookings_reduced: list[int] = field(default_factory=list)
    applications: list[int] = field(default_factory=list)
    faces_forgotten: int = 0


def _staff_id(actor: str) -> int | None:
    kind, _, ident = actor.partition(":")
    return int(ident) if kind == "staff" and ident.isdigit() else None


class Erasure:
    def __init__(
        self,
        store: Store,
        lifecycle: CallLifecycle,
        audit: AuditLog,
        enrolments: Callable[[], FaceEnrolments | None],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.audit = audit
        self.enrolments = enrolments
        self.clock = clock

    def _forget(self, kind: Literal["visitor", "prisoner"], subject_id: int, actor: str) -> int:
        enrolments = self.enrolments()
        if enrolments is None:
            return 0
        return int(enrolments.forget(kind, subject_id, actor=actor, reason="record_erased"))

    async def erase_visitor(
        self,
        visitor_id: int,
        actor: str,
        reason: VisitorReason,
        establishment_id: int | None = None,
    ) -> Erased:
        """Erase a visitor (and, for an account holder, their household's children).
        ``actor``: ``staff:<id>`` or ``visitor:<id>``; ``establishment_id``: where the audit
        record is filed (the staff member's; a family request files it with the lowest
        establishment the visitor is linked to). Raises ErasureError ``visitor_not_found``
        or ``already_erased``."""
        try:
            erased_at = self.store.visitor_erased_at(visitor_id)
        except KeyError:
            raise ErasureError("visitor_not_found", "no such visitor") from None
        if erased_at is not None:
            raise ErasureError("already_erased", "this visitor's record was erased already")
        _, children = self.store.household_of_holder(visitor_id)
        done = Erased()
        for person in [visitor_id, *children]:
            if person != visitor_id and self.store.visitor_erased_at(person) is not None:
                continue
            await self._erase_one(person, actor, reason, establishment_id, visitor_id, done)
        log.info("visitor %s erased (%d records) by %s", visitor_id, len(done.visitor_ids), actor)
        return done

    async def _erase_one(
        self,
        person: int,
        actor: str,
        reason: str,
        establishment_id: int | None,
        holder: int,
        done: Erased,
    ) -> None:
        now = self.clock()
        linked = sorted(self.store.visitor_establishments(person))
        removal = await self.lifecycle.remove_visitor(person, _staff_id(actor), now)
        faces = self._forget("visitor", person, actor)
        stub = self.store.stub_visitor(person, now)
        for path in stub.photo_paths:
            photos.delete_photo(path)
        detail: dict[str, object] = {
            "visitor_id": person,
            "reason": reason,
            "establishments": linked,
            "bookings_stopped": sorted(set(removal.stopped)),
            "bookings_reduced": removal.reduced,
            "applications": stub.applications,
            "vetting_photos_deleted": len(stub.photo_paths),
            "face_forgotten": bool(faces),
        }
        if person != holder:
            detail["household_of"] = holder
        filed = (
            establishment_id if establishment_id is not None else (linked[0] if linked else None)
        )
        self.audit.append("visitor_erased", detail, establishment_id=filed, actor=actor, at=now)
        done.visitor_ids.append(person)
        done.bookings_stopped += sorted(set(removal.stopped))
        done.bookings_reduced += removal.reduced
        done.applications += stub.applications
        done.faces_forgotten += faces

    async def erase_prisoner(self, prisoner_id: int, actor: str, reason: PrisonerReason) -> Erased:
        """Erase a prisoner (``actor``: ``staff:<id>``). Raises ErasureError
        ``prisoner_not_found`` or ``already_erased``."""
        try:
            erased_at = self.store.prisoner_erased_at(prisoner_id)
        except KeyError:
            raise ErasureError("prisoner_not_found", "no such prisoner") from None
        if erased_at is not None:
            raise ErasureError("already_erased", "this prisoner's record was erased already")
        staff_id = _staff_id(actor)
        if staff_id is None:
            raise ErasureError("forbidden", "only staff erase a prisoner's record")
        row = self.store.prisoner(prisoner_id)
        assert row is not None
        now = self.clock()
        removal = await self.lifecycle.remove_prisoner(prisoner_id, staff_id, now)
        faces = self._forget("prisoner", prisoner_id, actor)
        withdrawn = self.store.stub_prisoner(prisoner_id, now)
        self.audit.append(
            "prisoner_erased",
            {
                "prisoner_id": prisoner_id,
                "reason": reason,
                "bookings_stopped": removal.stopped,
                "applications_withdrawn": withdrawn,
                "face_forgotten": bool(faces),
            },
            establishment_id=int(row["establishment_id"]),
            actor=actor,
            at=now,
        )
        log.info("prisoner %s erased by %s", prisoner_id, actor)
        return Erased(
            prisoner_id=prisoner_id,
            bookings_stopped=removal.stopped,
            applications=withdrawn,
            faces_forgotten=faces,
        )
