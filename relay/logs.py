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
