"""A job runs through a Redis restart: a real `redis-server` (AOF on) stopped and started again
under a running job, in this process (`jobs.runner.JobRunner`, `jobs.dramatiq_queue.JobWorker`).

- The lease keeper misses the heartbeats while Redis is down and renews after: the job that
  never needed the store ends done on its first attempt.
- A job whose own work meets the outage (`StoreUnavailableError`) is not failed: it is handed
  back (queued), and the message's retry runs it again, done on attempt 2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from spatialtwin.errors import StoreUnavailableError
from spatialtwin.jobs.dramatiq_queue import JobWorker, job_broker
from spatialtwin.jobs.queue import JobKind, Progress, StoreJobQueue
from spatialtwin.jobs.records import JOBS, parse_time
from spatialtwin.jobs.runner import JobRunner
from spatialtwin.store.redis_store import RedisStore
from tests.redis_server import RedisServer, start_redis, stop_redis

AOF = ("--appendonly", "yes", "--appendfsync", "everysec")
WORK_S = 2.5
OUTAGE_S = 0.8


class RestartableRedis:
    def __init__(self, folder) -> None:
        self.folder = folder
        self.server: RedisServer = start_redis(folder, None, *AOF)
        self.port = self.server.port

    def restart(self, down_s: float) -> None:
        stop_redis(self.server)
        time.sleep(down_s)
        self.server = start_redis(self.folder, self.port, *AOF)


@pytest.fixture
async def redis_aof(tmp_path) -> AsyncIterator[tuple[RestartableRedis, RedisStore]]:
    redis = RestartableRedis(tmp_path / "redis")
    store = RedisStore(redis.server.url(0), blobs=tmp_path / "blobs")
    yield redis, store
    await store.close()
    stop_redis(redis.server)


async def sleeps(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Work that never touches the store: WORK_S seconds of progress reports."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < WORK_S:
        progress("sleeping", elapsed / WORK_S)
        await asyncio.sleep(0.05)
    return {"slept_s": WORK_S}


async def answers(store: RedisStore) -> bool:
    try:
        await store.check()
    except StoreUnavailableError:
        return False
    return True


async def wait_running(store: RedisStore, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (record := await store.get_record(JOBS, job_id))["status"] != "running":
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.02)
    return record


async def test_the_lease_is_renewed_again_after_a_redis_restart(redis_aof):
    redis, store = redis_aof
    kinds = {"test.sleep": JobKind(sleeps)}
    job = await StoreJobQueue(store, kinds).submit("test.sleep", {})
    runner = JobRunner(store, kinds, lease_s=2.0, heartbeat_s=0.1)
    running = asyncio.create_task(runner.run_job(job["id"]))
    await wait_running(store, job["id"])
    await asyncio.sleep(0.3)
    await asyncio.to_thread(redis.restart, OUTAGE_S)
    back = parse_time((await store.get_record(JOBS, job["id"]))["updated_at"])
    assert back is not None
    renewed = []
    while not running.done():
        record = await store.get_record(JOBS, job["id"])
        if record["status"] == "running":
            renewed.append(parse_time(record["lease_until"]))
        await asyncio.sleep(0.1)
    final = await running
    assert final is not None and final["status"] == "done", final
    assert final["attempts"] == 1 and final["result"] == {"slept_s": WORK_S}
    assert renewed and max(renewed) > back  # leases written after Redis came back
    assert (await store.get_record(JOBS, job["id"]))["status"] == "done"  # survived in the AOF


async def test_work_that_meets_the_outage_is_run_again_not_failed(redis_aof):
    redis, store = redis_aof

    async def reads_the_store(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """Reads a record every 50 ms; the read that meets the outage raises once Redis is back
        (as work busy elsewhere meanwhile would), so the runner can write what it decides."""
        started = time.monotonic()
        while time.monotonic() - started < WORK_S:
            try:
                await store.get_record(JOBS, payload["peek"])
            except StoreUnavailableError:
                while not await answers(store):
                    await asyncio.sleep(0.05)
                raise
            progress("reading", (time.monotonic() - started) / WORK_S)
            await asyncio.sleep(0.05)
        return {"read_s": WORK_S}

    kinds = {"test.read": JobKind(reads_the_store)}
    broker = job_broker(redis.server.url(0))
    worker = JobWorker(store, kinds, broker, lease_s=2.0, heartbeat_s=0.1)
    try:
        job = await worker.queue.submit("test.read", {"peek": "nothing"})
        first = asyncio.create_task(worker.handle(job["id"]))
        await wait_running(store, job["id"])
        await asyncio.to_thread(redis.restart, OUTAGE_S)
        with pytest.raises(StoreUnavailableError):
            await first  # the actor raises: Dramatiq retries the message
        left = await store.get_record(JOBS, job["id"])
        assert left["status"] == "queued" and left["error"] is None, left  # handed back
        assert await worker.handle(job["id"]) == "ran"  # the retry
        final = await store.get_record(JOBS, job["id"])
        assert final["status"] == "done" and final["attempts"] == 2, final
        assert final["result"] == {"read_s": WORK_S}
    finally:
        await worker.queue.close()
