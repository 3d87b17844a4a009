"""Who a family request comes from when it carries the ``relay_family`` session cookie.

Kept apart from relay/web/api.py so the request context (``Ctx.visitor_id``) and the
family account handlers share one check without importing each other.
"""

from __future__ import annotations

from aiohttp import web

from relay import keys
from relay.records.store import Account

FAMILY_COOKIE = "relay_family"


def session_account(request: web.Request) -> Account | None:
    """The family account whose session cookie this request carries, or None."""
    cookie = request.cookies.get(FAMILY_COOKIE)
    if not cookie or len(cookie) > 200:
        return None
    now = request.config_dict[keys.CLOCK]()
    return request.config_dict[keys.STORE].session_account(cookie, now)
