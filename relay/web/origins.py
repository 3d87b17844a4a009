"""Which hosts and origins the relay answers: DNS rebinding and cross-site requests.

* **Host**: every request's ``Host`` header must name this relay. A DNS-rebinding page
  (``http://evil.example`` re-pointed at 127.0.0.1) reaches the relay with
  ``Host: evil.example`` and no cookies; it gets 421 ``unknown_host`` before any handler runs.
  Allowed (by name: the port does not matter to rebinding, and a TLS-terminating proxy
  changes it): the host of every allowed origin, the names in ``allowed_hosts``, any
  loopback name (``localhost``, ``127.x``, ``::1``) on any port when the relay is bound to
  loopback (development and tests: ``make run`` works out of the box), and any IP literal when
  it is bound to every interface (an IP literal cannot be rebound).
* **Origin**: a state-changing request (POST, PUT, PATCH, DELETE) from a browser must come
  from an allowed origin or from the relay's own origin, compared as scheme + host + port
  (``http://relay`` is not ``https://relay``); ``Origin: null`` and
  ``Sec-Fetch-Site: cross-site`` are refused (403 ``cross_origin``). Clients that send no
  Origin (the laptop, scripts) are not browsers and pass.

The allowed origins are ``Config.allowed_origins``, or by default the one the relay prints
(``Config.base_url``: ``public_url``, else derived from ``host`` and ``port``). Both
middlewares cover every route of the app, whoever adds it.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import NamedTuple
from urllib.parse import urlsplit

from aiohttp import web

from relay import keys
from relay.config import Config

log = logging.getLogger("relay.web.origins")

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
MAX_HOST_CHARS = 255


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` normalised (lower case, default port filled in), or None."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


def host_name(header: str) -> str | None:
    """The name a Host header asks for (lower case, port dropped), or None when malformed."""
    if len(header) > MAX_HOST_CHARS or not header.isascii() or "@" in header:
        return None
    origin = parse_origin(f"http://{header}")
    if origin is None or "/" in header or "?" in header or "#" in header:
        return None
    return origin.host


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def _is_loopback(name: str) -> bool:
    ip = _ip(name)
    return name == "localhost" or (ip is not None and ip.is_loopback)


class Origins:
    """The allowed hosts and origins of one relay, from its configuration."""

    def __init__(self, config: Config) -> None:
        configured = config.allowed_origins or (config.base_url,)
        self.origins = frozenset(o for o in map(parse_origin, configured) if o is not None)
        self.names = frozenset(
            [o.host for o in self.origins] + [h.lower() for h in config.allowed_hosts]
        )
        self.loopback_bind = _is_loopback(config.host)
        self.wildcard_bind = config.host in _WILDCARDS

    def host_allowed(self, header: str | None) -> bool:
        if header is None:
            return True  # HTTP/1.0 without Host: not a browser, so not a rebinding page
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        if self.loopback_bind and _is_loopback(name):
            return True
        return self.wildcard_bind and _ip(name) is not None

    def origin_allowed(self, origin: str, own: Origin | None) -> bool:
        parsed = parse_origin(origin)
        return parsed is not None and (parsed in self.origins or parsed == own)


def _origins(request: web.Request) -> Origins:
    found = request.config_dict.get(keys.ORIGINS)
    return found if found is not None else Origins(request.config_dict[keys.CONFIG])


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def check_host(request: web.Request, handler) -> web.StreamResponse:
    """421 for a Host header that does not name this relay (DNS rebinding)."""
    if not _origins(request).host_allowed(request.headers.get("Host")):
        log.info("unknown host refused: %s %.60r", request.method, request.headers.get("Host"))
        return _refuse(421, "unknown_host", "this relay does not answer for that host name")
    return await handler(request)


@web.middleware
async def same_origin(request: web.Request, handler) -> web.StreamResponse:
    """Refuse state-changing requests a browser sends from another origin (CSRF defence in
    depth behind the SameSite=Strict cookie)."""
    if request.method in _UNSAFE:
        origin = request.headers.get("Origin")
        own = parse_origin(f"{request.scheme}://{request.host}")
        if request.headers.get("Sec-Fetch-Site") == "cross-site" or (
            origin is not None and not _origins(request).origin_allowed(origin, own)
        ):
            log.warning(
                "cross-origin %s %s refused (origin %.100r)", request.method, request.path, origin
            )
            return _refuse(403, "cross_origin", "requests from another site are refused")
    return await handler(request)
