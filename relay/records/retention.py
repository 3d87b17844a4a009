"""Retention: recordings past their establishment's retention period are deleted, and so are
the photos of vetting applications decided longer ago than ``vetting_photo_retention_days``
(``sweep_vetting_photos``, run by the same sweeper through ``also``).

A recording's ``retention_until`` is fixed when it starts (its start plus the establishment's
``policy.retention_days``, default ``Config.retention_default_days``). Every
``retention_sweep_s`` the sweeper deletes the files of recordings past that date, unless a
legal hold is on them (a hold survives the purge until staff release it; the next sweep after
the release deletes an expired recording). Files being written are never touched. Each deletion
is marked in the index (the row stays, status ``deleted``) and written to the audit trail.

Deleting the file is enough here: the file is ciphertext, and the key never leaves the relay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from relay.config import Config
from relay.records.recordings import RecordingIndex
from relay.records.storage import FolderStorage, Storage
from relay.tasks import cancel_and_wait

if TYPE_CHECKING:
    from relay.records.audit import AuditLog
    from relay.records.store import Store

log = logging.getLogger(__name__)


class RetentionSweeper:
    def __init__(
        self,
        index: RecordingIndex,
        config: Config,
        audit: Callable[[int, str, dict[str, Any]], None] | None = None,
        busy: Callable[[], set[str]] = set,
        clock: Callable[[], float] = time.time,
        storage: Storage | None = None,
    ) -> None:
        self.also: list[Callable[[float], object]] = []
        """Other sweeps on the same schedule, each given the time now."""
        self.duty: Callable[[], bool] = lambda: True
        """Whether this process sweeps; with many nodes only the holder of the retention
        lease does (relay/cluster/duties.py), so two nodes never purge the same records."""
        self.index = index
        self.config = config
        self.audit = audit
        self.busy = busy
        self.clock = clock
        self.storage = storage or FolderStorage(config.recordings_dir)  # type: ignore[arg-type]
        self._task: asyncio.Task[None] | None = None

    def sweep(self) -> list[int]:
        """Delete what has expired now; returns the recording ids deleted."""
        now = self.clock()
        busy = self.busy()
        deleted = []
        for other in self.also:
            try:
                other(now)
            except Exception:
                log.exception("retention sweep %s failed", getattr(other, "__name__", other))
        for rec in self.index.expired(now):
            if rec.path in busy:
                continue
            try:
                missing = not self.storage.delete(rec.path)
            except (OSError, ValueError) as exc:
                log.error("retention: could not delete recording %s: %s", rec.id, exc)
                continue
            if not self.index.mark_deleted(rec.id, now):
                continue  # another node's sweep deleted it a moment ago
            deleted.append(rec.id)
            log.info("retention: deleted recording %s (booking %s)", rec.id, rec.booking_id)
            if self.audit is not None:
                self.audit(
                    rec.booking_id,
                    "recording_deleted",
                    {
                        "recording_id": rec.id,
                        "reason": "retention",
                        "retention_until": rec.retention_until,
                        "sha256": rec.sha256,
                        "file_was_missing": missing,
                    },
                )
        return deleted

    async def run(self) -> None:
        """Sweep every ``retention_sweep_s`` while this node has the duty; without it, look
        again at every node refresh, so a node that takes the duty over sweeps at once."""
        while True:
            if not self.duty():
                await asyncio.sleep(min(self.config.retention_sweep_s, self.config.node_refresh_s))
                continue
            try:
                self.sweep()
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(self.config.retention_sweep_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


def sweep_vetting_photos(store: Store, config: Config, audit: AuditLog, now: float) -> int:
    """Delete the sealed photos of applications decided more than the retention period ago;
    the application row (decision, reason) and the audit trail stay. Returns how many this
    run deleted: a photo another run (another node, in a lease hand-over) dropped first is
    neither counted nor audited twice."""
    from relay.records import photos

    before = now - config.vetting_photo_retention_days * 86400
    deleted = 0
    for application_id, kind, path, establishment_id in store.expired_vetting_photos(before):
        photos.delete_photo(path)  # idempotent: the file goes before its row
        if not store.drop_vetting_photo(application_id, kind):
            continue
        audit.append(
            "vetting_photo_deleted",
            {"application": application_id, "kind": kind, "reason": "retention"},
            establishment_id=establishment_id,
            at=now,
        )
        deleted += 1
    if deleted:
        log.info("retention: deleted %d vetting photos", deleted)
    return deleted
