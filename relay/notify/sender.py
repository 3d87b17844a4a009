"""The background sender: feeds the outbox, then delivers what is due, with back-off.

One task on the event loop (started with the app, see relay/app.py). Each pass: booking
events and reminders become messages (relay/notify/feeder.py), then every due message is
sent through SMTP (aiosmtplib, ``smtp_*`` settings) or, with no ``smtp_host``, written as an
.eml file under ``outbox_path`` (0700): the development default. A failure is retried after
``notify_retry_s[attempt]`` and marked failed after the last. Logs name message ids and
error kinds, never addresses or contents (personal data).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from relay.config import Config
from relay.notify import feeder
from relay.notify.catalogue import render_email
from relay.records.store import OutboxMessage, Store
from relay.tasks import cancel_and_wait

log = logging.getLogger("relay.notify")

BATCH = 20


class Notifier:
    def __init__(self, store: Store, config: Config, clock: Callable[[], float] = time.time):
        self.store = store
        self.config = config
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.duty: Callable[[], bool] = lambda: True
        """Whether this process sends; with many nodes only the holder of the notifier
        lease does (relay/cluster/duties.py), so no family is emailed twice."""

    @property
    def destination(self) -> str:
        """Where messages go, for the start-up banner."""
        c = self.config
        return f"smtp://{c.smtp_host}:{c.smtp_port}" if c.smtp_host else str(c.outbox_path)

    def wake(self) -> None:
        """Send now rather than at the next poll (a handler just queued something)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            try:
                if self.duty():
                    await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification pass failed; trying again at the next poll")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.notify_poll_s)
            self._wake.clear()

    async def run_once(self) -> int:
        """One pass; returns how many messages were delivered."""
        now = self.clock()
        feeder.feed_booking_events(self.store, self.config, now)
        feeder.queue_reminders(self.store, self.config, now)
        sent = 0
        for msg in self.store.due_messages(now, BATCH):
            try:
                await self._deliver(msg)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                self._failed(msg, exc)
                continue
            self.store.message_sent(msg.id, self.clock())
            sent += 1
        return sent

    def _failed(self, msg: OutboxMessage, exc: Exception) -> None:
        delays = self.config.notify_retry_s
        retry_at = self.clock() + delays[msg.attempts] if msg.attempts < len(delays) else None
        self.store.message_failed(msg.id, type(exc).__name__, retry_at)
        log.warning(
            "message %s not sent (%s, attempt %d)%s",
            msg.id,
            type(exc).__name__,
            msg.attempts + 1,
            "" if retry_at else "; giving up",
        )

    def compose(self, msg: OutboxMessage) -> EmailMessage:
        subject, body = render_email(msg.language, msg.template, msg.params)
        email = EmailMessage()
        email["From"] = self.config.smtp_from
        email["To"] = msg.to_addr
        email["Subject"] = subject
        email["Date"] = formatdate(self.clock(), localtime=False)
        email["Message-ID"] = make_msgid(domain="relay.invalid")
        email.set_content(body)
        email["Content-Language"] = msg.language  # after set_content, which resets Content-*
        return email

    async def _deliver(self, msg: OutboxMessage) -> None:
        email = self.compose(msg)
        c = self.config
        if not c.smtp_host:
            await asyncio.to_thread(self._write_eml, msg.id, bytes(email))
            return
        await aiosmtplib.send(
            email,
            hostname=c.smtp_host,
            port=c.smtp_port,
            username=c.smtp_user or None,
            password=c.smtp_password or None,
            use_tls=c.smtp_tls == "tls",
            start_tls=c.smtp_tls == "starttls",
            timeout=c.notify_timeout_s,
        )

    def _write_eml(self, message_id: int, data: bytes) -> None:
        folder = self.config.outbox_path
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        path = folder / f"{message_id:08d}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
