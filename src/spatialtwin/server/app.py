"""The aiohttp application: routes, services and their lifetimes.

`create_app` wires the store, the executor for CPU-heavy work (meshing, skinning, GLB writing
never run on the event loop) and the route tables; `cleanup_ctx` opens and closes them, so a
SIGTERM drains requests and releases everything.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from spatialtwin import __version__
from spatialtwin.server import keys
from spatialtwin.server.middleware import install_http_layer_errors, json_errors
from spatialtwin.server.routes_twins import routes as twin_routes
from spatialtwin.server.seed import seed_twins
from spatialtwin.store.embedded import EmbeddedStore
from spatialtwin.store.twin_repository import TwinRepository

log = logging.getLogger("spatialtwin.server")
PROJECT_ROOT = Path(__file__).resolve().parents[3]
MAX_UPLOAD_BYTES = 200 * 1024 * 1024

# Optional feature route modules: each exposes `install(app)`, which adds its routes and its
# services' cleanup contexts. They are installed after the core services exist.
FEATURE_MODULES = (
    "spatialtwin.server.routes_garments",
    "spatialtwin.server.routes_looks",
    "spatialtwin.server.routes_lod",
)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


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
) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_UPLOAD_BYTES + (1 << 20))
    app[keys.PROJECT_ROOT] = project_root
    app[keys.SETTINGS] = {"max_upload_bytes": MAX_UPLOAD_BYTES, "seed": seed, **(settings or {})}

    async def services(app: web.Application) -> AsyncIterator[None]:
        store = EmbeddedStore(data_dir)
        executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spatialtwin-cpu")
        app[keys.STORE] = store
        app[keys.EXECUTOR] = executor
        app[keys.TWINS] = TwinRepository(store, executor)
        if seed:
            await seed_twins(app[keys.TWINS], project_root / "assets")
        yield
        executor.shutdown(wait=True, cancel_futures=True)
        await store.close()

    install_http_layer_errors(app)
    app.cleanup_ctx.append(services)
    app.router.add_get("/healthz", healthz)
    app.add_routes(twin_routes)
    for module_name in FEATURE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.install(app)
    _static_routes(app, project_root)
    return app
