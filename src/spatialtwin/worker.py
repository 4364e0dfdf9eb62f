"""A worker process: the store, the job kinds of `services.job_kinds`, and a loop that runs jobs.

    spatialtwin worker --redis redis://10.0.0.5:6379/0 --blobs /srv/blobs   # one of a fleet
    spatialtwin worker --data var/data                  # beside `spatialtwin serve` (embedded)

Any process that opens the same store can run a queued job: the job is a kind name and a JSON
payload, the worker loads what it needs by id. A job is claimed under a heartbeat lease
(`jobs.runner`), so processes sharing a store never run one twice. On the embedded store the
worker polls the data directory (and a worker that dies mid-job leaves it to be retried once by
whoever looks next); on Redis it receives Dramatiq messages (`jobs.dramatiq_queue.JobWorker`:
a killed worker's message is redelivered to another). `SPATIALTWIN_REDIS_URL` and
`SPATIALTWIN_BLOBS` stand in for `--redis` and `--blobs`; Redis unreachable at the start is one
line naming the URL and exit status 2.
`run_job_in_process` runs one given job and returns (what a test's child process does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spatialtwin.errors import SpatialTwinError
from spatialtwin.jobs.queue import StoreJobQueue
from spatialtwin.jobs.runner import LEASE_S, InProcessJobQueue, JobRunner
from spatialtwin.server.fleet import add_store_arguments, check_redis, fleet_store
from spatialtwin.store.embedded import EmbeddedStore

if TYPE_CHECKING:
    from spatialtwin.jobs.queue import JobKind
    from spatialtwin.services.context import Services

log = logging.getLogger("spatialtwin.worker")
POLL_S = 1.0


async def _services(store: Any, **kwargs: Any) -> tuple[Services, dict[str, JobKind]]:
    """The services over `store` and their job kinds, imported here rather than with this
    module, so `spatialtwin worker` checks its arguments and Redis before it pays ~2 s for the
    numerics under the services."""
    from spatialtwin.services import job_kinds
    from spatialtwin.services.context import Services

    services = await Services.open(store, **kwargs)
    return services, job_kinds.kinds(services)


async def run_job(
    data_dir: str | Path,
    job_id: str,
    settings: dict[str, Any] | None = None,
    lease_s: float = LEASE_S,
    heartbeat_s: float | None = None,
) -> dict[str, Any] | None:
    """Claim and run one job of the store at `data_dir`; its final record (None when another
    process had it)."""
    store = EmbeddedStore(data_dir)
    services, kinds = await _services(store, settings=settings or {})
    services.attach_jobs(StoreJobQueue(store, kinds))
    runner = JobRunner(store, kinds, lease_s=lease_s, heartbeat_s=heartbeat_s)
    return await runner.run_job(job_id)


def run_job_in_process(
    data_dir: str, job_id: str, settings: dict[str, Any] | None = None, lease_s: float = LEASE_S
) -> None:
    """`run_job` as a process's whole life (a `multiprocessing` target)."""
    asyncio.run(run_job(data_dir, job_id, settings, lease_s))


async def work(
    data_dir: str | Path,
    stop: asyncio.Event,
    settings: dict[str, Any] | None = None,
    poll_s: float = POLL_S,
    concurrency: int = 1,
) -> None:
    """Run queued jobs, and take up stale ones, until `stop` is set."""
    store = EmbeddedStore(data_dir)
    services, kinds = await _services(store, settings=settings or {})
    queue = InProcessJobQueue(store, kinds, concurrency=concurrency)
    services.attach_jobs(queue)
    try:
        while not stop.is_set():
            await queue.start()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await stop.wait()
    finally:
        await queue.close()


async def work_fleet(
    redis_url: str,
    blobs_dir: str | Path,
    stop: asyncio.Event,
    settings: dict[str, Any] | None = None,
    concurrency: int = 1,
    broker_options: Any = None,
    sweep_s: float | None = None,
) -> None:
    """Run the jobs Dramatiq hands this process until `stop` is set (`JobWorker`). Raises
    `StoreUnavailableError` when Redis does not answer at the start."""
    from spatialtwin.jobs.dramatiq_queue import SWEEP_S, JobWorker, job_broker
    from spatialtwin.store.redis_store import RedisStore

    settings = settings or {}
    store = RedisStore(redis_url, blobs=blobs_dir)
    executor = ThreadPoolExecutor(
        max_workers=max(2, concurrency), thread_name_prefix="spatialtwin-cpu"
    )
    try:
        await store.check()
        services, kinds = await _services(store, executor=executor, settings=settings)
        worker = JobWorker(
            store,
            kinds,
            job_broker(redis_url, broker_options),
            concurrency=concurrency,
            lease_s=float(settings.get("job_lease_s", LEASE_S)),
            sweep_s=SWEEP_S if sweep_s is None else sweep_s,
        )
        services.attach_jobs(worker.queue)  # jobs a job submits go to the fleet as well
        await worker.run(stop)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        await store.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("var/data"), help="embedded store")
    add_store_arguments(parser)
    parser.add_argument("--concurrency", type=int, default=1, help="jobs at once (default 1)")
    parser.add_argument("--poll", type=float, default=POLL_S, metavar="SECONDS")
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --redis: a worker silent this long is dead and its messages are redelivered "
        "(default 10)",
    )
    parser.add_argument(
        "--maintenance-chance",
        type=float,
        default=None,
        metavar="FRACTION",
        help="with --redis: the share of broker commands that look for dead workers (default 0.2)",
    )
    parser.add_argument(
        "--sweep",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --redis: how often a worker looks for jobs no message names (default 60)",
    )
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    """The worker's whole life from parsed arguments; the exit status."""
    from spatialtwin.server.logs import configure_logging

    configure_logging(args.log_level)
    if not 1 <= args.concurrency <= 64:
        print("spatialtwin: error: --concurrency must be between 1 and 64", file=sys.stderr)
        return 2
    settings = dict(args.setting)
    try:
        fleet = fleet_store(args)
    except SpatialTwinError as exc:
        print(f"spatialtwin: error: {exc.message}", file=sys.stderr)
        return 2
    broker_options = None
    if fleet is not None:
        from spatialtwin.jobs.dramatiq_queue import BrokerOptions

        defaults = BrokerOptions()
        try:
            broker_options = BrokerOptions(
                heartbeat_timeout_s=_given(args.heartbeat_timeout, defaults.heartbeat_timeout_s),
                maintenance_chance=_given(args.maintenance_chance, defaults.maintenance_chance),
            )
        except ValueError as exc:
            print(f"spatialtwin: error: {exc}", file=sys.stderr)
            return 2
        problem = check_redis(*fleet)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2

    async def main_loop() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if fleet is None:
            log.info("worker started", extra={"fields": {"data": str(args.data)}})
            await work(args.data, stop, settings, poll_s=args.poll, concurrency=args.concurrency)
            return
        log.info("worker started", extra={"fields": {"blobs": str(fleet[1])}})
        await work_fleet(
            fleet[0],
            fleet[1],
            stop,
            settings,
            concurrency=args.concurrency,
            broker_options=broker_options,
            sweep_s=args.sweep,
        )

    asyncio.run(main_loop())
    return 0


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spatialtwin.worker", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
