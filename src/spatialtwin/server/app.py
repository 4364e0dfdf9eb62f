"""The aiohttp application: routes, services and their lifetimes.

`create_app` wires the store, the executor for CPU-heavy work (meshing, skinning, GLB writing
never run on the event loop), the services with their in-process job queue, and the route
tables; `cleanup_ctx` opens and closes them, so a SIGTERM drains requests and releases
everything. Opening migrates older records (`store.schema`) and takes up the jobs a stopped
process left; seeding runs in the background after the server listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from spatialtwin import __version__
from spatialtwin.jobs.runner import LEASE_S, InProcessJobQueue
from spatialtwin.server import keys, routes_garments, routes_jobs, routes_lod, routes_looks
from spatialtwin.server.middleware import install_http_layer_errors, json_errors
from spatialtwin.server.routes_twins import routes as twin_routes
from spatialtwin.server.seed import SeedState, seed_samples
from spatialtwin.services import job_kinds
from spatialtwin.services.context import Services
from spatialtwin.store.base import Store
from spatialtwin.store.embedded import EmbeddedStore

log = logging.getLogger("spatialtwin.server")
PROJECT_ROOT = Path(__file__).resolve().parents[3]
MAX_UPLOAD_BYTES = 200 * 1024 * 1024

ROUTE_MODULES = (routes_garments, routes_jobs, routes_looks, routes_lod)


async def healthz(request: web.Request) -> web.Response:
    """Liveness, and readiness: `ok` once seeding (if any) has put the samples in the store."""
    seed = request.app.get(keys.SEED)
    if seed is None:
        return web.json_response({"status": "ok", "version": __version__})
    body = {"status": seed.status, "version": __version__, "seed": seed.to_json()}
    return web.json_response(body)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[keys.PROJECT_ROOT] / "web_client" / "index.html")


def _static_routes(app: web.Application, root: Path) -> None:
    app.router.add_get("/", index)
    if (root / "web_client").is_dir():
        app.router.add_static("/web/", root / "web_client")
    vendor = {
        "/vendor/three/": root / "node_modules" / "three",
        "/vendor/model-viewer/": root / "node_modules" / "@google" / "model-viewer" / "dist",
        "/vendor/meshoptimizer/": root / "node_modules" / "meshoptimizer",
    }
    for prefix, folder in vendor.items():
        if folder.is_dir():
            app.router.add_static(prefix, folder)
        else:
            log.warning(
                "missing front-end package; run `make demo`",
                extra={"fields": {"path": str(folder)}},
            )


def create_app(
    data_dir: str | Path,
    *,
    project_root: Path = PROJECT_ROOT,
    seed: bool = True,
    settings: dict[str, Any] | None = None,
    store_factory: Callable[[Path], Store] = EmbeddedStore,
) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_UPLOAD_BYTES + (1 << 20))
    app[keys.PROJECT_ROOT] = project_root
    app[keys.SETTINGS] = {"max_upload_bytes": MAX_UPLOAD_BYTES, "seed": seed, **(settings or {})}

    async def services(app: web.Application) -> AsyncIterator[None]:
        settings = app[keys.SETTINGS]
        store = store_factory(Path(data_dir))
        executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spatialtwin-cpu")
        opened = await Services.open(store, executor=executor, settings=settings)
        queue = InProcessJobQueue(
            store,
            job_kinds.kinds(opened),
            lease_s=float(settings.get("job_lease_s", LEASE_S)),
            concurrency=int(settings.get("job_concurrency", 2)),
        )
        opened.attach_jobs(queue)
        app[keys.STORE] = store
        app[keys.EXECUTOR] = executor
        app[keys.SERVICES] = opened
        app[keys.JOBS] = queue
        app[keys.TWINS] = opened.twins
        app[keys.GARMENTS] = opened.garments
        app[keys.LOOKS] = opened.looks
        app[keys.LOD] = opened.lod
        await queue.start()
        seeding: asyncio.Task[SeedState] | None = None
        if seed:
            app[keys.SEED] = state = SeedState()
            seeding = asyncio.create_task(seed_samples(opened, project_root / "assets", state))
        yield
        if seeding is not None:
            seeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await seeding
        await queue.close()
        executor.shutdown(wait=True, cancel_futures=True)
        await store.close()

    install_http_layer_errors(app)
    app.cleanup_ctx.append(services)
    app.router.add_get("/healthz", healthz)
    app.add_routes(twin_routes)
    for module in ROUTE_MODULES:
        app.add_routes(module.routes)
    _static_routes(app, project_root)
    return app
