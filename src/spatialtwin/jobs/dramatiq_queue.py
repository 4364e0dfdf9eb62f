"""Jobs for a fleet: servers enqueue on Dramatiq's Redis broker, worker processes run them.

    broker = job_broker("redis://127.0.0.1:6379/0")
    queue = DramatiqJobQueue(store, kinds, broker)            # a server: submit and read
    job = await queue.submit("look.drape", {"look_id": "look_1", "request": {...}})
    worker = JobWorker(store, kinds, broker)                  # `spatialtwin worker --redis`
    await worker.run(stop)                                    # until `stop` is set

Why Dramatiq: a maintained task queue whose Redis broker keeps every fetched message in the
fetching worker's ack set until the actor returns, and moves the unacked messages of a worker
whose heartbeat stopped back onto the queue. What a job *is* stays ours: the job record in the
store (`jobs.records`: status, stage, progress, result, owner and lease), so every server
reads a job's progress from the store, and the message carries only the job id.

1. **Submit** (`DramatiqJobQueue`): the record is created (`StoreJobQueue`), then a message
   naming it is enqueued. Should the enqueue fail (Redis went away between the two), the
   record is still queued and a worker's sweep enqueues it again.
2. **Run** (`JobWorker.handle`, on the worker's event loop; Dramatiq's worker threads only
   wait for it): a queued job is claimed and run by `JobRunner` (compare-and-set queued ->
   running, heartbeat lease, progress written as it comes). A message for a job that is
   `running` is a redelivery: when the lease is stale (its owner's process is gone on this
   host, or the lease ran out) the job is handed back (queued again while it has attempts
   left, else failed `interrupted`) and run here; when another live process still holds it,
   the message comes back once the lease could have run out (a delayed message), so a worker
   wrongly thought dead is never doubled. A message for a job that ended is dropped.
3. **Once in effect**: every kind is idempotent, keyed by the job's payload (the look,
   garment or twin id, the level set's key), so a second run after a kill finds what the
   first stored or stores it once (`services/job_kinds.py`).
4. **Sweep** (every `sweep_s`, one worker of the fleet at a time, by a Redis lock): a job
   record that is queued, or running on a stale lease, with no message naming it (an enqueue
   lost with Redis, a message dropped after its retries) gets a new message.
5. **Shutdown**: running jobs are handed back (queued) and re-enqueued before Dramatiq's
   worker stops, so the next worker starts them at once instead of after a heartbeat timeout.

Redelivery after a kill -9 takes `heartbeat_timeout_s` plus the wait for a broker command
that runs maintenance (`maintenance_chance` of them; an idle worker sends about two a second):
~10 s with the defaults (measured 9.6 and 10.3 s), ~2 s with the tests' settings
(docs/deployment.md). A live worker
taken for dead too early costs nothing but a look: its job's lease is still fresh, so the
redelivered message only comes back later ("held"). (At 15 s and 5 % it was 22 s and 42 s.)
This module imports only the ground, Dramatiq and redis-py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from spatialtwin.errors import StoreUnavailableError
from spatialtwin.jobs.queue import JobKind, StoreJobQueue
from spatialtwin.jobs.records import JOBS, RecordStore, lease_is_stale, now_utc, parse_time
from spatialtwin.jobs.runner import LEASE_S, JobRunner, LeaseLostError

log = logging.getLogger("spatialtwin.jobs")

QUEUE = "jobs"
ACTOR = "spatialtwin.run_job"
SWEEP_S = 60.0
QUEUED_GRACE_S = 10.0  # a queued job this young may have its message on the way
HELD_RECHECK_MARGIN_S = 1.0
TIME_LIMIT_MS = 24 * 3600 * 1000  # the lease, not a wall clock, decides whether a job is alive
RETRY_MIN_BACKOFF_MS = 500  # an actor raises only when the store is unreachable
RETRY_MAX_BACKOFF_MS = 30_000
MAX_RETRIES = 100
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)


@dataclass(frozen=True)
class BrokerOptions:
    """Dramatiq's Redis broker as a fleet uses it. `namespace` prefixes its keys (apart from
    the store's); a worker whose broker commands stop for `heartbeat_timeout_s` counts as dead
    and its unacked messages are requeued by the next command that runs maintenance
    (`maintenance_chance`, a fraction of commands). Timeouts bound every Redis call."""

    namespace: str = "spatialtwin.jobs"
    heartbeat_timeout_s: float = 10.0
    maintenance_chance: float = 0.2
    socket_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.heartbeat_timeout_s <= 3600.0:
            raise ValueError("heartbeat_timeout_s must be between 1 s and an hour")
        if not 0.0 < self.maintenance_chance <= 1.0:
            raise ValueError("maintenance_chance must be in (0, 1]")


def job_broker(url: str, options: BrokerOptions | None = None) -> RedisBroker:
    """Dramatiq's Redis broker on `url` (the store's Redis; its keys live apart)."""
    options = options or BrokerOptions()
    client = redis.Redis.from_url(
        url,
        socket_timeout=options.socket_timeout_s,
        socket_connect_timeout=options.socket_timeout_s,
        health_check_interval=30,
    )
    return RedisBroker(
        client=client,
        namespace=options.namespace,
        heartbeat_timeout=int(options.heartbeat_timeout_s * 1000),
        maintenance_chance=max(1, round(options.maintenance_chance * 1_000_000)),
    )


def job_message(job_id: str) -> dramatiq.Message[Any]:
    """The message that asks a worker to run a job: its id, nothing else."""
    return dramatiq.Message(
        queue_name=QUEUE, actor_name=ACTOR, args=(job_id,), kwargs={}, options={}
    )


class DramatiqJobQueue(StoreJobQueue):
    """Jobs as store records, each announced to the workers by a Dramatiq message."""

    def __init__(self, store: RecordStore, kinds: Mapping[str, JobKind], broker: RedisBroker):
        super().__init__(store, kinds)
        self.broker = broker

    async def submit(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        record = await super().submit(kind, payload)
        await self.enqueue(record["id"])
        return record

    async def submit_unique(
        self, kind: str, payload: Mapping[str, Any], key: str
    ) -> tuple[dict[str, Any], bool]:
        record, queued = await super().submit_unique(kind, payload, key)
        if queued:
            await self.enqueue(record["id"])
        return record, queued

    async def enqueue(self, job_id: str, delay_s: float | None = None) -> bool:
        """Announce the job (after `delay_s`); False when Redis is unreachable: the record is
        queued all the same and the workers' sweep announces it again."""
        try:
            await asyncio.to_thread(self.enqueue_now, job_id, delay_s)
        except _UNAVAILABLE as exc:
            log.warning(
                "job message not sent; the sweep sends it",
                extra={"fields": {"jobId": job_id, "reason": str(exc)[:200]}},
            )
            return False
        return True

    def enqueue_now(self, job_id: str, delay_s: float | None = None) -> None:
        """`enqueue` from a thread that may block (a Dramatiq worker thread)."""
        delay_ms = None if delay_s is None else max(1, int(delay_s * 1000))
        self.broker.enqueue(job_message(job_id), delay=delay_ms)

    async def start(self) -> int:
        """Nothing to take up here: workers run the jobs (the server's queue protocol)."""
        return 0

    async def close(self) -> None:
        await asyncio.to_thread(self.broker.client.close)


class JobWorker:
    """A worker process's side (see the module doc): Dramatiq's worker threads receive the
    messages, this process's event loop runs the jobs."""

    def __init__(
        self,
        store: RecordStore,
        kinds: Mapping[str, JobKind],
        broker: RedisBroker,
        *,
        concurrency: int = 1,
        lease_s: float = LEASE_S,
        heartbeat_s: float | None = None,
        sweep_s: float = SWEEP_S,
        queued_grace_s: float = QUEUED_GRACE_S,
        worker_timeout_ms: int = 1000,
    ) -> None:
        if not 1 <= concurrency <= 64:
            raise ValueError("concurrency must be between 1 and 64")
        self.store = store
        self.broker = broker
        self.queue = DramatiqJobQueue(store, kinds, broker)
        self.runner = JobRunner(store, kinds, lease_s=lease_s, heartbeat_s=heartbeat_s)
        self.sweep_s = sweep_s
        self.queued_grace_s = queued_grace_s
        self.outcomes: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[str]] = set()
        self._closing = threading.Event()
        self._sweep_key = f"{broker.namespace}:__sweep__"
        dramatiq.actor(
            self._on_message,
            broker=broker,
            actor_name=ACTOR,
            queue_name=QUEUE,
            max_retries=MAX_RETRIES,
            min_backoff=RETRY_MIN_BACKOFF_MS,
            max_backoff=RETRY_MAX_BACKOFF_MS,
            time_limit=TIME_LIMIT_MS,
        )
        self._worker = dramatiq.Worker(
            broker, queues={QUEUE}, worker_threads=concurrency, worker_timeout=worker_timeout_ms
        )
        # One message per thread at a time: a prefetched message would wait here behind a
        # long drape while another worker sits idle (and be redelivered late if we die).
        self._worker.queue_prefetch = concurrency

    # --- the process's life ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Receive and run jobs, sweeping every `sweep_s`, until `stop` is set; then hand back
        what runs and stop Dramatiq's threads."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._worker.start)
        log.info("worker receiving jobs", extra={"fields": {"owner": self.runner.owner}})
        try:
            while not stop.is_set():
                await self._sweep_logged()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.sweep_s):
                        await stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        self._closing.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self._worker.stop, 30_000)
        await self.queue.close()

    # --- one message ----------------------------------------------------------------------

    def _on_message(self, job_id: Any) -> None:
        """The actor, on a Dramatiq worker thread: run `handle` on the event loop and wait.
        Raising (the store unreachable) lets Dramatiq retry the message with backoff."""
        if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
            log.warning(
                "job message dropped: not a job id", extra={"fields": {"arg": repr(job_id)[:80]}}
            )
            return
        loop = self._loop
        if self._closing.is_set() or loop is None:
            self.queue.enqueue_now(job_id)  # for the next worker
            return
        future = asyncio.run_coroutine_threadsafe(self._handle_tracked(job_id), loop)
        try:
            future.result()
        except concurrent.futures.CancelledError:
            self.queue.enqueue_now(job_id)  # handed back at shutdown: the next worker runs it

    async def _handle_tracked(self, job_id: str) -> str:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        started_s = time.perf_counter()
        try:
            outcome = await self.handle(job_id)
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
        self.outcomes[outcome] += 1
        log.info(
            "job message",
            extra={
                "fields": {
                    "jobId": job_id,
                    "outcome": outcome,
                    "ms": round((time.perf_counter() - started_s) * 1000),
                }
            },
        )
        return outcome

    async def handle(self, job_id: str) -> str:
        """What one message does (module doc, step 2); returns what happened: `ran`, `ended`
        (the job had ended), `unknown`, `running_here` or `held` (another live process has
        it: looked at again once its lease could have run out)."""
        record = await self.store.get_record(JOBS, job_id)
        if record is None:
            return "unknown"
        if record.get("status") == "running":
            if self.runner.live_copy(job_id) is not None:
                return "running_here"
            if record.get("owner") == self.runner.owner:
                # ours, left running when the store went away at its end: run it again
                with contextlib.suppress(LeaseLostError):
                    await self.runner.hand_back(job_id, owned=True)
            elif lease_is_stale(record):
                await self.runner.hand_back(job_id, owned=False)
            else:
                await self.queue.enqueue(job_id, delay_s=_lease_left_s(record))
                return "held"
        final = await self.runner.run_job(job_id)
        return "ended" if final is None else "ran"

    # --- the sweep ------------------------------------------------------------------------

    async def _sweep_logged(self) -> None:
        try:
            sent = await self.sweep()
        except (StoreUnavailableError, *_UNAVAILABLE) as exc:
            log.warning(
                "job sweep skipped: Redis unreachable", extra={"fields": {"reason": str(exc)[:200]}}
            )
            return
        if sent:
            log.info("job sweep sent messages", extra={"fields": {"jobs": sent}})

    async def sweep(self) -> int:
        """Announce again the jobs that wait with no message naming them (module doc, step
        4); returns how many. Skipped while another worker holds the sweep's lock."""
        lock_ms = max(1000, int(self.sweep_s * 900))
        if not await asyncio.to_thread(
            self.broker.client.set, self._sweep_key, self.runner.owner, nx=True, px=lock_ms
        ):
            return 0
        records = await self.store.list_records(JOBS)
        announced = await asyncio.to_thread(self.announced_job_ids)
        now = now_utc()
        sent = 0
        for record in records:
            job_id = record.get("id")
            if not isinstance(job_id, str) or job_id in announced:
                continue
            status = record.get("status")
            if status == "running" and lease_is_stale(record, now):
                handed = await self.runner.hand_back(job_id, owned=False)
                waiting = handed is not None and handed.get("status") == "queued"
            elif status == "queued":
                updated = parse_time(record.get("updated_at"))
                waiting = updated is None or (now - updated).total_seconds() > self.queued_grace_s
            else:
                waiting = False
            if waiting and await self.queue.enqueue(job_id):
                sent += 1
        return sent

    def announced_job_ids(self) -> set[str]:
        """Ids of the jobs some message names: waiting, being run (fetched, not yet acked) or
        delayed. Dead-lettered messages do not count."""
        names = [
            f"{self.broker.namespace}:{QUEUE}.msgs",
            f"{self.broker.namespace}:{QUEUE}.DQ.msgs",
        ]
        ids: set[str] = set()
        for name in names:
            for data in self.broker.client.hvals(name):
                with contextlib.suppress(Exception):
                    args = dramatiq.Message.decode(data).args
                    if args and isinstance(args[0], str):
                        ids.add(args[0])
        return ids


def _lease_left_s(record: Mapping[str, Any]) -> float:
    until = parse_time(record.get("lease_until"))
    if until is None:
        return HELD_RECHECK_MARGIN_S
    return max(0.0, (until - now_utc()).total_seconds()) + HELD_RECHECK_MARGIN_S


__all__ = [
    "ACTOR",
    "QUEUE",
    "BrokerOptions",
    "DramatiqJobQueue",
    "JobWorker",
    "job_broker",
    "job_message",
]
