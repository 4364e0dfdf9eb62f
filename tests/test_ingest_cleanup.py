"""Garment ingest jobs lose nothing and leave nothing (issue #7): an upload staged as a blob
for its `garment.ingest` job stays while the job may still run, and goes once it cannot.

- a shutdown mid-ingest keeps the upload: the job is queued again and finishes after the
  restart;
- a job that fails releases its upload, unless another record names it (a second job queued
  with the same file);
- a job killed on its last attempt is failed by the next start, which releases its upload;
- at a server's start, blobs no record names that were stored over an hour ago (what a killed
  process leaves) are swept; younger ones (a write in flight) and named ones stay.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from spatialtwin.jobs.queue import StoreJobQueue
from spatialtwin.jobs.runner import InProcessJobQueue, JobRunner
from spatialtwin.server.app import PROJECT_ROOT, create_app
from spatialtwin.server.loading import LOADER
from spatialtwin.services import job_kinds
from spatialtwin.services.blobs import keys_named
from spatialtwin.services.context import Services
from spatialtwin.store.embedded import EmbeddedStore
from spatialtwin.worker import run_job_in_process
from tests.conftest import AdminTestClient, shared

SPAWN = multiprocessing.get_context("spawn")
META = {"sku": "SKU-1", "name": "Work suit", "category": "outfit", "fabric": "cotton-jersey"}
HOUR_S = 3600.0


def blob_exists(store: EmbeddedStore, key: str) -> bool:
    return store.blob_path(key) is not None


def age(store: EmbeddedStore, key: str, seconds: float) -> None:
    """Make blob `key` look stored `seconds` ago (what the passing of that time does)."""
    path = store.blob_path(key)
    assert path is not None
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


async def until(queue, job_id: str, done, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not done(state := await queue.status(job_id)):
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.02)
    return state


def running_ingest(state: dict[str, Any]) -> bool:
    """Reading or preparing the upload, before anything of the garment is stored."""
    return state["status"] == "running" and float(state["progress"]) < 0.9


async def test_a_shutdown_mid_ingest_keeps_the_upload_and_the_restart_finishes_it(tmp_path):
    store = EmbeddedStore(tmp_path)
    services = Services(store)
    queue = InProcessJobQueue(store, job_kinds.kinds(services))
    services.attach_jobs(queue)
    obj = shared("garments", "male_worksuit01.obj")
    job = await services.garments.submit_ingest(obj, obj.name, META)
    source = job["payload"]["source"]
    await until(queue, job["id"], running_ingest)
    await queue.close()  # SIGTERM: the running job is handed back

    left = await StoreJobQueue(store, {}).status(job["id"])
    assert left["status"] == "queued" and left["attempts"] == 1, left
    assert blob_exists(store, source)  # its next attempt reads it

    again = Services(EmbeddedStore(tmp_path))
    restarted = InProcessJobQueue(again.store, job_kinds.kinds(again))
    again.attach_jobs(restarted)
    assert await restarted.start() == 1
    final = await restarted.wait(job["id"], timeout_s=300)
    await restarted.close()
    assert final["status"] == "done" and final["attempts"] == 2, final
    garment = await again.garments.get(job["payload"]["garment_id"])
    assert garment["blobs"]["source"] == source and garment["triangles"] == 6986


async def test_a_failed_ingest_keeps_an_upload_another_queued_job_needs(tmp_path):
    """Two uploads of one file, the first refused (an outfit sent as a skirt): the first
    job's failure must not take the file the second, queued behind it, reads."""
    store = EmbeddedStore(tmp_path)
    services = Services(store)
    queue = InProcessJobQueue(store, job_kinds.kinds(services), concurrency=1)
    services.attach_jobs(queue)
    obj = shared("garments", "female_casualsuit01.obj")
    refused = await services.garments.submit_ingest(obj, obj.name, {**META, "category": "skirt"})
    kept = await services.garments.submit_ingest(obj, obj.name, META)
    source = refused["payload"]["source"]
    assert kept["payload"]["source"] == source and refused["payload"]["staged"] == [source]

    first = await queue.wait(refused["id"], timeout_s=300)
    second = await queue.wait(kept["id"], timeout_s=300)
    await queue.close()
    assert first["status"] == "failed" and first["error"]["code"] == "category_mismatch"
    assert second["status"] == "done", second
    garment = await services.garments.get(kept["payload"]["garment_id"])
    assert garment["blobs"]["source"] == source and blob_exists(store, source)
    stored = {key for key, _ in await store.list_blobs()}
    assert stored == keys_named(garment["blobs"])  # nothing else is left


async def test_a_failed_ingest_alone_leaves_no_blob(tmp_path):
    store = EmbeddedStore(tmp_path)
    services = Services(store)
    queue = InProcessJobQueue(store, job_kinds.kinds(services))
    services.attach_jobs(queue)
    obj = shared("garments", "female_casualsuit01.obj")
    job = await services.garments.submit_ingest(obj, obj.name, {**META, "category": "skirt"})
    final = await queue.wait(job["id"], timeout_s=300)
    await queue.close()
    assert final["status"] == "failed" and final["error"]["code"] == "category_mismatch"
    assert await store.list_blobs() == []
    assert store.snapshot() == {"records": 1, "blobs": 0}  # the failed job's record alone


def kill_mid_ingest(root: Path, job_id: str) -> int:
    """Run the job in a child process (a worker) and SIGKILL it while it prepares the mesh;
    returns the child's pid."""
    proc = SPAWN.Process(target=run_job_in_process, args=(str(root), job_id))
    proc.start()
    reader = StoreJobQueue(EmbeddedStore(root), {})
    try:
        asyncio.run(until(reader, job_id, running_ingest))
    finally:
        proc.kill()
        proc.join(30)
    return int(proc.pid or 0)


async def test_an_ingest_killed_on_its_last_attempt_is_failed_at_start_and_its_upload_removed(
    tmp_path,
):
    store = EmbeddedStore(tmp_path)
    services = Services(store)
    kinds = job_kinds.kinds(services)
    services.attach_jobs(StoreJobQueue(store, kinds))
    obj = shared("garments", "male_worksuit01.obj")
    job = await services.garments.submit_ingest(obj, obj.name, META)
    source = job["payload"]["source"]

    await asyncio.to_thread(kill_mid_ingest, tmp_path, job["id"])
    handed = await JobRunner(store, kinds).hand_back(job["id"], owned=False)
    assert handed is not None and handed["status"] == "queued"  # one attempt left
    assert blob_exists(store, source)
    await asyncio.to_thread(kill_mid_ingest, tmp_path, job["id"])
    assert blob_exists(store, source)  # killed: nothing cleaned up

    again = Services(EmbeddedStore(tmp_path))
    restarted = InProcessJobQueue(again.store, job_kinds.kinds(again))
    again.attach_jobs(restarted)
    assert await restarted.start() == 0  # nothing to run: the job is failed, not retried
    await restarted.close()
    final = await restarted.status(job["id"])
    assert final["status"] == "failed" and final["error"]["code"] == "interrupted"
    assert final["attempts"] == 2
    assert not blob_exists(store, source)
    assert store.snapshot() == {"records": 1, "blobs": 0}


async def test_a_start_sweeps_old_blobs_no_record_names(tmp_path):
    """The data directory of a killed process: an upload staged for a job it never got to
    submit (an hour old: swept), one staged a moment ago by a process still running (kept),
    and a stored garment's blobs (named: kept, however old)."""
    data = tmp_path / "data"
    store = EmbeddedStore(data)
    services = Services(store)
    garment = await services.garments.ingest(
        (PROJECT_ROOT / "assets" / "garments" / "tshirt.glb").read_bytes(),
        "tshirt.glb",
        {**META, "category": "top"},
    )
    named = keys_named(garment["blobs"])
    orphan, _ = await store.put_blob_file(shared("garments", "male_worksuit01.obj"))
    in_flight, _ = await store.put_blob_file(shared("garments", "female_sportsuit01.obj"))
    for key in (*named, orphan):
        age(store, key, 2 * HOUR_S)

    client = AdminTestClient(TestServer(create_app(data, seed=False)))
    await client.start_server()
    try:
        sweep = client.app[LOADER].opened.sweep
        await asyncio.wait_for(sweep, timeout=60)
        r = await client.get(f"/api/v1/garments/{garment['id']}")
        assert r.status == 200
    finally:
        await client.close()
    left = {key for key, _ in await store.list_blobs()}
    assert left == named | {in_flight}
    assert orphan not in left


async def test_a_blob_stored_again_is_not_deleted_as_unused(tmp_path):
    """`delete_blob(stored_before_s=)` spares bytes put again after the deleter's cut-off:
    putting a blob the store has marks it stored now."""
    store = EmbeddedStore(tmp_path)
    key, created = await store.put_blob(b"an upload")
    age(store, key, 2 * HOUR_S)
    cutoff_s = time.time() - HOUR_S
    again, created_again = await store.put_blob(b"an upload")  # another upload, same bytes
    assert (again, created, created_again) == (key, True, False)
    assert not await store.delete_blob(key, stored_before_s=cutoff_s)
    assert blob_exists(store, key)
    age(store, key, 2 * HOUR_S)
    assert await store.delete_blob(key, stored_before_s=cutoff_s)
    assert not blob_exists(store, key)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"blobs": {"source": "a" * 64, "images": ["b" * 64]}}, {"a" * 64, "b" * 64}),
        ({"url": f"/api/v1/lod/{'c' * 64}.glb"}, {"c" * 64}),
        ({"d" * 64: True, "short": "e" * 63, "long": "f" * 65}, {"d" * 64}),
    ],
)
def test_blob_keys_are_found_anywhere_in_a_record(value, found):
    assert keys_named(value) == found
