"""`spatialtwin serve`: run the HTTP server on the embedded store.

The server listens before its services have loaded (`server.loading`): it answers `/healthz`
within a second of the start, and requests that need the services wait for them.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
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
    p.add_argument(
        "--accel-redirect",
        type=_accel_prefix,
        default=os.environ.get("SPATIALTWIN_ACCEL_REDIRECT") or None,
        metavar="PREFIX",
        help="behind nginx: answer blob downloads with X-Accel-Redirect to PREFIX (nginx's "
        "internal location aliasing the blob folder, e.g. /_spatialtwin_blobs/; "
        "env SPATIALTWIN_ACCEL_REDIRECT)",
    )
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def _accel_prefix(value: str) -> str:
    """An absolute URL path ending in `/` (nginx's internal location), no `.`/`..` segments."""
    if not re.fullmatch(r"/(?:(?!\.+/)[A-Za-z0-9._~-]+/)+", value):
        raise argparse.ArgumentTypeError(f"not a URL path like /_spatialtwin_blobs/: {value!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from spatialtwin.server.app import create_app
    from spatialtwin.server.logs import configure_logging

    configure_logging(args.log_level)
    settings = {"accel_redirect": args.accel_redirect} if args.accel_redirect else None
    app = create_app(
        args.data, seed=not args.no_seed, settings=settings, services_after_listening=True
    )
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
