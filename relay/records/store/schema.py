"""The schema: numbered migrations, applied in order on open (append, never edit).

Every table of the relay's database is created here, and only here: the store's records,
the audit trail (relay/records/audit.py), the call runtime (relay/records/call_state.py)
and the recordings index (relay/records/recordings.py). A script is plain text, never built
from Python constants, so an applied migration cannot change under an existing database.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the booking records
    """
    CREATE TABLE establishments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        call_minutes INTEGER NOT NULL DEFAULT 30,
        allowed_call_minutes TEXT NOT NULL DEFAULT '30,60',
        monthly_allowance_minutes INTEGER NOT NULL DEFAULT 60,
        max_visitors INTEGER NOT NULL DEFAULT 4,
        min_main_visitor_age INTEGER NOT NULL DEFAULT 18,
        record_social INTEGER NOT NULL DEFAULT 1,
        retention_days INTEGER NOT NULL DEFAULT 90,
        staff_must_resume INTEGER NOT NULL DEFAULT 0,
        is_demo INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE laptops (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        label TEXT NOT NULL,
        room TEXT NOT NULL DEFAULT '',
        secret_hash TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX laptops_est ON laptops(establishment_id);
    CREATE TABLE prisoners (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        number TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        video_call_eligible INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX prisoners_est ON prisoners(establishment_id);
    CREATE TABLE visitors (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        date_of_birth TEXT NOT NULL,
        identity_verified INTEGER NOT NULL DEFAULT 0,
        secret_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE staff (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('officer', 'admin')),
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE staff_sessions (
        token_hash TEXT PRIMARY KEY,
        staff_id INTEGER NOT NULL REFERENCES staff(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE approved_contacts (
        id INTEGER PRIMARY KEY,
        prisoner_id INTEGER NOT NULL REFERENCES prisoners(id),
        visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        status TEXT NOT NULL CHECK (status IN ('approved', 'revoked')),
        approved_by INTEGER REFERENCES staff(id),
        approved_at REAL NOT NULL,
        revoked_by INTEGER REFERENCES staff(id),
        revoked_at REAL,
        UNIQUE (prisoner_id, visitor_id)
    );
    CREATE INDEX contacts_visitor ON approved_contacts(visitor_id);
    CREATE TABLE bookings (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        prisoner_id INTEGER NOT NULL REFERENCES prisoners(id),
        call_type TEXT NOT NULL CHECK (call_type IN ('social', 'legal')),
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('requested', 'approved', 'declined', 'cancelled', 'completed', 'failed')),
        requested_by TEXT NOT NULL CHECK (requested_by IN ('family', 'prisoner', 'staff')),
        main_visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        laptop_id INTEGER REFERENCES laptops(id),
        created_at REAL NOT NULL,
        decided_by INTEGER REFERENCES staff(id),
        decided_at REAL,
        reason TEXT NOT NULL DEFAULT '',
        CHECK (ends_at > starts_at)
    );
    CREATE INDEX bookings_est_time ON bookings(establishment_id, starts_at);
    CREATE INDEX bookings_prisoner_time ON bookings(prisoner_id, starts_at);
    CREATE TABLE booking_visitors (
        booking_id INTEGER NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
        visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        PRIMARY KEY (booking_id, visitor_id)
    );
    CREATE INDEX booking_visitors_visitor ON booking_visitors(visitor_id);
    CREATE TABLE booking_events (
        id INTEGER PRIMARY KEY,
        booking_id INTEGER NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX booking_events_booking ON booking_events(booking_id);
    """,
    # 2: the hash-chained audit trail and its evidence frames (relay/records/audit.py);
    # the head starts at audit.GENESIS (64 zeros)
    """
CREATE TABLE audit_evidence (
    id INTEGER PRIMARY KEY,
    booking_id INTEGER,
    at REAL NOT NULL,
    jpeg BLOB,
    boxes TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    booking_id INTEGER,
    establishment_id INTEGER,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL,
    evidence_id INTEGER REFERENCES audit_evidence(id),
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_booking ON audit(booking_id, id);
CREATE TABLE audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    last_id INTEGER NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_head (one, last_id, last_hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    """,
    # 3: what a restarted relay needs to carry calls on (relay/records/call_state.py)
    """
    CREATE TABLE call_runtime (
        booking_id INTEGER PRIMARY KEY,
        state TEXT NOT NULL,
        pause_reasons TEXT NOT NULL,
        awaiting_staff TEXT NOT NULL,
        ends_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        ended_at REAL
    );
    """,
    # 4: the recordings index (relay/records/recordings.py). IF NOT EXISTS on purpose: before
    # this migration the index created its own table on open, so a database from then already
    # has it (same columns) and must still open; a fresh database gets it here.
    """
    CREATE TABLE IF NOT EXISTS recordings (
        id               INTEGER PRIMARY KEY,
        booking_id       INTEGER NOT NULL,
        establishment_id INTEGER NOT NULL,
        path             TEXT NOT NULL UNIQUE,
        media_type       TEXT NOT NULL DEFAULT 'video/webm',
        started_at       REAL NOT NULL,
        ended_at         REAL,
        size             INTEGER,
        sha256           TEXT,
        retention_until  REAL NOT NULL,
        legal_hold       INTEGER NOT NULL DEFAULT 0 CHECK (legal_hold IN (0, 1)),
        hold_reason      TEXT,
        hold_by          TEXT,
        hold_at          REAL,
        status           TEXT NOT NULL DEFAULT 'recording'
                         CHECK (status IN ('recording', 'complete', 'interrupted', 'failed', 'deleted')),
        deleted_at       REAL
    );
    CREATE INDEX IF NOT EXISTS recordings_booking ON recordings (booking_id);
    CREATE INDEX IF NOT EXISTS recordings_expiry ON recordings (retention_until);
    """,
    # 5: visiting hours (relay/records/store/visiting.py): the establishment's time zone,
    # booking window and notice; weekly sessions in local time (rooms 0 = every active
    # laptop) and blackout dates. Establishments made before this keep taking bookings at
    # any hour (every day 00:00-24:00) until an admin sets their hours.
    """
    ALTER TABLE establishments ADD COLUMN timezone TEXT NOT NULL DEFAULT 'Europe/London';
    ALTER TABLE establishments ADD COLUMN booking_window_days INTEGER NOT NULL DEFAULT 28;
    ALTER TABLE establishments ADD COLUMN notice_hours INTEGER NOT NULL DEFAULT 24;
    CREATE TABLE visiting_sessions (
        id INTEGER PRIMARY KEY,
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
        starts TEXT NOT NULL,
        ends TEXT NOT NULL,
        rooms INTEGER NOT NULL DEFAULT 0 CHECK (rooms >= 0)
    );
    CREATE INDEX visiting_sessions_est ON visiting_sessions(establishment_id, weekday);
    CREATE TABLE blackout_dates (
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        day TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (establishment_id, day)
    );
    INSERT INTO visiting_sessions (establishment_id, weekday, starts, ends, rooms)
        SELECT e.id, w.d, '00:00', '24:00', 0 FROM establishments e,
        (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3
         UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6) w;
    UPDATE establishments SET notice_hours = 0, booking_window_days = 366;
    """,
    # 6: face enrolments (relay/identity/enrolment.py): the descriptor and its photo live in
    # one sealed file (encrypted with the recording key); this row says where and until when
    """
    CREATE TABLE face_enrolments (
        id               INTEGER PRIMARY KEY,
        subject_kind     TEXT NOT NULL CHECK (subject_kind IN ('visitor', 'prisoner')),
        subject_id       INTEGER NOT NULL,
        establishment_id INTEGER,
        path             TEXT NOT NULL UNIQUE,
        enrolled_at      REAL NOT NULL,
        enrolled_by      TEXT NOT NULL,
        retention_until  REAL NOT NULL,
        face_px          INTEGER NOT NULL,
        sharpness        REAL NOT NULL,
        brightness       REAL NOT NULL,
        UNIQUE (subject_kind, subject_id)
    );
    CREATE INDEX face_enrolments_expiry ON face_enrolments (retention_until);
    """,
    # 7: family accounts, their sessions and one-use email tokens, households, vetting
    # applications with their sealed photos, and the notification outbox (relay/notify/)
    """
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        email_verified INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),
        visitor_id INTEGER NOT NULL UNIQUE REFERENCES visitors(id),
        language TEXT NOT NULL DEFAULT 'en',
        created_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE TABLE account_sessions (
        token_hash TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX account_sessions_account ON account_sessions(account_id);
    CREATE TABLE account_tokens (
        token_hash TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
        expires_at REAL NOT NULL,
        used_at REAL
    );
    CREATE TABLE household_members (
        visitor_id INTEGER PRIMARY KEY REFERENCES visitors(id),
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        relationship TEXT NOT NULL,
        added_at REAL NOT NULL
    );
    CREATE INDEX household_account ON household_members(account_id);
    CREATE TABLE party_consents (
        visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        for_visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        consented_at REAL NOT NULL,
        PRIMARY KEY (visitor_id, for_visitor_id)
    );
    CREATE TABLE vetting_applications (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        prisoner_id INTEGER NOT NULL REFERENCES prisoners(id),
        establishment_id INTEGER NOT NULL REFERENCES establishments(id),
        relationship TEXT NOT NULL,
        date_of_birth TEXT NOT NULL,
        address TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('draft', 'submitted', 'approved', 'declined')),
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        submitted_at REAL,
        decided_by INTEGER REFERENCES staff(id),
        decided_at REAL
    );
    CREATE INDEX vetting_est_status ON vetting_applications(establishment_id, status);
    CREATE INDEX vetting_account ON vetting_applications(account_id);
    CREATE TABLE vetting_members (
        application_id INTEGER NOT NULL REFERENCES vetting_applications(id) ON DELETE CASCADE,
        visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        PRIMARY KEY (application_id, visitor_id)
    );
    CREATE TABLE vetting_photos (
        application_id INTEGER NOT NULL REFERENCES vetting_applications(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('identity', 'face')),
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        uploaded_at REAL NOT NULL,
        PRIMARY KEY (application_id, kind)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        dedupe TEXT NOT NULL UNIQUE,
        to_addr TEXT NOT NULL,
        language TEXT NOT NULL,
        template TEXT NOT NULL,
        params TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
    CREATE TABLE notify_cursor (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        last_event_id INTEGER NOT NULL
    );
    INSERT INTO notify_cursor (one, last_event_id)
        SELECT 1, COALESCE(MAX(id), 0) FROM booking_events;
    """,
    # 8: laptop enrolment codes, device keys and kiosk PINs (relay/records/store/laptops.py)
    """
    CREATE TABLE laptop_enrolments (
        id INTEGER PRIMARY KEY,
        laptop_id INTEGER NOT NULL REFERENCES laptops(id),
        code_hash TEXT NOT NULL,
        created_by INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL
    );
    CREATE INDEX laptop_enrolments_code ON laptop_enrolments(code_hash);
    CREATE TABLE laptop_keys (
        id INTEGER PRIMARY KEY,
        laptop_id INTEGER NOT NULL REFERENCES laptops(id),
        key_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        revoked_by INTEGER
    );
    CREATE INDEX laptop_keys_laptop ON laptop_keys(laptop_id);
    CREATE TABLE kiosk_pins (
        prisoner_id INTEGER PRIMARY KEY REFERENCES prisoners(id),
        pin_hash TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        locked_at REAL,
        set_by INTEGER NOT NULL,
        set_at REAL NOT NULL
    );
    """,
    # 9: recordings in segments, written by named nodes with heartbeats (relay/records/recordings.py)
    """
    ALTER TABLE recordings ADD COLUMN segment INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE recordings ADD COLUMN node TEXT;
    ALTER TABLE recordings ADD COLUMN heartbeat_at REAL;
    """,
    # 10: which node writes a call's runtime row (fencing, docs/multinode.md); '' = before
    """
    ALTER TABLE call_runtime ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    """,
    # 11: whether a side with nobody enrolled waits for staff, per establishment
    # (relay/calls/identity_gate.py); NULL: the relay's identity_unenrolled_needs_staff
    """
    ALTER TABLE establishments ADD COLUMN unenrolled_needs_staff INTEGER;
    """,
    # 12: erasure (relay/records/erasure.py, docs/erasure.md): when a visitor's or prisoner's
    # record was reduced to a pseudonymous stub (NULL: a live record)
    """
    ALTER TABLE visitors ADD COLUMN erased_at REAL;
    ALTER TABLE prisoners ADD COLUMN erased_at REAL;
    """,
]
