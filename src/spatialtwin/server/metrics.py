"""`/metrics` (Prometheus text) and `/readyz`, and the middleware that times every request.

An operator's two questions are different: *is the process alive* (`/healthz`, answered
while the services still load) and *may the proxy send it traffic* (`/readyz`: the services
are loaded and the store and the job queue answer now; 503 otherwise, with the reason, so a
server whose Redis is gone leaves nginx's upstream until it comes back).

The events (request latencies, mirror stage times, dropped frames) are counted where they
happen (`spatialtwin.metrics`); what is a state is read when scraped: live sessions and
sockets from the mirror hub, jobs by kind and status from the job records (with the
durations of the finished ones as a histogram), and each content cache's hits, misses,
entries and bytes. Requests are labelled by route template (`/api/v1/looks/{look_id}`), never
by raw path, so the series stay bounded however many records there are; WebSocket upgrades
are not timed (a session's socket lives for minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from spatialtwin import __version__
from spatialtwin.errors import SpatialTwinError
from spatialtwin.metrics import REQUEST_BUCKETS_S, REQUEST_SECONDS
from spatialtwin.server import keys
from spatialtwin.server.loading import LOADER
from spatialtwin.server.routes_mirror import MIRROR, mirror_stats

JOB_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
READY_TIMEOUT_S = 2.0  # a store slower than this to answer is not ready
MAX_JOBS_SCANNED = 5000  # job records read per scrape (the newest, by creation time)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The route template a request matched (bounded), or `unmatched`."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)


@web.middleware
async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: sees the status the error middleware settled on."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if status != 101 and request.headers.get("Upgrade", "").lower() != "websocket":
            REQUEST_SECONDS.labels(request.method, route_label(request), str(status)).observe(
                time.perf_counter() - started
            )


# --- what is read when scraped --------------------------------------------------------------


class _Snapshot:
    """A collector over values gathered (asynchronously) just before one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _histogram(
    name: str, doc: str, labels: list[str], series: dict[tuple[str, ...], list[float]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for label_values, values in sorted(series.items()):
        buckets, seen = [], 0
        ordered = sorted(values)
        for bound in JOB_BUCKETS_S:
            while seen < len(ordered) and ordered[seen] <= bound:
                seen += 1
            buckets.append((repr(bound), float(seen)))
        buckets.append(("+Inf", float(len(ordered))))
        family.add_metric(list(label_values), buckets, sum_value=float(sum(ordered)))
    return family


def _seconds_between(start: Any, end: Any) -> float | None:
    from datetime import datetime

    try:
        a, b = datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end))
    except ValueError:
        return None
    seconds = (b - a).total_seconds()
    return seconds if seconds >= 0.0 else None


async def _job_families(store: Any) -> list[Metric]:
    records = await store.list_records("jobs")
    records.sort(key=lambda r: str(r.get("created_at", "")), reverse=True)
    counts: dict[tuple[str, str], int] = {}
    durations: dict[tuple[str, str], list[float]] = {}
    for record in records[:MAX_JOBS_SCANNED]:
        kind, status = str(record.get("kind", "?")), str(record.get("status", "?"))
        counts[kind, status] = counts.get((kind, status), 0) + 1
        if status in ("done", "failed"):
            seconds = _seconds_between(record.get("started_at"), record.get("finished_at"))
            if seconds is not None:
                durations.setdefault((kind, status), []).append(seconds)
    jobs = GaugeMetricFamily(
        "spatialtwin_jobs",
        "Job records by kind and status (queued + running: the queue's depth).",
        labels=["kind", "status"],
    )
    for (kind, status), n in sorted(counts.items()):
        jobs.add_metric([kind, status], float(n))
    depth = GaugeMetricFamily(
        "spatialtwin_job_queue_depth", "Jobs queued or running.", labels=["kind"]
    )
    for kind in sorted({k for k, _ in counts}):
        depth.add_metric(
            [kind], float(counts.get((kind, "queued"), 0) + counts.get((kind, "running"), 0))
        )
    seconds = _histogram(
        "spatialtwin_job_duration_seconds",
        "Run time of finished jobs (started to finished), from their records.",
        ["kind", "status"],
        durations,
    )
    return [jobs, depth, seconds]


def _cache_families(app: web.Application) -> list[Metric]:
    caches: dict[str, Any] = {}
    services = app.get(keys.SERVICES)
    loader = app.get(LOADER)
    if services is None and loader is not None and loader.status == "ready":
        services = loader.opened.services
    if services is not None:
        caches["services"] = services.cache
    hub = app.get(MIRROR)
    service = getattr(hub, "service", None)
    if service is not None:
        caches["mirror_glbs"] = service.glbs
        caches["mirror_live_garments"] = service.builds.done
    names = ("hits", "misses", "entries", "bytes")
    families = {
        name: GaugeMetricFamily(
            f"spatialtwin_cache_{name}",
            f"Content caches: {name} (hits and misses since the process started).",
            labels=["cache"],
        )
        for name in names
    }
    for cache_name, cache in sorted(caches.items()):
        values = (cache.hits, cache.misses, len(cache), cache.bytes)
        for name, value in zip(names, values, strict=True):
            families[name].add_metric([cache_name], float(value))
    return list(families.values())


def _mirror_families(app: web.Application) -> list[Metric]:
    stats = mirror_stats(app) if MIRROR in app else {"sessions": 0, "sockets": 0}
    sessions = GaugeMetricFamily("spatialtwin_mirror_sessions", "Live mirror sessions held.")
    sessions.add_metric([], float(stats.get("sessions", 0)))
    sockets = GaugeMetricFamily("spatialtwin_mirror_sockets", "Open mirror and watcher WebSockets.")
    sockets.add_metric([], float(stats.get("sockets", 0)))
    tasks = GaugeMetricFamily(
        "spatialtwin_event_loop_tasks", "Tasks alive on the server's event loop (a leak grows it)."
    )
    tasks.add_metric([], float(len(asyncio.all_tasks())))
    threads = GaugeMetricFamily("spatialtwin_threads", "Threads alive in the process.")
    threads.add_metric([], float(threading.active_count()))
    return [sessions, sockets, tasks, threads]


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: the process's counters and histograms, then this app's states."""
    app = request.app
    families = _mirror_families(app) + _cache_families(app)
    store = app.get(keys.STORE)
    if store is not None:
        # the store is away: /readyz says so; the process's own figures still count
        with contextlib.suppress(TimeoutError, SpatialTwinError, OSError):
            families += await asyncio.wait_for(_job_families(store), READY_TIMEOUT_S)
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(families))
    body = generate_latest(REGISTRY) + generate_latest(snapshot)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _reachable(target: Any, fallback: Callable[[], Awaitable[Any]] | None) -> str | None:
    """None when `target` answers within READY_TIMEOUT_S, else why not."""
    check = getattr(target, "check", None)
    probe = check if callable(check) else fallback
    if probe is None:
        return None
    try:
        await asyncio.wait_for(probe(), READY_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {READY_TIMEOUT_S:g} s"
    except (SpatialTwinError, OSError) as exc:
        return str(exc)[:200] or type(exc).__name__
    return None


async def readyz(request: web.Request) -> web.Response:
    """200 `ready` when the services are loaded and the store and the job queue answer."""
    app = request.app
    loader = app.get(LOADER)
    checks: dict[str, str] = {}
    if loader is not None and loader.status != "ready":
        checks["services"] = loader.status
    store = app.get(keys.STORE)
    if store is None:
        checks["store"] = "not open"
    else:
        problem = await _reachable(store, store.list_kinds)
        if problem is not None:
            checks["store"] = problem
    queue = app.get(keys.JOBS)
    if queue is None and loader is not None and loader.status == "ready":
        queue = loader.opened.jobs
    if queue is not None:
        problem = await _reachable(queue, None)
        if problem is not None:
            checks["queue"] = problem
    ready = not checks
    body = {
        "status": "ready" if ready else "not_ready",
        "version": __version__,
        "checks": checks or {"services": "ready", "store": "ok", "queue": "ok"},
    }
    headers = {} if ready else {"Retry-After": "2"}
    return web.json_response(body, status=200 if ready else 503, headers=headers)


def install(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)


__all__ = ["REQUEST_BUCKETS_S", "install", "metrics", "readyz", "route_label", "timed"]
