"""How `spatialtwin serve` and `spatialtwin worker` are told to join a fleet, and the check
they make before anything else.

    spatialtwin serve  --redis redis://10.0.0.5:6379/0 --blobs /srv/spatialtwin/blobs
    spatialtwin worker --redis redis://10.0.0.5:6379/0 --blobs /srv/spatialtwin/blobs

`--redis` (or `SPATIALTWIN_REDIS_URL`) selects `RedisStore` and Dramatiq's broker on that
Redis; `--blobs` (or `SPATIALTWIN_BLOBS`) is the blob folder every process of the fleet shares.
Without `--redis` the embedded store in `--data` is used, as always. A Redis that does not
answer at the start is one line naming the URL (its password left out) and exit status 2
(`check_redis`): a unit manager sees why, and restarts the process later.
`--setting KEY=VALUE` passes a service setting (VALUE as JSON): `look_max_frames=40`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from spatialtwin.errors import SpatialTwinError, StoreUnavailableError

_SETTING_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_REDIS_URL = re.compile(r"^(redis|rediss|unix)://\S+$")
CHECK_TIMEOUT_S = 3.0


def setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE read as JSON (a bare word is a string): `look_max_frames=40`."""
    key, sep, value = text.partition("=")
    if not sep or not _SETTING_KEY.match(key):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a snake_case key: {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """`--redis`, `--blobs`, `--setting` (what `serve` and `worker` both take)."""
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("SPATIALTWIN_REDIS_URL") or None,
        help="join a fleet: records, pub/sub and jobs on Redis at redis://HOST:PORT/DB "
        "(env SPATIALTWIN_REDIS_URL); default: the embedded store in --data",
    )
    parser.add_argument(
        "--blobs",
        type=Path,
        metavar="DIR",
        default=os.environ.get("SPATIALTWIN_BLOBS") or None,
        help="with --redis: the blob folder every server and worker shares (env SPATIALTWIN_BLOBS)",
    )
    parser.add_argument(
        "--setting",
        type=setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a service setting, VALUE as JSON (look_max_frames=40, job_lease_s=30); repeatable",
    )


def fleet_store(args: argparse.Namespace) -> tuple[str, Path] | None:
    """(Redis URL, blob folder) when the command line asks for the fleet's store, None for
    the embedded one; a `SpatialTwinError` (exit status 2) for a half-given choice."""
    if args.redis is None:
        return None
    if not _REDIS_URL.match(args.redis):
        raise SpatialTwinError(
            "invalid_arguments", f"--redis takes a redis://HOST:PORT/DB URL, not {args.redis!r}"
        )
    if args.blobs is None:
        raise SpatialTwinError(
            "invalid_arguments", "--redis needs --blobs DIR (or SPATIALTWIN_BLOBS)"
        )
    return str(args.redis), Path(args.blobs)


def check_redis(url: str, blobs_dir: Path) -> str | None:
    """None when Redis at `url` answers a PING within `CHECK_TIMEOUT_S`, else the one line
    to print."""
    from spatialtwin.store.redis_store import RedisStore

    async def ping() -> None:
        store = RedisStore(url, blobs=blobs_dir, socket_timeout_s=CHECK_TIMEOUT_S)
        try:
            await store.check()
        finally:
            await store.close()

    try:
        asyncio.run(ping())
    except StoreUnavailableError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        reason = " ".join(str(detail.get("reason", "")).split())
        return f"spatialtwin: error: cannot reach Redis at {detail.get('url', '?')}: {reason}"
    return None
