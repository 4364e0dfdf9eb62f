"""Concurrent jobs per tenant (`jobs.queue.StoreJobQueue.max_active_per_tenant`), at the edge:
the limit's worth of a brand's jobs queue, one more is 429 `too_many_jobs` and writes no
record; other tenants, admins and the system are not held to it; joining a job already
queued is not a new one; a job that ends makes room."""

from __future__ import annotations

import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.jobs.queue import JobKind, StoreJobQueue, TooManyJobsError
from spatialtwin.jobs.records import JOBS
from spatialtwin.server.loading import tenant_job_limit
from spatialtwin.store.embedded import EmbeddedStore

LIMIT = 3


async def _never(payload, progress):  # pragma: no cover - nothing runs these jobs
    return {}


def caller(role: str, tenant: str | None) -> dict:
    return {"caller": {"role": role, "tenant": tenant, "subject": "t", "region": None}}


@pytest.fixture
def queue(tmp_path):
    q = StoreJobQueue(EmbeddedStore(tmp_path), {"look.drape": JobKind(_never)})
    q.max_active_per_tenant = LIMIT
    return q


async def test_the_limit_queues_and_one_more_is_refused_without_a_record(queue):
    for i in range(LIMIT):
        await queue.submit("look.drape", {"n": i, **caller("brand", "acme")})
    before = sorted(await queue.store.list_ids(JOBS))
    with pytest.raises(TooManyJobsError) as err:
        await queue.submit("look.drape", {"n": 99, **caller("brand", "acme")})
    assert err.value.status == 429 and err.value.code == "too_many_jobs"
    assert err.value.detail == {"tenant": "acme", "active": LIMIT, "limit": LIMIT,
                                "retry_after_s": 5}  # fmt: skip
    assert err.value.retry_after_s == 5
    assert sorted(await queue.store.list_ids(JOBS)) == before
    # another brand, an admin and the system have their own room
    await queue.submit("look.drape", {"n": 1, **caller("brand", "globex")})
    await queue.submit("look.drape", {"n": 2, **caller("admin", None)})
    await queue.submit("look.drape", {"n": 3})
    assert len(await queue.store.list_ids(JOBS)) == LIMIT + 3


async def test_joining_a_queued_job_is_not_a_new_one_and_an_ended_job_makes_room(queue):
    first, created = await queue.submit_unique("look.drape", caller("brand", "acme"), "k0")
    assert created
    for i in range(1, LIMIT):
        await queue.submit_unique("look.drape", {"n": i, **caller("brand", "acme")}, f"k{i}")
    joined, created = await queue.submit_unique("look.drape", caller("brand", "acme"), "k0")
    assert not created and joined["id"] == first["id"]
    with pytest.raises(TooManyJobsError):
        await queue.submit_unique("look.drape", {"n": 9, **caller("brand", "acme")}, "k9")
    record, revision = await queue.store.get_record_revision(JOBS, first["id"])
    await queue.store.replace_record(JOBS, first["id"], {**record, "status": "done"}, revision)
    _, created = await queue.submit_unique("look.drape", {"n": 9, **caller("brand", "acme")}, "k9")
    assert created


async def test_zero_is_no_limit(queue):
    queue.max_active_per_tenant = 0
    for i in range(2 * LIMIT):
        await queue.submit("look.drape", {"n": i, **caller("brand", "acme")})


@pytest.mark.parametrize("value", [-1, 10_001, 2.5, "8", True, None])
def test_a_bad_setting_is_refused(value):
    with pytest.raises(SpatialTwinError) as err:
        tenant_job_limit({"max_active_jobs_per_tenant": value})
    assert err.value.code == "invalid_setting"


def test_the_setting_reads_its_default_and_zero():
    assert tenant_job_limit({}) == 8 and tenant_job_limit({"max_active_jobs_per_tenant": 0}) == 0
