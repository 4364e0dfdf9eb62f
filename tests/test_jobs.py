"""Jobs that can leave the process: a kind name and a JSON payload, run by whoever claims it.

A job submitted here is run by a second process (a plain `multiprocessing` child) on the same
embedded data directory, and its progress is read here from the store as it goes. A job killed
mid-run is retried once; a job another live process holds is never touched; payloads are JSON
or refused.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.jobs.queue import StoreJobQueue
from spatialtwin.jobs.records import HOST, iso, lease_is_stale, new_job, now_utc
from spatialtwin.jobs.runner import InProcessJobQueue
from spatialtwin.services import job_kinds
from spatialtwin.services.context import Services
from spatialtwin.store.embedded import EmbeddedStore
from spatialtwin.worker import run_job_in_process
from tests.conftest import AVERAGE, HOSTILE_RIGHTS

SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter, as a worker host would be


def generate_request(twin_id: str) -> dict[str, Any]:
    return {"id": twin_id, "measurements": AVERAGE.to_json(), **HOSTILE_RIGHTS}


async def submitted(root, twin_id: str) -> tuple[Services, StoreJobQueue, dict[str, Any]]:
    """Services over `root` whose queue only submits (nothing runs in this process), and the
    `twin.generate` job they queued."""
    store = EmbeddedStore(root)
    services = Services(store)
    queue = StoreJobQueue(store, job_kinds.kinds(services))
    services.attach_jobs(queue)
    job = await services.twins.request_generate(generate_request(twin_id))
    return services, queue, job


async def watch(queue, job_id: str, until) -> list[dict[str, Any]]:
    """Every distinct state of the job read from the store, until `until(state)`."""
    states: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while True:
        state = await queue.status(job_id)
        if not states or (state["status"], state["stage"], state["progress"]) != (
            states[-1]["status"],
            states[-1]["stage"],
            states[-1]["progress"],
        ):
            states.append(state)
        if until(state):
            return states
        assert time.monotonic() < deadline, states[-1]
        await asyncio.sleep(0.02)


def child(root, job_id: str, lease_s: float = 30.0) -> multiprocessing.Process:
    proc = SPAWN.Process(target=run_job_in_process, args=(str(root), job_id, None, lease_s))
    proc.start()
    return proc


async def test_a_job_submitted_here_runs_in_a_second_process_and_reports_progress(tmp_path):
    services, queue, job = await submitted(tmp_path, "twn_child")
    assert job["status"] == "queued" and job["kind"] == "twin.generate"
    assert job["payload"]["measurements"] == AVERAGE.to_json()  # ids and options, as JSON
    proc = child(tmp_path, job["id"])
    try:
        states = await watch(queue, job["id"], lambda s: s["status"] in ("done", "failed"))
    finally:
        proc.join(60)
    assert proc.exitcode == 0
    final = states[-1]
    assert final["status"] == "done", final
    running = [s for s in states if s["status"] == "running"]
    # The child owned it (its pid, this host) and reported stages as it went.
    assert running and all(s["owner"].startswith(f"{HOST}:{proc.pid}:") for s in running)
    assert {"fitting", "measuring"} <= {s["stage"] for s in running}
    progress = [s["progress"] for s in states]
    assert progress == sorted(progress) and any(0 < p < 1 for p in progress)
    assert final["progress"] == 1.0 and final["attempts"] == 1 and final["owner"] is None
    twin = await services.twins.get("twn_child")
    assert final["result"]["id"] == "twn_child" == twin["id"]
    assert twin["measurements"]["height_m"] == pytest.approx(AVERAGE.height_m, abs=0.005)


async def test_a_job_killed_mid_run_is_retried_once_and_ends_once(tmp_path):
    services, queue, job = await submitted(tmp_path, "twn_killed")
    proc = child(tmp_path, job["id"])
    try:
        await watch(queue, job["id"], lambda s: s["stage"] == "fitting")
    finally:
        proc.kill()  # SIGKILL mid-fit: no cleanup, the record says `running`, its owner gone
        proc.join(30)
    left = await queue.status(job["id"])
    assert left["status"] == "running" and left["owner"].startswith(f"{HOST}:{proc.pid}:")
    assert lease_is_stale(left)  # the owner's process is gone: no need to wait its lease out
    runner = InProcessJobQueue(services.store, job_kinds.kinds(services))
    services.attach_jobs(runner)
    assert await runner.start() == 1
    final = await runner.wait(job["id"], timeout_s=300)
    await runner.close()
    assert final["status"] == "done", final
    assert final["attempts"] == 2 and final["interrupted"]["code"] == "interrupted"
    assert final["interrupted"]["detail"]["stage"] == "fitting"
    assert [t["id"] for t in await services.twins.list()] == ["twn_killed"]


async def test_a_rerun_of_a_finished_generate_finds_its_twin_and_writes_nothing(tmp_path):
    services, _, job = await submitted(tmp_path, "twn_again")
    runner = InProcessJobQueue(services.store, job_kinds.kinds(services))
    services.attach_jobs(runner)
    await runner.start()
    final = await runner.wait(job["id"], timeout_s=300)
    await runner.close()
    assert final["status"] == "done"
    before = services.store.snapshot(content=True)
    again = await services.twins.generate(final["payload"], lambda stage, f: None)
    assert again == final["result"]
    assert services.store.snapshot(content=True) == before
    other = {**final["payload"], "request": "someone-else"}
    with pytest.raises(SpatialTwinError) as err:
        await services.twins.generate(other, lambda stage, f: None)
    assert err.value.code == "twin_exists"


async def test_a_job_another_live_process_holds_is_left_alone(tmp_path):
    services, queue, job = await submitted(tmp_path, "twn_held")
    proc = child(tmp_path, job["id"])
    try:
        await watch(queue, job["id"], lambda s: s["stage"] == "fitting")
        held = await queue.status(job["id"])
        runner = InProcessJobQueue(services.store, job_kinds.kinds(services))
        assert await runner.start() == 0  # a fresh lease of a live process: not ours
        assert await queue.status(job["id"]) == held
        await runner.close()
        final = await watch(queue, job["id"], lambda s: s["status"] in ("done", "failed"))
    finally:
        proc.join(60)
    assert final[-1]["status"] == "done" and final[-1]["attempts"] == 1


def _running(owner: str, lease_delta_s: float) -> dict[str, Any]:
    record = new_job("twin.generate", {"twin_id": "x"}, idempotent=True, max_attempts=2)
    record.update(
        status="running",
        owner=owner,
        attempts=1,
        lease_until=iso(now_utc() + timedelta(seconds=lease_delta_s)),
    )
    return record


def test_only_a_stale_lease_counts_as_interrupted():
    gone = SPAWN.Process(target=os.getpid)
    gone.start()
    gone.join()
    assert not lease_is_stale(_running("elsewhere:4242:abcd1234", 30))  # another host, fresh
    assert lease_is_stale(_running("elsewhere:4242:abcd1234", -1))  # its lease ran out
    assert not lease_is_stale(_running(f"{HOST}:{os.getpid()}:abcd1234", 30))  # this process
    assert lease_is_stale(_running(f"{HOST}:{gone.pid}:abcd1234", 30))  # its process is gone
    assert lease_is_stale({**_running("elsewhere:1:x", 30), "owner": None})


async def test_the_heartbeat_renews_the_lease_while_the_job_runs(tmp_path):
    store = EmbeddedStore(tmp_path)
    services = Services(store)
    runner = InProcessJobQueue(store, job_kinds.kinds(services), lease_s=3.0, heartbeat_s=0.2)
    services.attach_jobs(runner)
    job = await services.twins.request_generate(generate_request("twn_beat"))
    leases = set()
    while (state := await store.get_record("jobs", job["id"]))["status"] != "done":
        if state["status"] == "running":
            leases.add(state["lease_until"])
            # never past its end while running: the heartbeat keeps it ahead of the clock
            assert not lease_is_stale(state)
        await asyncio.sleep(0.05)
    await runner.close()
    assert len(leases) >= 3


@pytest.mark.parametrize(
    "payload",
    [{"body": np.zeros(3)}, {"work": lambda: None}, {"fee": float("nan")}, ["not", "an", "object"]],
    ids=["array", "closure", "nan", "list"],
)
async def test_a_payload_is_json_or_refused(tmp_path, payload):
    store = EmbeddedStore(tmp_path)
    queue = StoreJobQueue(store, job_kinds.kinds(Services(store)))
    with pytest.raises(SpatialTwinError) as err:
        await queue.submit("lod.build", payload)
    assert err.value.code == "invalid_job_payload"
    assert store.snapshot() == {"records": 0, "blobs": 0}


async def test_an_unknown_kind_is_refused(tmp_path):
    store = EmbeddedStore(tmp_path)
    queue = StoreJobQueue(store, job_kinds.kinds(Services(store)))
    with pytest.raises(SpatialTwinError) as err:
        await queue.submit("twin.teleport", {})
    assert err.value.code == "unknown_job_kind"
    assert (
        set(err.value.detail["known"])
        == set(job_kinds.NAMES)
        == {
            "twin.generate",
            "garment.ingest",
            "look.drape",
            "lod.build",
            "product.look",
            "still.render",
        }
    )
