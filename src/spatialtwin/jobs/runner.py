"""Running jobs: claim one under a lease, report progress, finish; recover what others left.

`JobRunner.run_job(job_id)` is what any process does with a queued job: claim it
(compare-and-set queued -> running, with this process as `owner` and a lease), run its kind
with a thread-safe `progress(stage, fraction)`, renew the lease every `heartbeat_s` while
writing the latest progress, and write the end (done with the result, failed with the error).
A runner that finds its lease taken over (it stalled past its lease and another process ran
the job again) stops and writes nothing more; one that cannot reach the store for a heartbeat
(Redis restarting) keeps working and renews at the next.

`InProcessJobQueue` is a `StoreJobQueue` that also runs: each submitted job as a task of this
event loop (at most `concurrency` at once; their CPU work goes to the services' executor), and
on `start` every job a stopped process left: queued ones, and running ones whose lease is stale
(retried once where idempotent, else failed `interrupted`). A job another live process holds is
never touched. On `close` its own running jobs are handed back the same way. A job that ends
failed, whichever way, gets its kind's `on_failure` clean-up (`JobKind`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

from spatialtwin.errors import RecordChangedError, SpatialTwinError, StoreUnavailableError
from spatialtwin.jobs.queue import JobKind, StoreJobQueue
from spatialtwin.jobs.records import (
    ACTIVE,
    JOBS,
    RecordStore,
    clamp_fraction,
    error_json,
    iso,
    lease_is_stale,
    lease_until,
    now_utc,
    process_owner,
)

log = logging.getLogger("spatialtwin.jobs")
LEASE_S = 30.0
CAS_ATTEMPTS = 16


class LeaseLostError(Exception):
    """Another process holds the job now."""


class JobRunner:
    def __init__(
        self,
        store: RecordStore,
        kinds: Mapping[str, JobKind],
        *,
        owner: str | None = None,
        lease_s: float = LEASE_S,
        heartbeat_s: float | None = None,
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.owner = owner or process_owner()
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else lease_s / 3
        self.live: dict[str, dict[str, Any]] = {}
        self._live_lock = threading.Lock()

    def live_copy(self, job_id: str) -> dict[str, Any] | None:
        with self._live_lock:
            live = self.live.get(job_id)
            return None if live is None else dict(live)

    async def _update(self, job_id: str, change: Any, *, owned: bool) -> dict[str, Any] | None:
        """Compare-and-set `change(record) -> record | None` on the job record (None: leave it);
        with `owned`, only while this runner holds it (`LeaseLostError` otherwise)."""
        for _ in range(CAS_ATTEMPTS):
            got = await self.store.get_record_revision(JOBS, job_id)
            if got is None:
                if owned:
                    raise LeaseLostError(job_id)
                return None
            record, revision = got
            if owned and (record.get("owner") != self.owner or record.get("status") != "running"):
                raise LeaseLostError(job_id)
            new = change(dict(record))
            if new is None:
                return None
            new["updated_at"] = iso(now_utc())
            try:
                await self.store.replace_record(JOBS, job_id, new, revision)
            except RecordChangedError:
                continue
            return new
        raise RecordChangedError(JOBS, job_id)

    async def claim(self, job_id: str) -> dict[str, Any] | None:
        """Take a queued job (None when it is not queued, or another process took it)."""

        def take(record: dict[str, Any]) -> dict[str, Any] | None:
            if record.get("status") != "queued":
                return None
            now = iso(now_utc())
            record.update(
                status="running",
                stage="started",
                progress=0.0,
                owner=self.owner,
                lease_until=lease_until(self.lease_s),
                attempts=int(record.get("attempts") or 0) + 1,
                started_at=now,
                error=None,
            )
            return record

        return await self._update(job_id, take, owned=False)

    async def run_job(self, job_id: str) -> dict[str, Any] | None:
        """Claim and run one job; its final record, or None when it was not ours to run."""
        record = await self.claim(job_id)
        if record is None:
            return None
        spec = self.kinds.get(str(record["kind"]))
        if spec is None:
            return await self._end(
                job_id,
                "failed",
                error=error_json(
                    "unknown_job_kind", f"this process has no job kind {record['kind']!r}"
                ),
            )
        with self._live_lock:
            self.live[job_id] = live = dict(record)
        loop = asyncio.get_running_loop()
        dirty = asyncio.Event()

        def progress(stage: str, fraction: float) -> None:
            with self._live_lock:
                if live["status"] != "running":
                    return
                live["stage"] = str(stage)[:64]
                live["progress"] = clamp_fraction(fraction, float(live["progress"]))
                live["updated_at"] = iso(now_utc())
            loop.call_soon_threadsafe(dirty.set)

        work = asyncio.ensure_future(spec.run(dict(record["payload"] or {}), progress))
        keeper = asyncio.ensure_future(self._keep_lease(job_id, live, dirty, work))
        try:
            result = await work
        except asyncio.CancelledError:
            if (
                keeper.done()
                and not keeper.cancelled()
                and isinstance(keeper.exception(), LeaseLostError)
            ):
                log.warning("job lease lost", extra={"fields": {"jobId": job_id}})
                return None
            keeper.cancel()
            with contextlib.suppress(LeaseLostError, RecordChangedError):
                await asyncio.shield(self.hand_back(job_id, owned=True))
            raise
        except StoreUnavailableError:
            # The store went away under the work (Redis restarting): not the job's failure.
            # Handed back (queued again while it has attempts left) when the store answers;
            # else whoever sees it next finds it ours and hands it back then.
            keeper.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await keeper
            with contextlib.suppress(LeaseLostError, RecordChangedError, StoreUnavailableError):
                await self.hand_back(job_id, owned=True)
            raise
        except SpatialTwinError as exc:
            return await self._finish(job_id, keeper, "failed", error=exc.to_json()["error"])
        except Exception:
            log.exception("job failed", extra={"fields": {"jobId": job_id}})
            error = error_json("internal_error", "the job failed; see the log")
            return await self._finish(job_id, keeper, "failed", error=error)
        return await self._finish(job_id, keeper, "done", result=result)

    async def _keep_lease(
        self,
        job_id: str,
        live: dict[str, Any],
        dirty: asyncio.Event,
        work: asyncio.Future[Any],
    ) -> None:
        """Write the latest progress when it changes, and renew the lease at least every
        `heartbeat_s`; cancel the work if another process took the job over."""
        while not work.done():
            # `asyncio.timeout`, not `wait_for`: on 3.11 `wait_for` swallows a cancellation
            # that arrives as the event is set, and this loop would then never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_s):
                    await dirty.wait()
            dirty.clear()
            if work.done():
                return
            with self._live_lock:
                snapshot = {k: live[k] for k in ("stage", "progress")}

            def renew(record: dict[str, Any], snap: dict[str, Any] = snapshot) -> dict[str, Any]:
                record.update(snap, lease_until=lease_until(self.lease_s))
                return record

            try:
                await self._update(job_id, renew, owned=True)
            except LeaseLostError:
                work.cancel()
                raise
            except RecordChangedError:
                continue
            except StoreUnavailableError:
                # The store is away (Redis restarting): the work goes on and the next
                # heartbeat renews the lease; a keeper that gave up here would let the lease
                # run out under a job that is still running.
                log.warning(
                    "job lease not renewed: store unavailable", extra={"fields": {"jobId": job_id}}
                )
                continue

    async def _finish(
        self, job_id: str, keeper: asyncio.Future[Any], status: str, **fields: Any
    ) -> dict[str, Any] | None:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeaseLostError, RecordChangedError):
            await keeper
        cleaned = False
        if status == "failed":
            # Clean up before the job reads `failed`: whoever waits for the job (a client
            # polling it) then finds what the failure leaves, never a moment earlier state.
            # Dying in between leaves a running job with a stale lease: recovered as usual.
            current = await self.store.get_record(JOBS, job_id)
            if current is not None and current.get("status") == "running":
                await self._clean_up_failed({**current, **fields, "status": "failed"})
                cleaned = True
        try:
            final = await self._end(job_id, status, **fields)
        except LeaseLostError:
            log.warning("job lease lost at its end", extra={"fields": {"jobId": job_id}})
            return None
        if not cleaned:
            await self._clean_up_failed(final)
        return final

    async def _clean_up_failed(self, record: dict[str, Any] | None) -> None:
        """The kind's `on_failure` for a job that ended failed (its errors are logged: the job
        stays failed either way, and what is left is swept at the next start)."""
        if record is None or record.get("status") != "failed":
            return
        spec = self.kinds.get(str(record.get("kind")))
        if spec is None or spec.on_failure is None:
            return
        try:
            await spec.on_failure(dict(record))
        except Exception:
            log.exception("failed job's clean-up failed", extra={"fields": {"jobId": record["id"]}})

    async def _end(self, job_id: str, status: str, **fields: Any) -> dict[str, Any] | None:
        def end(record: dict[str, Any]) -> dict[str, Any]:
            record.update(
                status=status,
                stage=status,
                owner=None,
                lease_until=None,
                finished_at=iso(now_utc()),
                **fields,
            )
            if status == "done":
                record["progress"] = 1.0
            return record

        try:
            final = await self._update(job_id, end, owned=True)
        finally:
            with self._live_lock:
                self.live.pop(job_id, None)
        return final

    async def hand_back(self, job_id: str, *, owned: bool) -> dict[str, Any] | None:
        """An interrupted job (ours on shutdown, or one with a stale lease): queued again
        while it is idempotent and has attempts left, else failed `interrupted`."""

        def release(record: dict[str, Any]) -> dict[str, Any] | None:
            if record.get("status") != "running" or (not owned and not lease_is_stale(record)):
                return None
            retry = (
                bool(record.get("idempotent"))
                and record.get("payload") is not None
                and int(record.get("attempts") or 0) < int(record.get("max_attempts") or 1)
            )
            interrupted = {
                "code": "interrupted",
                "message": "the process running the job stopped during it",
                "detail": {"stage": record.get("stage"), "attempts": record.get("attempts")},
            }
            if retry:
                record.update(status="queued", stage="queued", progress=0.0, error=None)
                record["interrupted"] = interrupted
            else:
                record.update(status="failed", stage="failed", error=interrupted)
                record["finished_at"] = iso(now_utc())
            record.update(owner=None, lease_until=None)
            return record

        try:
            handed = await self._update(job_id, release, owned=owned)
        finally:
            if owned:
                with self._live_lock:
                    self.live.pop(job_id, None)
        await self._clean_up_failed(handed)
        return handed


class InProcessJobQueue(StoreJobQueue):
    """Submits jobs to the store and runs them in this process (see the module docstring)."""

    def __init__(
        self,
        store: RecordStore,
        kinds: Mapping[str, JobKind],
        *,
        concurrency: int = 2,
        lease_s: float = LEASE_S,
        heartbeat_s: float | None = None,
    ) -> None:
        super().__init__(store, kinds)
        self.runner = JobRunner(store, kinds, lease_s=lease_s, heartbeat_s=heartbeat_s)
        self.concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def start(self) -> int:
        """Take up what a stopped process left; returns how many jobs were (re)started."""
        started = 0
        for record in await self.store.list_records(JOBS):
            status = record.get("status")
            if status == "running" and lease_is_stale(record):
                handed = await self.runner.hand_back(record["id"], owned=False)
                if handed is not None and handed.get("status") == "queued":
                    self._schedule(record["id"])
                    started += 1
            elif status == "queued":
                self._schedule(record["id"])
                started += 1
        return started

    def _submitted(self, record: dict[str, Any]) -> None:
        self._schedule(record["id"])

    def _schedule(self, job_id: str) -> None:
        running = self._tasks.get(job_id)
        if self._closed or (running is not None and not running.done()):
            return
        task = asyncio.get_running_loop().create_task(self._run(job_id))
        self._tasks[job_id] = task

        def forget(done: asyncio.Task[None], j: str = job_id) -> None:
            if self._tasks.get(j) is done:
                del self._tasks[j]

        task.add_done_callback(forget)

    async def _run(self, job_id: str) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            try:
                await self.runner.run_job(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job runner failed", extra={"fields": {"jobId": job_id}})

    async def status(self, job_id: str) -> dict[str, Any]:
        live = self.runner.live_copy(job_id)
        return live if live is not None else await super().status(job_id)

    def running(self) -> list[str]:
        return sorted(self._tasks)

    async def close(self) -> None:
        """Stop running: our running jobs are handed back (queued again or failed)."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["ACTIVE", "InProcessJobQueue", "JobRunner", "LeaseLostError"]
