"""Two retention runs at once on one SQLite file (what a lease hand-over window allows: the
old holder's last sweep and the new holder's first), each a whole sweep as the app wires it
(recordings, then vetting photos and face enrolments through ``also``) on its own thread and
connection, started together at a barrier. Deletes are idempotent and every purged item has
exactly one audit record, written by the run that deleted it (relay/records/retention.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from relay.config import Config
from relay.identity.enrolment import FaceEnrolments
from relay.records import audit
from relay.records.audit import AuditLog
from relay.records.recordings import RecordingIndex
from relay.records.retention import RetentionSweeper, sweep_vetting_photos
from relay.records.storage import FolderStorage
from relay.records.store import Store
from relay.records.store.base import transaction
from tests.test_store_world import DAY, NOW, make_world
from vision.identity import IdentityWorker

ITEMS = 12  # of each kind per round
ROUNDS = 3


def _expire(store: Store, w: Any, data: Path, round_no: int) -> None:
    """ITEMS recordings, face enrolments and decided applications (two photos each), all
    past their retention at NOW."""
    db = store.connection
    index = RecordingIndex(db)
    booking = 1 + round_no  # the index does not look the booking up
    for i in range(ITEMS):
        name = f"r{round_no}-{i}.webm"
        (data / "recordings" / name).write_bytes(b"sealed")
        rid = index.add(booking, w.est_a, name, "video/webm", NOW - 100 * DAY, NOW - 1)
        index.finish(rid, NOW - 100 * DAY + 60, 6, "00" * 32, "complete")
        face = f"f{round_no}-{i}.sealed"
        (data / "faces" / face).write_bytes(b"sealed")
        with transaction(db):
            db.execute(
                "INSERT INTO face_enrolments (subject_kind, subject_id, establishment_id, path,"
                " enrolled_at, enrolled_by, retention_until, face_px, sharpness, brightness)"
                " VALUES ('prisoner', ?, ?, ?, ?, 'staff:1', ?, 120, 1.0, 0.5)",
                (10_000 + round_no * 100 + i, w.est_a, face, NOW - 400 * DAY, NOW - 1),
            )
        decided = NOW - 400 * DAY
        vid, _ = store.add_visitor(f"Aunt {round_no}-{i}", "1980-01-01", True, decided)
        account = store.add_verified_account(f"a{round_no}-{i}@example.org", "x", vid, decided)
        app_id = store.create_application(
            account_id=account,
            visitor_id=vid,
            prisoner_id=w.prisoner_a,
            relationship="aunt",
            date_of_birth="1980-01-01",
            address="1 Road",
            member_ids=[],
            now=decided,
        )
        for kind in ("identity", "face"):
            photo = data / "vetting" / f"{round_no}-{i}-{kind}"
            photo.write_bytes(b"sealed")
            store.put_photo(app_id, kind, str(photo), "00" * 32, 6, decided)
        store.submit_application(app_id, decided)
        store.decide_application(app_id, w.admin_a, False, "not known", decided)


def _sweep_once(db_path: Path, config: Config, barrier: threading.Barrier, out: list) -> None:
    """One node's sweep, as relay/app.py wires it, on its own connection."""
    store = Store.open(db_path)
    worker = IdentityWorker()
    try:
        log = AuditLog(store.connection)

        def recorded(booking_id: int, kind: str, detail: dict[str, Any]) -> None:
            log.append(kind, detail, booking_id=booking_id)

        sweeper = RetentionSweeper(
            RecordingIndex(store.connection),
            config,
            recorded,
            clock=lambda: NOW,
            storage=FolderStorage(config.recordings_dir),  # type: ignore[arg-type]
        )
        enrolments = FaceEnrolments(
            store.connection, config, b"\0" * 32, log, lambda: None, worker, lambda: NOW
        )
        counts = {"photos": 0, "faces": 0}

        def photos(now: float) -> None:
            counts["photos"] += sweep_vetting_photos(store, config, log, now)

        def faces(now: float) -> None:
            counts["faces"] += enrolments.sweep(now)

        sweeper.also += [photos, faces]
        barrier.wait(10)
        out.append((len(sweeper.sweep()), counts["photos"], counts["faces"]))
    finally:
        worker.close()
        store.close()


def test_two_overlapping_sweeps_delete_each_item_once_with_one_audit_record(tmp_path):
    data = tmp_path / "data"
    for folder in ("recordings", "faces", "vetting"):
        (data / folder).mkdir(parents=True)
    db_path = tmp_path / "relay.sqlite"
    w = make_world(db_path)
    config = Config(data_dir=data, recordings_dir=data / "recordings", seed_demo=False)
    try:
        for round_no in range(ROUNDS):
            _expire(w.store, w, data, round_no)
            barrier = threading.Barrier(2)
            out: list[tuple[int, int, int]] = []
            runs = [
                threading.Thread(target=_sweep_once, args=(db_path, config, barrier, out))
                for _ in range(2)
            ]
            for t in runs:
                t.start()
            for t in runs:
                t.join(60)
            assert len(out) == 2, out  # both runs finished without an error
            # between them, each item deleted once: what each run counts, it deleted
            assert [sum(c) for c in zip(*out, strict=True)] == [ITEMS, 2 * ITEMS, ITEMS], out
            print(f"\nround {round_no}: the two runs deleted {out}")
            for folder in ("recordings", "faces", "vetting"):
                assert list((data / folder).iterdir()) == [], folder
        rows = w.store.connection.execute(
            "SELECT kind, detail FROM audit WHERE kind IN"
            " ('recording_deleted', 'face_enrolment_deleted', 'vetting_photo_deleted')"
        ).fetchall()
        items = [
            (k, d.get("recording_id"), d.get("subject_id"), d.get("application"), d.get("kind"))
            for k, d in ((k, json.loads(detail)) for k, detail in rows)
        ]
        assert len(items) == len(set(items)) == ROUNDS * 4 * ITEMS  # none twice, none missing
        assert audit.verify(w.store.connection).ok  # two writers, one chain
    finally:
        w.store.close()
