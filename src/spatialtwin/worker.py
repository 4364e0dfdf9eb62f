"""A worker process: the store, the job kinds of `services.job_kinds`, and a loop that runs jobs.

    python -m spatialtwin.worker --data var/data          # beside `spatialtwin serve`

Any process that opens the same store can run a queued job: the job is a kind name and a JSON
payload, the worker loads what it needs by id. A job is claimed under a heartbeat lease
(`jobs.runner`), so a server and workers sharing a data directory never run one twice, and a
worker that dies mid-job leaves it to be retried once by whoever looks next.
`run_job_in_process` runs one given job and returns (what a test's child process does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from spatialtwin.jobs.queue import StoreJobQueue
from spatialtwin.jobs.runner import LEASE_S, InProcessJobQueue, JobRunner
from spatialtwin.services import job_kinds
from spatialtwin.services.context import Services
from spatialtwin.store.embedded import EmbeddedStore

log = logging.getLogger("spatialtwin.worker")
POLL_S = 1.0


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
    services = await Services.open(store, settings=settings or {})
    kinds = job_kinds.kinds(services)
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
    services = await Services.open(store, settings=settings or {})
    queue = InProcessJobQueue(store, job_kinds.kinds(services), concurrency=concurrency)
    services.attach_jobs(queue)
    try:
        while not stop.is_set():
            await queue.start()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await stop.wait()
    finally:
        await queue.close()


def main(argv: list[str] | None = None) -> int:
    from spatialtwin.server.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m spatialtwin.worker", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("var/data"))
    parser.add_argument("--poll", type=float, default=POLL_S, metavar="SECONDS")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker started", extra={"fields": {"data": str(args.data)}})
        await work(args.data, stop, poll_s=args.poll)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
