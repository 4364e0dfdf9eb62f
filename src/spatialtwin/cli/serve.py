"""`spatialtwin serve`: run the HTTP server on the embedded store.

The server listens before its services have loaded (`server.loading`): it answers `/healthz`
within a second of the start, and requests that need the services wait for them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the HTTP server (embedded store, no external service)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--data",
        type=Path,
        default=Path("var/data"),
        help="data directory of the embedded store (created if missing)",
    )
    p.add_argument("--no-seed", action="store_true", help="do not seed sample twins")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from spatialtwin.server.app import create_app
    from spatialtwin.server.logs import configure_logging

    configure_logging(args.log_level)
    app = create_app(args.data, seed=not args.no_seed, services_after_listening=True)
    log = logging.getLogger("spatialtwin.server")

    async def announce(app: web.Application) -> None:
        url = f"http://{args.host}:{args.port}/"
        print(f"SpatialTwin is serving {url}", flush=True)
        log.info("listening", extra={"fields": {"url": url, "data": str(args.data)}})

    app.on_startup.append(announce)
    web.run_app(
        app, host=args.host, port=args.port, print=None, shutdown_timeout=10, access_log=None
    )
    return 0
