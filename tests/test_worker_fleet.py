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
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from spatialtwin.jobs.dramatiq_queue import DramatiqJobQueue, job_broker
from spatialtwin.jobs.records import HOST, JOBS, iso, now_utc
from spatialtwin.rights.license import Rights
from spatialtwin.services import job_kinds
from spatialtwin.services.context import Services
from spatialtwin.store.redis_store import RedisStore
from tests.mirror_fixtures import RIGHTS, skirt_obj
from tests.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
DB = 2  # this module's Redis database
TWIN = "twn_fleet_mara"
DATA_SETTINGS = {"garment_target_edge_m": 0.05, "look_max_frames": 40}
WORKER_ARGS = (
    "--heartbeat-timeout", "2", "--maintenance-chance", "1", "--sweep", "1",
    "--setting", "look_max_frames=20", "--setting", "job_lease_s=6",
)  # fmt: skip
REDELIVERY_BOUND_S = 10.0  # heartbeat 2 s + a maintenance pass + idle back-off, on 2 busy cores


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def outcomes(self, job_id: str) -> list[str]:
        """The outcomes this worker logged for `job_id`'s messages, in order."""
        found = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("msg") == "job message" and entry.get("jobId") == job_id:
                    found.append(entry["outcome"])
        return found


def spawn_worker(url: str, blobs: Path, log: Path) -> Worker:
    command = [
        sys.executable, "-m", "spatialtwin", "worker", "--redis", url, "--blobs", str(blobs),
        *WORKER_ARGS,
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Worker(proc, log)


def wait_receiving(workers: list[Worker], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        while "worker receiving jobs" not in worker.text():
            assert worker.proc.poll() is None, worker.text()[-3000:]
            assert time.monotonic() < deadline, worker.text()[-3000:]
            time.sleep(0.05)


def stop_all(workers: list[Worker]) -> None:
    """SIGTERM every worker at once, then wait for each (kill what hangs)."""
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.terminate()
    for worker in workers:
        try:
            worker.proc.wait(30)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait(10)


class WorkerPool:
    """Worker processes for the module, started as tests need them (a test may kill some)."""

    def __init__(self, fleet: Fleet, folder: Path) -> None:
        self.fleet = fleet
        self.folder = folder
        self.workers: list[Worker] = []
        self.started = 0

    def live(self, count: int) -> list[Worker]:
        """Every live worker, at least `count` of them (started here when fewer)."""
        self.workers = [w for w in self.workers if w.proc.poll() is None]
        new = []
        for _ in range(count - len(self.workers)):
            self.started += 1
            log = self.folder / f"worker{self.started}.log"
            new.append(spawn_worker(self.fleet.url, self.fleet.blobs, log))
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

    async def make() -> str:
        store = RedisStore(url, blobs=blobs)
        services = Services(store, settings=DATA_SETTINGS)
        rights = Rights.from_json(RIGHTS)
        await services.twins.create_from_body("Mara", average_body, rights, {"kind": "t"}, TWIN)
        garment = await services.garments.ingest(
            skirt_obj(average_body),
            "fleet_skirt.obj",
            {
                "sku": "FLEET-SKIRT",
                "name": "Fleet test skirt",
                "category": "skirt",
                "size_label": "M",
                "fabric": "cotton-poplin",
                "units": "m",
            },
        )
        await store.close()
        return str(garment["id"])

    return Fleet(url, blobs, folder, asyncio.run(make()))


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
def two_workers(pool) -> list[Worker]:
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


async def logged(workers: list[Worker], job_id: str, outcome: str, within_s: float = 10) -> None:
    """Wait until one of `workers` logged `outcome` for a message of `job_id`."""
    deadline = time.monotonic() + within_s
    while not any(outcome in w.outcomes(job_id) for w in workers):
        assert time.monotonic() < deadline, [w.outcomes(job_id) for w in workers]
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
