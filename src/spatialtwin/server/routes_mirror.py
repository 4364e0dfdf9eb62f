"""Routes of the smart-mirror protocol (`docs/mirror-protocol.md`):

- `GET /api/v1/mirror/sessions` — the mirror's WebSocket (hello, camera frames, results);
- `GET /api/v1/mirror/watch?code=CODE` — a watcher's read-only WebSocket;
- `GET /api/v1/mirror/sessions/{session_id}/garments/{stream}.glb?access=KEY` — a stream's
  display mesh in stream order (404 once the session ended);
- the twin's body for a session is `GET /api/v1/twins/{id}/body.glb?access=KEY`
  (`routes_twins`, which asks `body_access` here).

The socket machinery is `server.mirror_socket`, the sessions `live.mirror_service`; both are
imported on the first mirror request, so a server that never sees a mirror does not pay for
the live pipeline at start. `install(app)` adds the routes' state: the `MirrorHub` under
`MIRROR`, and the shutdown hook that ends every session with close 1001 before the
services close. A server of a fleet (setting `mirror_fleet`, which `spatialtwin serve --redis`
sets) starts the mirror service as soon as its services are ready: it must hear the fleet's
requests for the sessions it holds and be ready to take one over (`live.session_registry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.roles import SYSTEM
from spatialtwin.server import keys
from spatialtwin.server.loading import LOADER
from spatialtwin.services.access import acting_as

if TYPE_CHECKING:
    from spatialtwin.live.mirror_service import MirrorService
    from spatialtwin.server.mirror_socket import Peer

log = logging.getLogger("spatialtwin.mirror")
routes = web.RouteTableDef()
_ACCESS = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_SESSION = re.compile(r"^ms_[0-9a-f]{24}$")


class MirrorHub:
    """The app's mirror service (made on first use) and its open sockets."""

    def __init__(self) -> None:
        self.service: MirrorService | None = None
        self.peers: set[Peer] = set()
        self._lock = asyncio.Lock()
        self._closed = False
        self._opening: asyncio.Task[MirrorService] | None = None

    def open_early(self, app: web.Application) -> None:
        """A fleet's server: open the service in the background once the services load
        (a failure is logged; the first mirror request tries again)."""

        async def opening() -> MirrorService:
            try:
                return await self.open(app)
            except Exception:
                log.exception("mirror service did not start")
                raise

        self._opening = asyncio.create_task(opening(), name="mirror-open")
        self._opening.add_done_callback(_consume)

    async def get(self, request: web.Request) -> MirrorService:
        if self.service is not None:
            return self.service
        return await self.open(request.app)

    async def open(self, app: web.Application) -> MirrorService:
        """Make and start the service (once), after the services loaded."""
        services = await app[LOADER].ready()  # waits while the services load
        async with self._lock:
            if self.service is None:
                if self._closed:
                    raise SpatialTwinError(
                        "server_shutdown", "the server is shutting down", status=503
                    )
                from spatialtwin.live.mirror_service import MirrorOptions, MirrorService

                settings = app[keys.SETTINGS]
                service = MirrorService(services, MirrorOptions.from_settings(settings))
                with acting_as(SYSTEM):  # its watch tasks act for no one request's caller
                    try:
                        await service.start()
                    except BaseException:  # cancelled by a shutdown mid-start: stop its tasks
                        with contextlib.suppress(Exception):
                            await asyncio.shield(service.close())
                        raise
                self.service = service
        return self.service

    async def close(self) -> None:
        """End every session (close 1001, `ended: server_shutdown`), close the other
        sockets the same way, and wait (bounded) for their handlers to finish."""
        self._closed = True
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._opening
        if self.service is not None:
            await self.service.close()
        for peer in list(self.peers):
            peer.end(1001, "server_shutdown", "server_shutdown")
        deadline = asyncio.get_running_loop().time() + 5.0
        while self.peers and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)


MIRROR = web.AppKey("mirror", MirrorHub)


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def install(app: web.Application) -> None:
    """The hub and its shutdown hook (`on_shutdown` runs before aiohttp waits for handlers
    and before the services' cleanup); in a fleet, the service opened at the start."""
    app[MIRROR] = MirrorHub()

    async def open_in_fleet(app: web.Application) -> None:
        if app[keys.SETTINGS].get("mirror_fleet"):
            app[MIRROR].open_early(app)

    async def close_sessions(app: web.Application) -> None:
        await app[MIRROR].close()

    app.on_startup.append(open_in_fleet)
    app.on_shutdown.append(close_sessions)


@routes.get("/api/v1/mirror/sessions")
async def mirror_socket(request: web.Request) -> web.StreamResponse:
    from spatialtwin.server.mirror_socket import MirrorPeer, serve_socket

    hub = request.app[MIRROR]
    service = await hub.get(request)
    devices = service.services.devices
    options = service.options
    return await serve_socket(
        request,
        service,
        MirrorPeer,
        options.max_frame_bytes + 24,
        lambda peer: peer.run(devices),
        hub.peers,
    )


@routes.get("/api/v1/mirror/watch")
async def watch_socket(request: web.Request) -> web.StreamResponse:
    from spatialtwin.server.mirror_socket import WatcherPeer, serve_socket

    hub = request.app[MIRROR]
    service = await hub.get(request)
    code = request.query.get("code", "")[:16]
    return await serve_socket(
        request,
        service,
        WatcherPeer,
        service.options.max_text_bytes,
        lambda peer: peer.run(code),
        hub.peers,
    )


def _access_key(request: web.Request) -> str:
    key = request.query.get("access", "")
    if not _ACCESS.match(key):
        raise SpatialTwinError(
            "session_not_found", "no live session with this id and access key", status=404
        )
    return key


@routes.get(r"/api/v1/mirror/sessions/{session_id}/garments/{stream:\d{1,5}}.glb")
async def garment_mesh(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    if not _SESSION.match(session_id):
        raise SpatialTwinError("session_not_found", "no such session", status=404)
    service = await request.app[MIRROR].get(request)
    glb = await service.garment_glb(
        session_id, int(request.match_info["stream"]), _access_key(request)
    )
    return web.Response(
        body=glb, content_type="model/gltf-binary", headers={"Cache-Control": "private, no-store"}
    )


async def body_access(request: web.Request, twin_id: str) -> str:
    """The channel a body GLB request with `?access=` is served for (`mirror`), once a live
    session of this twin holds that key; 404 otherwise."""
    key = _access_key(request)
    hub = request.app.get(MIRROR)
    fleet = bool(request.app[keys.SETTINGS].get("mirror_fleet"))
    if hub is None or (hub.service is None and not fleet):
        raise SpatialTwinError(
            "session_not_found", "no live session of this twin holds this access key", status=404
        )
    service = await hub.get(request)  # in a fleet the session may be another server's
    await service.check_body_access(twin_id, key)
    return "mirror"


def mirror_stats(app: web.Application) -> dict[str, Any]:
    """Counts for operators and tests: sessions, sockets, closes by code."""
    hub = app[MIRROR]
    service = hub.service
    with contextlib.suppress(AttributeError):
        if service is not None:
            return {
                "sessions": len(service.sessions),
                "sockets": len(hub.peers),
                "opened": service.stats.opened,
                "resumed": service.stats.resumed,
                "ended": dict(service.stats.ended),
                "closes": dict(service.stats.closes),
                "results_dropped": service.stats.results_dropped,
                "live_builds": service.builds.builds,
                "taken_over": service.stats.taken_over,
                "server": service.fleet.server_id if service.fleet is not None else None,
            }
    return {"sessions": 0, "sockets": len(hub.peers)}
