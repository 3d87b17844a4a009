"""``python -m relay``: the relay on its embedded defaults (or RELAY_* settings)."""

from __future__ import annotations

import os
import ssl
import sys

import uvloop
from aiohttp import web

from relay import logs
from relay.app import build_app, seed_banner
from relay.config import Config


def main() -> int:
    config = Config.from_env()
    os.umask(0o077)  # whatever the relay writes (keys, database, recordings) is its own
    logs.setup()
    try:
        app = build_app(config)
    except Exception as exc:  # a clear start-up error (bad config, unreadable model, ...)
        print(f"relay: cannot start: {exc}", file=sys.stderr)
        return 2
    if config.seed_demo:
        print(seed_banner(app), flush=True)
    print(f"relay listening on {config.base_url} (media on {', '.join(config.media_addresses)})",
          flush=True)
    context = None
    if config.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.tls_cert, config.tls_key)
    web.run_app(app, host=config.host, port=config.port, ssl_context=context, print=None,
                shutdown_timeout=config.shutdown_grace_s, loop=uvloop.new_event_loop(),
                access_log_class=logs.AccessLogger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
