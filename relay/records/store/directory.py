"""Names behind the ids, for staff: who is who in one establishment, and visitor search.

Visitors are not owned by an establishment; staff only ever see those linked to one of
their establishment's prisoners (an approval, current or revoked), never everyone."""

from __future__ import annotations

from typing import Any

from relay.records.store.base import RecordsBase

MAX_FOUND = 50


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class DirectoryRecords(RecordsBase):
    def directory(self, establishment_id: int) -> dict[str, list[dict[str, Any]]]:
        prisoners = [
            {
                "id": r["id"],
                "number": r["number"],
                "name": r["name"],
                "video_call_eligible": bool(r["video_call_eligible"]),
            }
            for r in self._db.execute(
                "SELECT * FROM prisoners WHERE establishment_id = ? ORDER BY name, number",
                (establishment_id,),
            )
        ]
        visitors = [
            {"id": r["id"], "name": r["name"]}
            for r in self._db.execute(
                "SELECT DISTINCT v.id, v.name FROM visitors v"
                " JOIN approved_contacts c ON c.visitor_id = v.id"
                " JOIN prisoners p ON p.id = c.prisoner_id"
                " WHERE p.establishment_id = ? ORDER BY v.name, v.id",
                (establishment_id,),
            )
        ]
        staff = [
            {"id": r["id"], "username": r["username"]}
            for r in self._db.execute(
                "SELECT id, username FROM staff WHERE establishment_id = ? ORDER BY username",
                (establishment_id,),
            )
        ]
        return {"prisoners": prisoners, "visitors": visitors, "staff": staff}

    def search_visitors(self, establishment_id: int, text: str) -> list[dict[str, Any]]:
        """Visitors linked to the establishment whose name contains ``text`` (any case),
        each with their approvals there."""
        rows = self._db.execute(
            "SELECT v.id AS vid, v.name AS vname, v.date_of_birth, v.identity_verified,"
            " c.id AS cid, c.status, p.id AS pid, p.name AS pname, p.number"
            " FROM visitors v JOIN approved_contacts c ON c.visitor_id = v.id"
            " JOIN prisoners p ON p.id = c.prisoner_id"
            " WHERE p.establishment_id = ? AND LOWER(v.name) LIKE LOWER(?) ESCAPE '\\'"
            " ORDER BY v.name, v.id, p.name",
            (establishment_id, _like(text)),
        ).fetchall()
        found: dict[int, dict[str, Any]] = {}
        for r in rows:
            v = found.get(r["vid"])
            if v is None:
                if len(found) >= MAX_FOUND:
                    break
                v = found[r["vid"]] = {
                    "id": r["vid"],
                    "name": r["vname"],
                    "date_of_birth": r["date_of_birth"],
                    "identity_verified": bool(r["identity_verified"]),
                    "contacts": [],
                }
            v["contacts"].append(
                {
                    "contact_id": r["cid"],
                    "prisoner_id": r["pid"],
                    "prisoner_name": r["pname"],
                    "prisoner_number": r["number"],
                    "status": r["status"],
                }
            )
        return list(found.values())
