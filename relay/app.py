"""The aiohttp application: signalling, pages, health and metrics, wired to one registry."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from protocol import aiortc_glue
from protocol import messages as m
from relay import metrics
from relay.calls.registry import CallRegistry
from relay.config import Config
from relay.web.signalling import Admit, websocket_handler

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "web" / "static"


def create_app(config: Config, admit: Admit, registry: CallRegistry | None = None) -> web.Application:
    aiortc_glue.check_aiortc_version()
    aiortc_glue.bind_media_addresses(config.media_addresses)
    aiortc_glue.on_nack = metrics.count_nack
    app = web.Application(client_max_size=1024 * 1024)
    app["config"] = config
    app["admit"] = admit
    app["registry"] = registry or CallRegistry(config)
    app["sessions"] = set()
    app["cleanups"] = set()
    app["ready_checks"] = []
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if not config.metrics_host:
        app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/join", page("family.html"))
    app.router.add_get("/console", page("console.html"))
    app.router.add_get("/", lambda request: web.HTTPFound("/console"))
    app.router.add_static("/static/", STATIC, name="static")
    app.on_startup.append(_start_background)
    app.on_shutdown.append(_shutdown)
    return app


def page(name: str):
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers=_PAGE_HEADERS)

    return handler


_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    registry: CallRegistry = request.app["registry"]
    problems = [] if registry.accepting else ["shutting down"]
    for check in request.app["ready_checks"]:
        problem = check()
        if problem:
            problems.append(problem)
    status = 200 if not problems else 503
    return web.json_response({"ready": not problems, "problems": problems}, status=status)


async def metrics_handler(request: web.Request) -> web.Response:
    request.app["registry"].update_call_gauges()
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _loop_lag_probe(interval: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - start - interval))


async def _start_background(app: web.Application) -> None:
    app["background"] = [asyncio.ensure_future(_loop_lag_probe())]
    config: Config = app["config"]
    if config.metrics_host:
        # metrics on their own address (e.g. an internal interface), not next to signalling
        metrics_app = web.Application()
        metrics_app["registry"] = app["registry"]
        metrics_app.router.add_get("/metrics", metrics_handler)
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, config.metrics_host, config.metrics_port).start()
        app["metrics_runner"] = runner


async def _shutdown(app: web.Application) -> None:
    """Stop admitting; tell every leg the relay is restarting; close within the grace.

    Calls are not ended: their legs rejoin the next process (relay/calls/runtime.py).
    """
    registry: CallRegistry = app["registry"]
    registry.accepting = False
    for task in app.get("background", []):
        task.cancel()
    started = time.monotonic()
    for live in list(registry.calls.values()):
        live.policy.interrupt()
    for session in list(app["sessions"]):
        if session.leg is None:
            session.send_error(m.E_SHUTTING_DOWN, "the relay is restarting; try again shortly")
            asyncio.ensure_future(session.close(1012, "relay restarting"))
    grace = app["config"].shutdown_grace_s
    while (app["sessions"] or app["cleanups"]) and time.monotonic() - started < grace:
        await asyncio.sleep(0.05)
    for live in list(registry.calls.values()):
        for leg in live.call.everyone():
            await leg.pc.close()
    if "metrics_runner" in app:
        await app["metrics_runner"].cleanup()
    log.info("shutdown took %.2fs", time.monotonic() - started)
