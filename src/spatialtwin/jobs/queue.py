"""The job queue protocol and its store-backed submitter.

    queue = StoreJobQueue(store, kinds)
    job = await queue.submit("look.drape", {"look_id": "look_1", "twin": "twn_ava", ...})
    (await queue.status(job["id"]))["progress"]     # 0..1, as the running process reports it

A kind is registered by name with the function that runs it (`JobKind.run(payload,
progress)`, in `services/job_kinds.py`); the payload is JSON (`records.json_payload`), so a
job submitted here can be run by any process that opens the same store and knows the kinds.
`StoreJobQueue` only writes and reads records: something else runs the jobs (an
`InProcessJobQueue` of this or another process, a worker).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from spatialtwin.errors import (
    NotFoundError,
    RecordChangedError,
    RecordExistsError,
    SpatialTwinError,
)
from spatialtwin.jobs.records import ACTIVE, JOBS, RecordStore, json_payload, new_job, unique_job_id

Progress = Callable[[str, float], None]
"""`progress(stage, fraction)`: a running job's report; callable from any thread."""

KIND_RETRIES = 1  # an idempotent job killed mid-run is run once more


@dataclass(frozen=True)
class JobKind:
    """What a kind name runs: `run(payload, progress) -> result` (JSON). `idempotent`: running
    it again after an interruption is safe (it finds its own earlier writes and ends the same).
    `on_failure(job)`: removes what a failed job leaves (a garment upload staged for it), given
    the job's record once it ended `failed`: by the runner when `run` raised, or by whoever
    recovered it interrupted with no attempt left (a restart, a shutdown). An interrupted job
    that will run again is not cleaned: its next attempt needs what it left."""

    run: Callable[[dict[str, Any], Progress], Awaitable[dict[str, Any]]]
    idempotent: bool = True
    on_failure: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    @property
    def max_attempts(self) -> int:
        return 1 + KIND_RETRIES if self.idempotent else 1


class JobQueue(Protocol):
    async def submit(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Queue a job; returns its record (status `queued`)."""

    async def submit_unique(
        self, kind: str, payload: Mapping[str, Any], key: str
    ) -> tuple[dict[str, Any], bool]:
        """Queue a job unless one holding `key` is queued or running: (that job or the new
        one, whether this call queued it)."""

    async def status(self, job_id: str) -> dict[str, Any]:
        """The job's record as last reported; `NotFoundError` (404) for an unknown id."""

    async def wait(self, job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The job's record once it is done or failed."""


class ServedJobQueue(JobQueue, Protocol):
    """A process's job queue over its lifetime: `start` takes up what stopped processes left
    (returns how many jobs it started), `close` hands back what runs here. Both
    `runner.InProcessJobQueue` (jobs run in this process) and
    `dramatiq_queue.DramatiqJobQueue` (jobs run by workers) are one."""

    async def start(self) -> int: ...

    async def close(self) -> None: ...


DEFAULT_MAX_ACTIVE_PER_TENANT = 8  # setting `max_active_jobs_per_tenant`; 0: no limit
TENANT_ROLES = ("agency", "model", "brand")  # whose jobs count against their tenant


def tenant_of(payload: Mapping[str, Any]) -> str | None:
    """The tenant a job's submitter acts for (`payload["caller"]`, services.access), or None
    for jobs of an admin, a device, the system (seeding, level builds)."""
    caller = payload.get("caller")
    if not isinstance(caller, dict) or caller.get("role") not in TENANT_ROLES:
        return None
    tenant = caller.get("tenant")
    return tenant if isinstance(tenant, str) and tenant else None


class TooManyJobsError(SpatialTwinError):
    """429 with `Retry-After` (the error middleware adds it from `retry_after_s`)."""

    retry_after_s = 5

    def __init__(self, tenant: str, active: int, limit: int) -> None:
        super().__init__(
            "too_many_jobs",
            f"tenant {tenant!r} has {active} jobs queued or running; at most {limit}",
            {"tenant": tenant, "active": active, "limit": limit, "retry_after_s": 5},
            status=429,
        )


class StoreJobQueue:
    """Jobs as records of `store`: submit and read; runs nothing itself.

    A tenant (a brand, an agency) holds at most `max_active_per_tenant` jobs queued or running
    at once: one brand's bulk upload cannot take every worker on launch day. The next submit is
    refused **429** `too_many_jobs` with `Retry-After` before any record is written; joining a
    unique job already queued (the same look asked for again) is not a new job."""

    max_active_per_tenant: int = DEFAULT_MAX_ACTIVE_PER_TENANT

    def __init__(self, store: RecordStore, kinds: Mapping[str, JobKind]) -> None:
        self.store = store
        self.kinds = kinds

    async def _check_tenant_room(self, payload: Mapping[str, Any]) -> None:
        tenant = tenant_of(payload)
        limit = self.max_active_per_tenant
        if tenant is None or limit <= 0:
            return
        active = sum(
            1
            for r in await self.store.list_records(JOBS)
            if r.get("status") in ACTIVE and tenant_of(r.get("payload") or {}) == tenant
        )
        if active >= limit:
            raise TooManyJobsError(tenant, active, limit)

    def _kind(self, kind: str) -> JobKind:
        spec = self.kinds.get(kind)
        if spec is None:
            raise SpatialTwinError(
                "unknown_job_kind",
                f"no job kind {kind!r} is registered",
                {"kind": kind, "known": sorted(self.kinds)},
            )
        return spec

    async def submit(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        spec = self._kind(kind)
        checked = json_payload(payload)
        await self._check_tenant_room(checked)
        record = new_job(kind, checked, idempotent=spec.idempotent, max_attempts=spec.max_attempts)
        await self.store.create_record(JOBS, record["id"], record)
        self._submitted(record)
        return dict(record)

    async def submit_unique(
        self, kind: str, payload: Mapping[str, Any], key: str
    ) -> tuple[dict[str, Any], bool]:
        """A job that holds `key` has the key's own id (`unique_job_id`): creating it is the
        claim, so of two submits racing for one key exactly one queues a job, and nothing is
        left half-claimed by a crash. Once that job has ended, the next submit of the key
        queues a new job under the same id."""
        spec = self._kind(kind)
        checked = json_payload(payload)
        job_id = unique_job_id(key)
        for _ in range(16):
            record = new_job(
                kind,
                checked,
                idempotent=spec.idempotent,
                max_attempts=spec.max_attempts,
                unique_key=key,
                job_id=job_id,
            )
            got = await self.store.get_record_revision(JOBS, job_id)
            if got is None or got[0].get("status") not in ACTIVE:
                await self._check_tenant_room(checked)
            try:
                if got is None:
                    await self.store.create_record(JOBS, job_id, record)
                elif got[0].get("status") in ACTIVE:
                    return await self.status(job_id), False
                else:
                    await self.store.replace_record(JOBS, job_id, record, got[1])
            except (RecordExistsError, RecordChangedError):
                continue
            self._submitted(record)
            return dict(record), True
        raise RecordChangedError(JOBS, job_id)

    def _submitted(self, record: dict[str, Any]) -> None:
        """Hook: an in-process queue starts the job here."""

    async def status(self, job_id: str) -> dict[str, Any]:
        record = await self.store.get_record(JOBS, job_id)
        if record is None:
            raise NotFoundError("job", job_id)
        return record

    async def wait(self, job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            record = await self.status(job_id)
            if record.get("status") not in ACTIVE:
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {record.get('status')}")
            await asyncio.sleep(0.05)
