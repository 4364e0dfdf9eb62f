"""The services of a server process, opened after it listens.

Importing the services imports the numerics under them — SciPy, trimesh (with networkx),
numba, scikit-image — about 2 s of a start on the 2-core EPYC (`bench/startup.py`), while the
HTTP layer, the routes and the store need a few hundred ms. So `spatialtwin serve` listens
first and imports the services on a thread meanwhile (`ServiceLoader.load_in_background`):
`/healthz` answers at once and reports `services.status` (`loading`, then `ready`, or
`failed` with the error), and a request that needs a service waits for them
(`ready_services`) instead of being refused; once they failed, such requests get 503.

Opening them is what it always was: the store's older records migrated, the job kinds
registered, the job queue started (the in-process one takes up what a stopped process left; a
fleet's server gets its queue from `queue_factory`, whose jobs workers run); then, in
the background, the blobs no record names that a killed process left are swept
(`services.blobs`, older than `blob_sweep_min_age_s`, an hour by default). Nothing in this
module imports the services at import time; `keys.py` and the route modules import them for
type checkers only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from spatialtwin.errors import SpatialTwinError, StoreUnavailableError
from spatialtwin.jobs.queue import DEFAULT_MAX_ACTIVE_PER_TENANT, JobKind, ServedJobQueue
from spatialtwin.jobs.runner import LEASE_S, InProcessJobQueue
from spatialtwin.services.blobs import SWEEP_MIN_AGE_S, sweep_unused_blobs
from spatialtwin.store.base import Store

if TYPE_CHECKING:
    from spatialtwin.services.context import Services

log = logging.getLogger("spatialtwin.server")

# What a process needs to run requests and jobs; each imports the numerics its services use.
SERVICE_MODULES = ("spatialtwin.services.context", "spatialtwin.services.job_kinds")

LOAD_RETRY_MAX_S = 5.0

QueueFactory = Callable[[Store, Mapping[str, JobKind], dict[str, Any]], ServedJobQueue]
"""(store, job kinds, settings) -> the process's job queue, not yet started."""


def import_service_modules() -> None:
    """Import the services and, under them, the numerics (what a thread does at start)."""
    for name in SERVICE_MODULES:
        importlib.import_module(name)


@dataclass
class OpenedServices:
    services: Services
    jobs: ServedJobQueue
    sweep: asyncio.Task[Any] | None = None


def in_process_queue(
    store: Store, kinds: Mapping[str, JobKind], settings: dict[str, Any]
) -> InProcessJobQueue:
    """The default: jobs run in this process (`job_lease_s`, `job_concurrency`)."""
    queue = InProcessJobQueue(
        store,
        kinds,
        lease_s=float(settings.get("job_lease_s", LEASE_S)),
        concurrency=int(settings.get("job_concurrency", 2)),
    )
    queue.max_active_per_tenant = tenant_job_limit(settings)
    return queue


def tenant_job_limit(settings: dict[str, Any]) -> int:
    """`max_active_jobs_per_tenant` (0: none), checked before it reaches a queue."""
    value = settings.get("max_active_jobs_per_tenant", DEFAULT_MAX_ACTIVE_PER_TENANT)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise SpatialTwinError(
            "invalid_setting",
            "max_active_jobs_per_tenant must be a whole number 0..10000",
            {"value": str(value)[:40]},
        )
    return value


async def open_services(
    store: Store,
    executor: Executor,
    settings: dict[str, Any],
    queue_factory: QueueFactory = in_process_queue,
) -> OpenedServices:
    """The services over `store` with their job queue (`queue_factory`'s), started."""
    import_service_modules()  # at once when already imported (the background thread did it)
    from spatialtwin.services import job_kinds
    from spatialtwin.services.context import Services

    services = await Services.open(store, executor=executor, settings=settings)
    queue = queue_factory(store, job_kinds.kinds(services), settings)
    services.attach_jobs(queue)
    try:
        await queue.start()
    except BaseException:
        await queue.close()
        raise
    # After the queue took up what a stopped process left: a job it failed has released its
    # blobs, a job it queued again names its own.
    min_age_s = float(settings.get("blob_sweep_min_age_s", SWEEP_MIN_AGE_S))
    sweep = asyncio.create_task(_sweep(store, min_age_s))
    return OpenedServices(services, queue, sweep)


async def _sweep(store: Store, min_age_s: float) -> None:
    try:
        await sweep_unused_blobs(store, min_age_s)
    except Exception:  # the next start sweeps again; serving goes on
        log.exception("blob sweep failed")


class ServiceLoader:
    """The services of this process, from `loading` to `ready` (or `failed`)."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        settings: dict[str, Any],
        queue_factory: QueueFactory = in_process_queue,
    ) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings
        self.queue_factory = queue_factory
        self.status = "loading"
        self.error: dict[str, Any] | None = None
        self.opened: OpenedServices | None = None
        self._started_s = time.perf_counter()
        self._ms: float | None = None
        self._done = asyncio.Event()
        self._store_away: tuple[str, str] | None = None  # (url, reason) while it is away
        self._task: asyncio.Task[None] | None = None

    async def load(self, *, import_on_thread: bool = False) -> OpenedServices:
        """Open the services (raises what opening raised, after recording it)."""
        try:
            if import_on_thread:
                await asyncio.to_thread(import_service_modules)
            self.opened = await open_services(
                self.store, self.executor, self.settings, self.queue_factory
            )
        except Exception as exc:
            self.status = "failed"
            self.error = {"code": "services_failed", "message": str(exc)[:200]}
            if isinstance(exc, StoreUnavailableError) and isinstance(exc.detail, dict):
                self._store_away = (str(exc.detail.get("url")), str(exc.detail.get("reason", "")))
            raise
        finally:
            self._ms = (time.perf_counter() - self._started_s) * 1000
            self._done.set()
        self.status = "ready"
        self.error = None
        self._store_away = None
        log.info("services ready", extra={"fields": {"ms": round(self._ms)}})
        return self.opened

    def load_in_background(self) -> None:
        """Start `load` as a task, the imports on a thread, while the server listens. A store
        that cannot be reached (Redis restarting as the server starts) is waited for: loading
        is tried again, backing off to `LOAD_RETRY_MAX_S`, and requests get 503 meanwhile."""

        async def run() -> None:
            wait_s = 0.25
            while True:
                try:
                    await self.load(import_on_thread=True)
                    return
                except StoreUnavailableError as exc:
                    fields = {"retry_s": wait_s, "reason": exc.message}
                    log.warning("services wait for the store", extra={"fields": fields})
                except Exception:
                    log.exception("services failed to load")
                    return
                await asyncio.sleep(wait_s)
                wait_s = min(wait_s * 2, LOAD_RETRY_MAX_S)

        self._task = asyncio.create_task(run())

    async def ready(self) -> Services:
        """The services, once loaded; a 503 `services_unavailable` when they cannot be (a
        503 `store_unavailable` with `Retry-After` while they wait for the store)."""
        if self.opened is None:
            await self._done.wait()
        if self.opened is None:
            if self._store_away is not None:
                raise StoreUnavailableError(*self._store_away)
            raise SpatialTwinError(
                "services_unavailable",
                "the server could not open its services; see its log",
                self.error,
                status=503,
            )
        return self.opened.services

    def to_json(self) -> dict[str, Any]:
        """What `/healthz` reports: the status and, once it has ended, how long loading took
        since the loader was made (at the server's start)."""
        ms = None if self._ms is None else round(self._ms, 1)
        return {"status": self.status, "ms": ms, "error": self.error}

    async def close(self) -> None:
        """Stop loading if it still runs; stop the job queue (its running jobs handed back)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._done.set()  # a request still waiting is answered (503)
        if self.opened is None:
            return
        if self.opened.sweep is not None:
            self.opened.sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.opened.sweep
        await self.opened.jobs.close()


LOADER = web.AppKey("loader", ServiceLoader)


async def ready_services(request: web.Request) -> Services:
    """The process's services for a handler, waiting while they load (the first seconds)."""
    return await request.app[LOADER].ready()
