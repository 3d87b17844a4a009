"""The pages people open (family call page, staff console) and their static files.

Every page is served with the same security headers: a strict CSP (no inline script),
``frame-ancestors 'none'``, ``nosniff``, no referrer, no caching.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

PAGES = {"/join": "family.html", "/console": "console.html"}


def page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers=PAGE_HEADERS)

    return handler


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console")


def add_routes(app: web.Application) -> None:
    for path, name in PAGES.items():
        app.router.add_get(path, page(name))
    app.router.add_get("/", _home)
    app.router.add_static("/static/", STATIC, name="static")


async def html_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every HTML answer gets ``PAGE_HEADERS``, whatever route made it
    (routed pages, ``/static/*.html``, error pages, pages added later), so no page can be
    served without the CSP, ``frame-ancestors`` and ``nosniff`` by forgetting a header."""
    if response.content_type == "text/html" or response.headers.get(
        "Content-Type", ""
    ).startswith("text/html"):
        response.headers.update(PAGE_HEADERS)
