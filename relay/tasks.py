"""Background tasks that services start with the app and stop with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished, so nothing it owns is used
    after the service that started it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def every(interval_s: float, tick: Callable[[], object], what: str) -> None:
    """Call ``tick`` every ``interval_s`` until cancelled. A tick that raises is logged and
    the next one runs: a bug in a watcher must stop neither the calls nor the watcher."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            tick()
        except Exception:
            log.exception("%s failed", what)
