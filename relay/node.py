"""This node's name and version, as metrics and the recordings index show them.

The name is a label value on ``relay_node_info`` and a column of the recordings a node writes,
so it must stay short and tame: 1-32 characters of ``a-z0-9-``, not starting or ending with
``-``. ``RELAY_NODE_ID`` sets it (a bad one stops the relay at start); empty, it comes from
the host name (its first label, lower-cased, other characters turned into ``-``) and the port,
so that two nodes on one machine never share a name: a node recovers the recordings left
``recording`` under its own name at start, and must not take another live node's for its own.
"""

from __future__ import annotations

import re
import socket
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

from relay.config import Config

NODE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def node_id(config: Config) -> str:
    """The validated node id (``ValueError`` names the setting when it is not one)."""
    if config.node_id:
        if not NODE_ID.fullmatch(config.node_id):
            raise ValueError(
                f"RELAY_NODE_ID {config.node_id[:40]!r} is not a node id: use 1-32 of a-z, 0-9 "
                "and '-', not starting or ending with '-'"
            )
        return config.node_id
    return from_hostname(socket.gethostname(), config.port)


def from_hostname(hostname: str, port: int) -> str:
    """``<host>-<port>``, the host part cut to fit 32 characters."""
    first = hostname.split(".", 1)[0].lower()
    host = re.sub(r"[^a-z0-9-]+", "-", first).strip("-")
    suffix = f"-{port}"
    host = host[: 32 - len(suffix)].strip("-") or "node"
    return host + suffix


@cache
def version() -> str:
    """The relay's version: the installed package's, else pyproject.toml's (a checkout)."""
    try:
        return metadata.version("visitrelay")
    except metadata.PackageNotFoundError:
        pass
    try:
        with open(_PYPROJECT, "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
