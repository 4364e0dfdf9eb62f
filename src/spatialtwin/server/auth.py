"""Who is calling, checked before any handler runs: tokens, device tokens, the route's rule.

`authorize` (a middleware, inside `json_errors` so its refusals are JSON and logged) reads
`Authorization: Bearer <token>`:

- a signed token (`rights.tokens`, verified by the app's `KeyRing`) names role, tenant, scopes;
- a mirror's device token (`stm_…`, `services.devices`) acts with role `device`, its tenant
  the device's store, its subject the device id (a revoked device is refused, 401);
- no header: an anonymous shopper.

It then holds the caller to the matched route's rule (`server.policy`), keeps it on the
request (`caller_of(request)`) and acts as it for the handler (`services.access.acting_as`,
with `?region=` or `X-SpatialTwin-Region`: where the use happens, for licenses limited to
regions), so every service the handler calls sees who asks.

`install(app, keys_dir)` opens (or, on a fresh data directory, makes) the key folder when the
app starts; `keys_folder(data_dir, settings)` says which folder: `settings["keys_dir"]`, else
`$SPATIALTWIN_KEYS` (a fleet's servers share one), else `DATA/keys`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.roles import DEVICE, SHOPPER, Caller
from spatialtwin.server import policy
from spatialtwin.server.loading import ready_services
from spatialtwin.server.middleware import error_response
from spatialtwin.services.access import acting_as
from spatialtwin.services.auth import KeyRing

log = logging.getLogger("spatialtwin.auth")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEYRING = web.AppKey("keyring", KeyRing)
CALLER = web.RequestKey("caller", Caller)
DEVICE_PREFIX = "stm_"
_BEARER = re.compile(r"^Bearer ([A-Za-z0-9._~+/=-]{1,4096})$")
_SESSION = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
REGION_HEADER = "X-SpatialTwin-Region"
SESSION_HEADER = "X-SpatialTwin-Session"


def keys_folder(data_dir: Path, settings: dict[str, Any]) -> Path:
    configured = settings.get("keys_dir") or os.environ.get("SPATIALTWIN_KEYS")
    return Path(configured) if configured else Path(data_dir) / "keys"


def install(app: web.Application, keys_dir: Path) -> None:
    """Open the key folder (made with one key when absent) as the app starts."""

    async def open_keys(app: web.Application) -> None:
        ring, made = KeyRing.init(keys_dir)
        if made:
            log.info("made signing keys", extra={"fields": {"folder": str(keys_dir)}})
        app[KEYRING] = ring

    app.on_startup.append(open_keys)


def caller_of(request: web.Request) -> Caller:
    """The caller the middleware found for this request (a shopper when none was)."""
    return request.get(CALLER, SHOPPER)


def _unauthorised(code: str, message: str) -> SpatialTwinError:
    return SpatialTwinError(code, message, status=401)


async def authenticate(request: web.Request) -> Caller:
    header = request.headers.get("Authorization")
    if header is None:
        return SHOPPER
    match = _BEARER.match(header.strip())
    if match is None:
        raise _unauthorised(
            "token_invalid", "Authorization must be 'Bearer <token>' with one token"
        )
    token = match.group(1)
    if token.startswith(DEVICE_PREFIX):
        devices = (await ready_services(request)).devices
        try:
            device = await devices.verify(token)
        except SpatialTwinError as exc:
            raise _unauthorised("token_invalid", exc.message) from exc
        return Caller(DEVICE, str(device.get("store") or device["id"]), str(device["id"]))
    ring = request.app.get(KEYRING)
    if ring is None:
        raise _unauthorised("token_invalid", "this server holds no keys to verify tokens with")
    return ring.verify(token)


def _region(request: web.Request) -> str | None:
    return request.query.get("region") or request.headers.get(REGION_HEADER) or None


def _session(request: web.Request, caller: Caller) -> str:
    """Who counts as one shopper session for metering: the page's session header, else the
    token's id, else (an anonymous page that sends none) its address and browser, hashed."""
    value = request.headers.get(SESSION_HEADER)
    if value and _SESSION.match(value):
        return value
    if caller.token_id or not caller.is_anonymous:
        return caller.token_id or caller.subject  # a device token: the device
    seen = f"{request.remote}\n{request.headers.get('User-Agent', '')}".encode()
    return "anon-" + hashlib.sha256(seen).hexdigest()[:16]


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route
    resource = route.resource
    if resource is None:  # no route matched: aiohttp's 404/405 answers it
        return await handler(request)
    rule = policy.rule_for(request.method, resource.canonical)
    if rule is None:
        raise policy.undeclared(request.method, resource.canonical)
    try:
        caller = await authenticate(request)
        policy.check(rule, caller)
    except SpatialTwinError as exc:
        if exc.status != 401:
            raise
        response = error_response(exc.status, exc.code, exc.message, exc.detail)
        response.headers["WWW-Authenticate"] = "Bearer"  # RFC 6750: how to authenticate
        return response
    request[CALLER] = caller
    with acting_as(caller, _region(request), _session(request, caller)):
        return await handler(request)
