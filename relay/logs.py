"""Structured logs: one JSON object a line, with the call id and leg where there is one.

Secrets never reach here: the code logs codes and ids, never tokens, passwords or keys, and
this formatter also masks anything that looks like a join token or a key in a message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

_SECRETISH = re.compile(r"(token=|secret=|password=|key=)[^\s&\"']+", re.I)
_FIELDS = ("call_id", "leg", "code", "remote")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _SECRETISH.sub(r"\1***", record.getMessage()),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_aiohttp()


# --- access log and aiohttp's own noise ------------------------------------------------------

POLLED_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics")
"""Successful reads under these are polling (the console asks every 2 s, Prometheus scrapes):
logged at debug so ``make run``'s banner does not scroll away; writes, refusals, errors,
pages and sockets stay at info."""


class AccessLogger(AbstractAccessLogger):
    """One line a request: ``remote "METHOD path" status bytes seconds`` (query values that
    look secret are masked by the formatter). Pass as ``access_log_class``."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        polled = (
            request.method in ("GET", "HEAD")
            and response.status < 400
            and request.path.startswith(POLLED_PREFIXES)
        )
        level = logging.DEBUG if polled else logging.INFO
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level, '%s "%s %s" %s %s %.3fs', request.remote, request.method,
                request.path_qs[:300], response.status, response.body_length, time,
                extra={"remote": request.remote},
            )


class BadRequestLine(logging.Filter):
    """aiohttp logs a whole traceback for each request it cannot parse (an over-long header,
    a malformed line) and answers 400: make that one warning line with the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "bad request from %s refused with %s: %s"
            reason = " ".join(str(exc.message).split())[:200]  # aiohttp's spans lines
            record.args = (remote, exc.code or 400, reason)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_BAD_REQUESTS = BadRequestLine()


def quiet_aiohttp() -> None:
    """Install the one-line filter on aiohttp's server logger (idempotent)."""
    server = logging.getLogger("aiohttp.server")
    if _BAD_REQUESTS not in server.filters:
        server.addFilter(_BAD_REQUESTS)
