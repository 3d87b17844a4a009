"""The admission check the signalling server makes when a leg joins."""

from __future__ import annotations

import logging

from protocol.tokens import JoinClaims
from relay.records.store.base import RecordsBase
from relay.records.store.values import (
    Admission,
    AdmissionRefused,
)

log = logging.getLogger("relay.records.store")


class AdmissionRecords(RecordsBase):
    def admit(self, claims: JoinClaims, now: float) -> Admission:
        """Re-check a (signature-verified) token against the live records. Raises
        AdmissionRefused with a stable code; every refusal is logged (never the token)."""
        try:
            return self._admit(claims, now)
        except AdmissionRefused as exc:
            log.warning(
                "admission refused code=%s booking=%s participant=%s role=%s",
                exc.code, claims.booking_id, claims.participant, claims.role,
            )
            raise

    def _admit(self, claims: JoinClaims, now: float) -> Admission:
        db = self._db
        kind, _, ident = claims.participant.partition(":")
        expected_kind = {"family": "visitor", "prison": "laptop", "watcher": "staff"}.get(
            claims.role
        )
        if expected_kind is None or kind != expected_kind or not ident.isdigit():
            raise AdmissionRefused("token_malformed", "participant does not match role")
        pid = int(ident)
        r = db.execute(
            "SELECT b.*, p.name AS prisoner_name, p.video_call_eligible FROM bookings b"
            " JOIN prisoners p ON p.id = b.prisoner_id WHERE b.id = ?",
            (claims.booking_id,),
        ).fetchone()
        if r is None:
            raise AdmissionRefused("booking_not_found", "no such booking")
        party = self._party(db, r["id"])
        if kind == "visitor":
            if pid not in party:
                raise AdmissionRefused("wrong_booking", "this visitor is not on that booking")
            c = db.execute(
                "SELECT c.status, v.name, v.identity_verified FROM visitors v"
                " LEFT JOIN approved_contacts c ON c.visitor_id = v.id AND c.prisoner_id = ?"
                " WHERE v.id = ?",
                (r["prisoner_id"], pid),
            ).fetchone()
            if c is None or c["status"] != "approved":
                raise AdmissionRefused("approval_revoked", "this visitor is no longer approved")
            if not c["identity_verified"]:
                raise AdmissionRefused("visitor_not_verified", "identity not verified")
            display = c["name"]
            faces = db.execute(  # a revoked visitor no longer counts as an approved face
                "SELECT COUNT(*) FROM approved_contacts WHERE prisoner_id = ? AND status ="
                f" 'approved' AND visitor_id IN ({','.join('?' * len(party))})",
                (r["prisoner_id"], *party),
            ).fetchone()[0]
        elif kind == "laptop":
            lap = db.execute("SELECT * FROM laptops WHERE id = ?", (pid,)).fetchone()
            if lap is None or r["laptop_id"] != pid:
                raise AdmissionRefused("wrong_booking", "that booking is not on this laptop")
            if not lap["active"]:
                raise AdmissionRefused("laptop_disabled", "this laptop is disabled")
            display = r["prisoner_name"]
            faces = 1
        else:
            st = db.execute("SELECT * FROM staff WHERE id = ?", (pid,)).fetchone()
            if st is None or not st["active"] or st["establishment_id"] != r["establishment_id"]:
                raise AdmissionRefused("wrong_booking", "that call is not in your establishment")
            if not self.session_ref_live(pid, claims.jti):  # type: ignore[attr-defined]
                raise AdmissionRefused("session_ended", "log in again to watch this call")
            display = st["username"]
            faces = 0
        status = r["status"]
        if status == "cancelled":
            raise AdmissionRefused("booking_cancelled", "this call was cancelled")
        if status == "declined":
            raise AdmissionRefused("booking_declined", "this call was declined")
        if status == "requested":
            raise AdmissionRefused("booking_not_approved", "this call is not approved yet")
        if status in ("completed", "failed"):
            raise AdmissionRefused("call_ended", "this call has ended")
        if kind == "laptop" and not r["video_call_eligible"]:
            raise AdmissionRefused("prisoner_not_eligible", "video calls are suspended")
        if abs(claims.exp - r["ends_at"]) > 1.0 or claims.nbf >= r["starts_at"] + 1.0:
            raise AdmissionRefused("token_stale", "the call was moved; get a new link")
        if now < claims.nbf:
            raise AdmissionRefused("token_not_yet_valid", "the waiting room is not open yet")
        if now >= claims.exp or now >= r["ends_at"]:
            raise AdmissionRefused("token_expired", "the call's slot has ended")
        return Admission(
            booking_id=r["id"],
            establishment_id=r["establishment_id"],
            call_type=r["call_type"],
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            role=claims.role,
            participant=claims.participant,
            display_name=display,
            approved_faces=faces,
            policy=self.policy(r["establishment_id"]),
            session_ref=claims.jti if kind == "staff" else "",
        )


