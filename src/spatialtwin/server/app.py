"""The aiohttp application: routes, services and their lifetimes.

`create_app` wires the store, the executor for CPU-heavy work (meshing, skinning, GLB writing
never run on the event loop), the services with their job queue, and the route tables;
`cleanup_ctx` opens and closes them, so a SIGTERM drains requests and releases everything.
Opening migrates older records (`store.schema`) and takes up the jobs a stopped process left;
seeding runs in the background after the server listens. The store is the embedded one over a
data directory unless `store_factory` says otherwise; a fleet's server (`fleet_factories`:
`RedisStore`, jobs announced on Dramatiq for `spatialtwin worker --redis`) runs no job itself.

With `services_after_listening` (what `spatialtwin serve` asks for) the server listens as soon
as the HTTP layer and the store are open, and the services, with the numerics under them, load
meanwhile (`server.loading`); this module imports nothing heavy. On the 2-core EPYC that is
the first `/healthz` answer ~0.4 s after the process starts instead of ~3 s
(`bench/startup.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from spatialtwin import __version__
from spatialtwin.server import (
    keys,
    metrics,
    openapi,
    ratelimit,
    routes_garments,
    routes_jobs,
    routes_lod,
    routes_looks,
    routes_mirror,
    routes_products,
    routes_rights,
    routes_stills,
)
from spatialtwin.server.auth import authorize, keys_folder
from spatialtwin.server.auth import install as install_auth
from spatialtwin.server.loading import (
    LOADER,
    OpenedServices,
    QueueFactory,
    ServiceLoader,
    in_process_queue,
    tenant_job_limit,
)
from spatialtwin.server.middleware import install_http_layer_errors, json_errors
from spatialtwin.server.routes_twins import routes as twin_routes
from spatialtwin.server.seed import SeedState, seed_when_ready
from spatialtwin.store.base import Store
from spatialtwin.store.embedded import EmbeddedStore

log = logging.getLogger("spatialtwin.server")
PROJECT_ROOT = Path(__file__).resolve().parents[3]
MAX_UPLOAD_BYTES = 200 * 1024 * 1024

ROUTE_MODULES = (
    routes_garments,
    routes_jobs,
    routes_looks,
    routes_lod,
    routes_mirror,
    routes_products,
    routes_stills,
    routes_rights,
)


async def healthz(request: web.Request) -> web.Response:
    """Liveness, and readiness: `loading` while the services load, `seeding` while the samples
    are made, then `ok` (or `degraded`); 503 `failed` when the services could not be opened."""
    loader = request.app.get(LOADER)
    seed = request.app.get(keys.SEED)
    status = "ok" if seed is None else seed.status
    body: dict[str, Any] = {"status": status, "version": __version__}
    if loader is not None:
        status = {"loading": "loading", "failed": "failed"}.get(loader.status, status)
        body.update(status=status, services=loader.to_json())
    if seed is not None:
        body["seed"] = seed.to_json()
    return web.json_response(body, status=503 if status == "failed" else 200)


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
        "/vendor/swagger-ui/": root / "node_modules" / "swagger-ui-dist",
    }
    for prefix, folder in vendor.items():
        if folder.is_dir():
            app.router.add_static(prefix, folder)
        else:
            log.warning(
                "missing front-end package; run `make demo`",
                extra={"fields": {"path": str(folder)}},
            )


def _set_service_keys(app: web.Application, opened: OpenedServices) -> None:
    services = opened.services
    app[keys.SERVICES] = services
    app[keys.JOBS] = opened.jobs
    app[keys.TWINS] = services.twins
    app[keys.GARMENTS] = services.garments
    app[keys.LOOKS] = services.looks
    app[keys.LOD] = services.lod


def create_app(
    data_dir: str | Path,
    *,
    project_root: Path = PROJECT_ROOT,
    seed: bool = True,
    settings: dict[str, Any] | None = None,
    store_factory: Callable[[Path], Store] = EmbeddedStore,
    queue_factory: QueueFactory = in_process_queue,
    services_after_listening: bool = False,
) -> web.Application:
    """The app over the data directory; `services_after_listening`: listen first and load
    the services meanwhile (requests that need them wait), else open them before listening
    and also set `keys.SERVICES`, `keys.TWINS` … (what tests reach into)."""
    app = web.Application(
        middlewares=[metrics.timed, json_errors, authorize, ratelimit.middleware()],
        client_max_size=MAX_UPLOAD_BYTES + (1 << 20),
    )
    app[keys.PROJECT_ROOT] = project_root
    app[keys.SETTINGS] = {"max_upload_bytes": MAX_UPLOAD_BYTES, "seed": seed, **(settings or {})}

    async def services(app: web.Application) -> AsyncIterator[None]:
        store = store_factory(Path(data_dir))
        executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spatialtwin-cpu")
        app[keys.STORE] = store
        app[keys.EXECUTOR] = executor
        app[LOADER] = loader = ServiceLoader(store, executor, app[keys.SETTINGS], queue_factory)
        if services_after_listening:
            loader.load_in_background()
        else:
            _set_service_keys(app, await loader.load())
        seeding: asyncio.Task[SeedState] | None = None
        if seed:
            app[keys.SEED] = state = SeedState()
            seeding = asyncio.create_task(
                seed_when_ready(loader.ready, project_root / "assets", state)
            )
        yield
        if seeding is not None:
            seeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await seeding
        await loader.close()
        executor.shutdown(wait=True, cancel_futures=True)
        await store.close()

    install_http_layer_errors(app)
    install_auth(app, keys_folder(Path(data_dir), app[keys.SETTINGS]))
    app.cleanup_ctx.append(services)
    app.router.add_get("/healthz", healthz)
    metrics.install(app)  # /metrics, /readyz
    app.add_routes(twin_routes)
    for module in ROUTE_MODULES:
        app.add_routes(module.routes)
    openapi.install(app)  # /api/v1/openapi.json, /api/v1/docs
    routes_mirror.install(app)  # mirror sessions end (close 1001) before the services close
    _static_routes(app, project_root)
    return app


def fleet_factories(
    redis_url: str, blobs_dir: Path, broker_options: Any = None
) -> tuple[Callable[[Path], Store], QueueFactory]:
    """The store and job queue of one server of a fleet: `RedisStore` on `redis_url` with
    blobs in the shared `blobs_dir`, and jobs announced on Dramatiq's broker on the same Redis
    (`jobs.dramatiq_queue.BrokerOptions`) for `spatialtwin worker --redis` to run."""
    from spatialtwin.jobs.dramatiq_queue import DramatiqJobQueue, job_broker
    from spatialtwin.store.redis_store import RedisStore

    def store(_data_dir: Path) -> Store:
        return RedisStore(redis_url, blobs=blobs_dir)

    def queue(store: Store, kinds: Mapping[str, Any], settings: dict[str, Any]) -> DramatiqJobQueue:
        queue = DramatiqJobQueue(store, kinds, job_broker(redis_url, broker_options))
        queue.max_active_per_tenant = tenant_job_limit(settings)
        return queue

    return store, queue
