"""Requests per token per minute: a launch-day crowd or a runaway integrator cannot starve the rest.

Each caller gets `rate_limit_per_minute` requests (server setting; default 600, 0 switches the
limit off) in a fixed one-minute window that opens with its first request; the next one is
refused **429** `rate_limited` with `Retry-After` (whole seconds until the window closes) and
never reaches its handler, so it changes nothing. A token counts by its id (`jti`; a device
token by its device), an anonymous shopper by the client's address. Probes (`/healthz`,
`/readyz`, `/metrics`) are not counted: a load balancer must always see the truth; nor are
static pages and vendor modules (only `/api/`). Behind the front proxy on the same host the
shopper's address is the proxy's `X-Real-IP` (`client_address`).

The counts live in this process (a fleet's server each holds its own); the table is pruned of
closed windows once it passes `MAX_TRACKED_CALLERS`, so a flood of distinct addresses costs
bounded memory. It runs after `auth.authorize` (it needs the caller the token proved).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.server.auth import caller_of
from spatialtwin.server.keys import SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
ENV = "SPATIALTWIN_RATE_LIMIT_PER_MINUTE"  # the test suite sets it to 0 (tests/conftest.py)
WINDOW_SECONDS = 60.0
MAX_TRACKED_CALLERS = 100_000
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
API_PREFIX = "/api/"  # static pages and vendor modules (a page loads dozens) are not counted
LOOPBACK = frozenset({"127.0.0.1", "::1"})


class RateLimitedError(SpatialTwinError):
    """429 with the seconds to wait; `json_errors` turns `retry_after_s` into `Retry-After`."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            "rate_limited",
            f"more than {limit} requests in a minute; retry after {retry_after_s} s",
            {"limit_per_minute": limit, "retry_after_s": retry_after_s},
            status=429,
        )
        self.retry_after_s = retry_after_s


@dataclass
class RateLimiter:
    """Fixed one-minute windows per caller key; `clock` is monotonic seconds (tests pass one)."""

    limit_per_minute: int
    clock: Callable[[], float] = time.monotonic
    windows: dict[str, tuple[float, int]] = field(default_factory=dict)

    def hit(self, key: str) -> None:
        """Count one request of `key`; raise `RateLimitedError` past the limit."""
        now = self.clock()
        start, count = self.windows.get(key, (now, 0))
        if now - start >= WINDOW_SECONDS:
            start, count = now, 0
        if count >= self.limit_per_minute:
            wait_s = max(1, math.ceil(start + WINDOW_SECONDS - now))
            raise RateLimitedError(self.limit_per_minute, wait_s)
        if key not in self.windows and len(self.windows) >= MAX_TRACKED_CALLERS:
            self._prune(now)
        self.windows[key] = (start, count + 1)

    def _prune(self, now: float) -> None:
        closed = [k for k, (s, _) in self.windows.items() if now - s >= WINDOW_SECONDS]
        for k in closed:
            del self.windows[k]
        if len(self.windows) >= MAX_TRACKED_CALLERS:  # all open: forget the oldest half
            oldest = sorted(self.windows, key=lambda k: self.windows[k][0])
            for k in oldest[: len(oldest) // 2]:
                del self.windows[k]


def client_address(request: web.Request) -> str:
    """The shopper's address: behind the front proxy on this host (`deploy/nginx`, which sets
    `X-Real-IP` to its client's address) every request comes from loopback, and counting them
    as one caller would hold a whole shop to one shopper's limit; a header from anyone else is
    ignored (a client could name any address)."""
    remote = request.remote or ""
    forwarded = request.headers.get("X-Real-IP", "").strip()
    if remote in LOOPBACK and forwarded and len(forwarded) <= 45:
        return forwarded
    return remote


def caller_key(request: web.Request) -> str:
    caller = caller_of(request)
    if caller.is_anonymous:
        return f"ip:{client_address(request)}"
    return f"token:{caller.token_id or caller.role + ':' + caller.subject}"


def configured_limit(setting: object) -> int:
    """The server setting, else `SPATIALTWIN_RATE_LIMIT_PER_MINUTE`, else the default."""
    raw = setting if setting is not None else os.environ.get(ENV, DEFAULT_RATE_LIMIT_PER_MINUTE)
    try:
        limit = int(str(raw))
    except ValueError:
        raise SpatialTwinError(
            "invalid_setting", f"{ENV} must be a whole number", {"value": str(raw)[:40]}
        ) from None
    if not 0 <= limit <= 10_000_000:
        raise SpatialTwinError("invalid_setting", "rate limit out of range", {"value": limit})
    return limit


def middleware() -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The app's rate-limit middleware; its limiter is made from the app's settings on the
    first request (settings are complete only once `create_app` has merged them)."""
    made: list[RateLimiter | None] = []  # this app's limiter, once its settings are known

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX) or request.path in EXEMPT_PATHS:
            return await handler(request)
        if not made:
            limit = configured_limit(request.app[SETTINGS].get("rate_limit_per_minute"))
            made.append(RateLimiter(limit) if limit > 0 else None)
        limiter = made[0]
        if limiter is not None:
            limiter.hit(caller_key(request))
        return await handler(request)

    return rate_limit
