"""What staff and the pages know of one side's identity check (written by the policy only).

relay/calls/identity_gate.py runs the check before the call; relay/calls/policy.py records each
outcome here and decides what it does to the call. The console reads it (relay/web/
identity_control.py), names resolved there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

IdentityStatus = Literal["checking", "matched", "admitted", "not_checked", "needs_staff"]
"""checking: held, the check runs; matched: admitted by the check; admitted: by staff;
not_checked: nobody enrolled for the side, admitted unchecked (audited); needs_staff: held
until staff admit (nobody enrolled where the establishment says so, or the check failed)."""


@dataclass
class SideIdentity:
    status: IdentityStatus = "checking"
    checks: int = 0
    failures: int = 0
    finding: str | None = None
    """The last check's guidance to the joining page (vision/identity_precall.py FINDINGS)."""
    alerted: bool = False
    """Staff were alerted (failures reached ``identity_precall_alert_after``)."""
    faces: list[dict[str, Any]] = field(default_factory=list)
    """The last check's faces: {"box", "person" (gallery key or None), "distance"}."""
    evidence_jpeg: bytes | None = None
    """The last check's frame (never kept on legal calls)."""
    admitted_by: str | None = None

    def public(self) -> dict[str, Any]:
        """For the leg's own page and the call row: no frame, no distances."""
        return {
            "status": self.status,
            "checks": self.checks,
            "failures": self.failures,
            "finding": self.finding,
            "alerted": self.alerted,
        }
