"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, and helpers to
read the links the relay emails."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP


class Mailbox:
    """``async with Mailbox() as box``: ``box.port``; ``await box.wait(to, subject_part)``."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's hook
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    async def __aenter__(self) -> Mailbox:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="mail.test"), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def find(self, to: str, subject_part: str, since: int = 0) -> list[EmailMessage]:
        return [
            m
            for m in self.messages[since:]
            if m["To"] == to and subject_part.lower() in str(m["Subject"]).lower()
        ]

    async def wait(
        self, to: str, subject_part: str, timeout: float = 20.0, since: int = 0
    ) -> EmailMessage:
        """The latest message to ``to`` about ``subject_part`` among those received after the
        first ``since`` (pass ``len(box.messages)`` taken before the action)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(to, subject_part, since)
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
        subjects = [(m["To"], m["Subject"]) for m in self.messages]
        raise AssertionError(f"no email to {to} about {subject_part!r}; got {subjects}")


def body_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def link_token(msg: EmailMessage, action: str) -> str:
    """The one-use token in an emailed ``/app#<action>=<token>`` link."""
    m = re.search(rf"/app#{action}=([A-Za-z0-9_\-]+)", body_of(msg))
    assert m, body_of(msg)
    return m.group(1)
