"""`spatialtwin serve`: run the HTTP server, on the embedded store or as one server of a fleet.

    spatialtwin serve --data var/data                                     # the default
    spatialtwin serve --redis redis://10.0.0.5:6379/0 --blobs /srv/blobs  # one of a fleet

The server listens before its services have loaded (`server.loading`): it answers `/healthz`
within a second of the start, and requests that need the services wait for them. With
`--redis` (or `SPATIALTWIN_REDIS_URL`) records and pub/sub are on Redis, blobs in the shared
`--blobs` folder, and jobs go to `spatialtwin worker --redis` processes (`server.fleet`); such a
server seeds no samples unless `--seed` asks. Redis unreachable at the start: one line naming
the URL and exit status 2; Redis lost later: 503 `store_unavailable` with `Retry-After` until it
is back, and the server reconnects by itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from spatialtwin.server.fleet import add_store_arguments, check_redis, fleet_store

if TYPE_CHECKING:
    from aiohttp import web


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the HTTP server (embedded store; a fleet's with --redis)")
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
        "--seed", action="store_true", help="with --redis: seed sample twins (workers make them)"
    )
    add_store_arguments(p)
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
    fleet = fleet_store(args)
    if fleet is not None and (problem := check_redis(*fleet)) is not None:
        print(problem, file=sys.stderr)  # before the HTTP layer's imports: said at once
        return 2

    from aiohttp import web

    from spatialtwin.server.app import create_app, fleet_factories
    from spatialtwin.server.logs import configure_logging

    configure_logging(args.log_level)
    settings = {"accel_redirect": args.accel_redirect} if args.accel_redirect else None
    if args.setting:
        settings = {**(settings or {}), **dict(args.setting)}
    if fleet is None:
        from spatialtwin.cli.keys import first_start_keys

        first_start_keys(args.data)  # keys made on a fresh data directory; demo tokens shown
        app = create_app(
            args.data, seed=not args.no_seed, settings=settings, services_after_listening=True
        )
    else:
        store_factory, queue_factory = fleet_factories(*fleet)
        # mirror sessions are described in Redis: any server resumes, watches, serves them
        settings = {"mirror_fleet": True, **(settings or {})}
        app = create_app(
            args.data,
            seed=args.seed and not args.no_seed,
            settings=settings,
            store_factory=store_factory,
            queue_factory=queue_factory,
            services_after_listening=True,
        )
    log = logging.getLogger("spatialtwin.server")

    async def announce(app: web.Application) -> None:
        url = f"http://{args.host}:{args.port}/"
        print(f"SpatialTwin is serving {url}", flush=True)
        where = {"data": str(args.data)} if fleet is None else {"blobs": str(fleet[1])}
        log.info("listening", extra={"fields": {"url": url, **where}})

    app.on_startup.append(announce)
    web.run_app(
        app, host=args.host, port=args.port, print=None, shutdown_timeout=10, access_log=None
    )
    return 0
