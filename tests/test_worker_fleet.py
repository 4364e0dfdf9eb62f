"""Jobs of a fleet on a real `redis-server`: look drapes submitted here (as a server does, through
`DramatiqJobQueue`) and run by `spatialtwin worker --redis` processes.

- kill -9 the worker mid-drape: Dramatiq's broker redelivers the message to the other worker
  (heartbeat timeout 2 s, maintenance on every command here), the job is handed back and run
  again, and it ends done with exactly one look record; progress is read here, from the store.
- a second message for a job a live worker holds is left to that worker ("held"), one for a
  job that ended is dropped: neither drapes again.
- SIGTERM mid-drape hands the job back and announces it again: the other worker takes it at
  once, without waiting out a heartbeat.
- a job record no message names (its enqueue lost with Redis) is announced by the sweep.
- Redis unreachable at the start: one line naming the URL, exit status 2.
- Redis' memory per record and per look, measured with `used_memory`.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from spatialtwin.jobs.dramatiq_queue import DramatiqJobQueue, job_broker
from spatialtwin.jobs.records import HOST, JOBS, iso, now_utc
from spatialtwin.services import job_kinds
from spatialtwin.services.context import Services
from spatialtwin.store.redis_store import RedisStore, record_bytes
from tests.fleet_processes import (
    DATA_SETTINGS,
    REPO,
    TWIN,
    Process,
    put_fleet_data,
    spawn_worker,
    stop_all,
    wait_receiving,
)
from tests.redis_server import free_port

DB = 2  # this module's Redis database
WORKER_ARGS = (
    "--heartbeat-timeout", "2", "--maintenance-chance", "1", "--sweep", "1",
    "--setting", "look_max_frames=20", "--setting", "job_lease_s=6",
)  # fmt: skip
REDELIVERY_BOUND_S = 10.0  # heartbeat 2 s + a maintenance pass + idle back-off, on 2 busy cores


def outcomes(worker: Process, job_id: str) -> list[str]:
    """The outcomes `worker` logged for `job_id`'s messages, in order."""
    return [
        e["outcome"]
        for e in worker.entries()
        if e.get("msg") == "job message" and e.get("jobId") == job_id
    ]


class WorkerPool:
    """Worker processes for the module, started as tests need them (a test may kill some)."""

    def __init__(self, fleet: Fleet, folder: Path) -> None:
        self.fleet = fleet
        self.folder = folder
        self.workers: list[Process] = []
        self.started = 0

    def live(self, count: int) -> list[Process]:
        """Every live worker, at least `count` of them (started here when fewer)."""
        self.workers = [w for w in self.workers if w.proc.poll() is None]
        new = []
        for _ in range(count - len(self.workers)):
            self.started += 1
            log = self.folder / f"worker{self.started}.log"
            new.append(spawn_worker(self.fleet.url, self.fleet.blobs, log, *WORKER_ARGS))
        wait_receiving(new)
        self.workers += new
        return list(self.workers)


@dataclass
class Fleet:
    url: str
    blobs: Path
    folder: Path
    garment: str


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory, average_body) -> Fleet:
    """A twin and a small skirt in Redis database `DB` (the store's default namespace, as the
    workers open it) with the blobs in a shared folder."""
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    folder = tmp_path_factory.mktemp("fleet")
    blobs = folder / "blobs"
    return Fleet(url, blobs, folder, asyncio.run(put_fleet_data(url, blobs, average_body)))


@pytest.fixture
async def submitter(fleet) -> AsyncIterator[Services]:
    """Services as a server of the fleet has them: jobs go to Dramatiq, none runs here."""
    store = RedisStore(fleet.url, blobs=fleet.blobs)
    services = Services(store, settings=DATA_SETTINGS)
    queue = DramatiqJobQueue(store, job_kinds.kinds(services), job_broker(fleet.url))
    services.attach_jobs(queue)
    yield services
    await queue.close()
    await store.close()


@pytest.fixture(scope="module")
def pool(fleet) -> Iterator[WorkerPool]:
    """Three workers started together (a test kills one, another stops one: two remain for
    each test without waiting for a fresh worker's start)."""
    workers = WorkerPool(fleet, fleet.folder)
    try:
        workers.live(3)
        yield workers
    finally:
        stop_all(workers.workers)


@pytest.fixture
def two_workers(pool) -> list[Process]:
    """Every live worker of the pool, at least two."""
    return pool.live(2)


async def submit_look(services: Services, fleet: Fleet) -> dict[str, Any]:
    return await services.looks.submit(
        {"twin": TWIN, "garments": [fleet.garment], "channel": "ecommerce"}
    )


async def wait_state(
    services: Services, job_id: str, until: Any, timeout_s: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        state = await services.jobs.status(job_id)
        if until(state):
            return state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.02)


async def logged(workers: list[Process], job_id: str, outcome: str, within_s: float = 10) -> None:
    """Wait until one of `workers` logged `outcome` for a message of `job_id`."""
    deadline = time.monotonic() + within_s
    while not any(outcome in outcomes(w, job_id) for w in workers):
        assert time.monotonic() < deadline, [outcomes(w, job_id) for w in workers]
        await asyncio.sleep(0.02)


def owner_pid(state: dict[str, Any]) -> int:
    host, pid, _ = state["owner"].rsplit(":", 2)
    assert host == HOST
    return int(pid)


def draping(state: dict[str, Any]) -> bool:
    return state["status"] == "running" and str(state["stage"]).startswith("draping")


def done(state: dict[str, Any]) -> bool:
    return state["status"] in ("done", "failed")


async def test_a_job_no_message_names_is_announced_by_the_sweep(fleet, submitter, two_workers):
    """The record was created but its message lost (Redis went away between the two): a
    worker's sweep (every second here) finds it queued with no message and announces it."""
    services = submitter
    request = await services.looks.check_request(
        {"twin": TWIN, "garments": [fleet.garment], "channel": "ecommerce"}
    )
    payload = {"look_id": "look_swept_one", "request": request.as_json}
    queue = services.jobs
    assert isinstance(queue, DramatiqJobQueue)
    job = await super(DramatiqJobQueue, queue).submit("look.drape", payload)  # no message
    record, revision = await services.store.get_record_revision(JOBS, job["id"])
    record["updated_at"] = iso(now_utc() - timedelta(seconds=60))  # queued a minute ago
    await services.store.replace_record(JOBS, job["id"], record, revision)
    final = await wait_state(services, job["id"], done, timeout_s=30)
    assert final["status"] == "done" and final["attempts"] == 1
    assert final["result"]["id"] == "look_swept_one"
    logs = "".join(w.text() for w in two_workers)
    assert '"msg": "job sweep sent messages", "jobs": 1' in logs


async def test_a_worker_killed_mid_drape_hands_the_job_to_the_other_once(
    fleet, submitter, two_workers
):
    services = submitter
    by_pid = {w.proc.pid: w for w in two_workers}
    looks_before = await services.store.list_ids("looks")
    job = await submit_look(services, fleet)
    look_id = job["payload"]["look_id"]
    first = await wait_state(services, job["id"], draping)
    victim = by_pid[owner_pid(first)]
    others = [w for w in two_workers if w is not victim]

    # A second message while the victim drapes: an idle worker leaves the job to it.
    assert await services.jobs.enqueue(job["id"])
    await logged(others, job["id"], "held")
    assert (await services.jobs.status(job["id"]))["attempts"] == 1

    victim.proc.send_signal(signal.SIGKILL)  # mid-drape: no hand-back, the message unacked
    killed_at = time.monotonic()
    victim.proc.wait(10)
    taken = await wait_state(
        services, job["id"], lambda s: s["status"] == "running" and s["attempts"] == 2
    )
    redelivered_s = time.monotonic() - killed_at
    final = await wait_state(services, job["id"], done)
    finished_s = time.monotonic() - killed_at
    print(
        f"kill -9 mid-drape: redelivered and claimed by the other worker {redelivered_s:.2f} s"
        f" later, done {finished_s:.2f} s after the kill"
    )
    assert owner_pid(taken) in {w.proc.pid for w in others}
    assert redelivered_s < REDELIVERY_BOUND_S, redelivered_s
    assert final["status"] == "done", final
    assert final["attempts"] == 2 and final["interrupted"]["code"] == "interrupted"
    assert str(final["interrupted"]["detail"]["stage"]).startswith("draping")
    assert final["result"]["id"] == look_id
    store = services.store
    assert await store.list_ids("looks") == sorted([*looks_before, look_id])  # exactly one
    look = await store.get_record("looks", look_id)
    glb = await store.get_blob(look["blobs"]["glb"])
    assert glb is not None and glb[:4] == b"glTF" and len(glb) == look["glb_bytes"]

    # A message for the job that ended is dropped: nothing drapes again.
    before = await store.get_record_revision(JOBS, job["id"])
    assert await services.jobs.enqueue(job["id"])
    await logged(others, job["id"], "ended")
    assert await store.get_record_revision(JOBS, job["id"]) == before
    assert await store.list_ids("looks") == sorted([*looks_before, look_id])


async def test_sigterm_mid_drape_hands_the_job_back_at_once(fleet, submitter, two_workers):
    services = submitter
    by_pid = {w.proc.pid: w for w in two_workers}
    job = await submit_look(services, fleet)
    first = await wait_state(services, job["id"], draping)
    leaving = by_pid[owner_pid(first)]
    leaving.proc.send_signal(signal.SIGTERM)
    asked_at = time.monotonic()
    taken = await wait_state(
        services, job["id"], lambda s: s["status"] == "running" and s["attempts"] == 2
    )
    handed_s = time.monotonic() - asked_at
    assert leaving.proc.wait(30) == 0
    final = await wait_state(services, job["id"], done)
    print(f"SIGTERM mid-drape: the other worker had the job {handed_s:.2f} s later")
    assert owner_pid(taken) != leaving.proc.pid
    assert handed_s < 2.0, handed_s  # no heartbeat timeout waited out
    assert final["status"] == "done" and final["attempts"] == 2
    assert final["result"]["id"] == job["payload"]["look_id"]
    assert await services.store.get_record("looks", final["result"]["id"]) is not None


def test_a_worker_without_redis_says_so_in_one_line_and_exits_2(tmp_path):
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-m", "spatialtwin", "worker", "--redis", url, "--blobs", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2, result.stderr.decode()[-2000:]
    assert len(lines) == 1 and lines[0].startswith("spatialtwin: error: cannot reach Redis at")
    assert "127.0.0.1" in lines[0] and "hunter2" not in lines[0]


async def test_redis_memory_per_record_and_per_look(fleet, submitter, pool, tmp_path):
    """What the fleet keeps in Redis' memory (`used_memory`): 200 copies of each real record
    (the twin, a garment, a look and its job) and 1,000 blob marks, put by the store's own
    scripts under a namespace of their own. A look costs its record, its job's record and the
    mark of its GLB (the GLB itself is a file in the blob folder)."""
    services = submitter
    if not await services.store.list_ids("looks"):  # run alone: drape one
        pool.live(1)
        job = await submit_look(services, fleet)
        assert (await wait_state(services, job["id"], done))["status"] == "done"
    look = (await services.store.list_records("looks"))[0]
    samples = {
        "twin": await services.store.get_record("twins", TWIN),
        "garment": await services.store.get_record("garments", fleet.garment),
        "look": look,
        "job": next(
            j
            for j in await services.store.list_records(JOBS)
            if j["payload"].get("look_id") == look["id"]
        ),
    }
    scratch = RedisStore(
        fleet.url, blobs=tmp_path / "blobs", namespace=f"mem{uuid.uuid4().hex[:8]}"
    )
    per_record: dict[str, float] = {}
    try:
        for name, record in samples.items():
            before = await scratch.memory_bytes()
            for n in range(200):
                await scratch.put_record(f"mem_{name}", f"r{n:04d}", {**record, "id": f"r{n:04d}"})
            per_record[name] = (await scratch.memory_bytes() - before) / 200
            json_bytes = len(record_bytes(record))
            print(f"Redis memory per {name} record: {per_record[name]:.0f} B ({json_bytes} B JSON)")
            assert json_bytes < per_record[name] < json_bytes * 1.3 + 400, (name, per_record)
        before = await scratch.memory_bytes()
        for n in range(1000):
            await scratch.put_blob(f"blob {n}".encode())
        per_mark = (await scratch.memory_bytes() - before) / 1000
        per_look = per_record["look"] + per_record["job"] + per_mark
        print(
            f"Redis memory per blob mark: {per_mark:.0f} B; per look (record, job, GLB mark): "
            f"{per_look:.0f} B, {per_look * 1000 / 2**20:.2f} MiB per 1,000 looks"
        )
        assert 0 < per_mark < 200
    finally:
        await scratch.clear()
        await scratch.close()
