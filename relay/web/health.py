"""Liveness, readiness and Prometheus metrics for operations."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay import keys, metrics

LOOP_LAG_INTERVAL_S = 0.1


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    problems = [] if request.config_dict[keys.REGISTRY].accepting else ["shutting down"]
    for check in request.config_dict[keys.READY_CHECKS]:
        problem = check()
        if problem:
            problems.append(problem)
    status = 200 if not problems else 503
    return web.json_response({"ready": not problems, "problems": problems}, status=status)


async def metrics_handler(request: web.Request) -> web.Response:
    request.config_dict[keys.REGISTRY].update_call_gauges()
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def loop_lag_probe(interval: float = LOOP_LAG_INTERVAL_S) -> None:
    """How late the event loop wakes up: the relay's own saturation signal."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - start - interval))


def add_routes(app: web.Application, with_metrics: bool) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if with_metrics:
        app.router.add_get("/metrics", metrics_handler)


async def serve_metrics_apart(app: web.Application, host: str, port: int) -> web.AppRunner:
    """/metrics on its own address (e.g. an internal interface), not next to signalling."""
    metrics_app = web.Application()
    metrics_app[keys.REGISTRY] = app[keys.REGISTRY]
    metrics_app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
