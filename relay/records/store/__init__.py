"""The establishment's records: establishments, laptops, prisoners, visitors, approvals,
staff, bookings; and the admission check the signalling server makes when a leg joins.

SQLite by default, PostgreSQL when ``RELAY_DATABASE_URL`` names one (the relay nodes share
it), behind the ``Store`` class: every public method takes and returns plain
values/dataclasses and no SQL leaks out; relay/records/store/engine.py is the one connection
type for both engines.

Why a synchronous ``sqlite3`` connection used directly on the event loop (no thread)?
Every call here is one short transaction over a few indexed rows of a local WAL file: tens of
microseconds to a millisecond, which is less than a thread hop costs (and than the GIL
handover it brings on a two-core machine). One connection used from one thread also makes
every write naturally serialised: the capacity and allowance checks run inside the same
``BEGIN IMMEDIATE`` transaction as the insert they guard, so two requests cannot both take
the last laptop. ``busy_timeout`` is kept small so another process holding the write lock
(an admin script) can stall the loop only briefly. Nothing slow (argon2 password hashing)
happens inside a store method's transaction. PostgreSQL keeps this shape: a synchronous
psycopg connection (a statement is one round trip, tens of microseconds on a LAN) bounded by
a statement timeout, every write transaction under one advisory lock shared by all nodes
(engine.py; docs/multinode.md, "Records", has the reasons and the measured costs).

Schema changes are numbered SQL scripts in ``MIGRATIONS`` (append, never edit), applied in
order on open, each in its own transaction together with its ``schema_version`` row.

Times are UTC epoch seconds (REAL). The monthly allowance counts calendar months in the
establishment's local time (relay/records/store/visiting.py).

The methods are grouped by record kind, one module each (people, staff, contacts, bookings,
admission) on one connection (base); ``Store`` is all of them behind one interface.
"""

from __future__ import annotations

from relay.records.store.accounts import Account, AccountRecords
from relay.records.store.admission import AdmissionRecords
from relay.records.store.bookings import BookingRecords
from relay.records.store.contacts import ContactRecords
from relay.records.store.directory import DirectoryRecords
from relay.records.store.erasure import ErasureRecords
from relay.records.store.laptops import LaptopRecords
from relay.records.store.outbox import OutboxMessage, OutboxRecords
from relay.records.store.people import PeopleRecords
from relay.records.store.schema import MIGRATIONS
from relay.records.store.staff import StaffRecords
from relay.records.store.values import (
    BOOKING_STATUSES,
    CALL_TYPES,
    SESSION_IDLE_S,
    SESSION_MAX_S,
    STAFF_ROLES,
    Admission,
    AdmissionRefused,
    Booking,
    Contact,
    EstablishmentPolicy,
    Laptop,
    Staff,
    StoreError,
    Visitor,
    age_on,
    month_bounds,
)
from relay.records.store.vetting import Application, VettingRecords
from relay.records.store.visiting import Blackout, Session, VisitingHours, VisitingRecords


class Store(
    PeopleRecords, StaffRecords, ContactRecords, BookingRecords, AdmissionRecords,
    VisitingRecords, DirectoryRecords, AccountRecords, VettingRecords, OutboxRecords,
    LaptopRecords, ErasureRecords,
):
    """The records. Open with ``Store.open(path)``; use from one thread (the event loop)."""


__all__ = [
    "MIGRATIONS",
    "Store",
    "CALL_TYPES",
    "BOOKING_STATUSES",
    "STAFF_ROLES",
    "SESSION_IDLE_S",
    "SESSION_MAX_S",
    "EstablishmentPolicy",
    "Booking",
    "Staff",
    "Laptop",
    "Visitor",
    "Contact",
    "Admission",
    "StoreError",
    "AdmissionRefused",
    "month_bounds",
    "age_on",
    "VisitingHours",
    "Session",
    "Blackout",
    "Account",
    "Application",
    "OutboxMessage",
]
