"""Long-running work as jobs: a record in the store (`jobs/<id>`) that reports progress.

A job's coroutine receives a thread-safe `progress(stage, fraction)`; the runner keeps the live
state in memory (so polling is cheap) and writes it to the store at each stage, so another
server process, or this one after a restart, can read it. A job still `running` when the
process stops is marked `failed` (`interrupted`) at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.rights.license import now_utc
from spatialtwin.store.base import Store

KIND = "jobs"
Progress = Callable[[str, float], None]
JobWork = Callable[[Progress], Awaitable[dict[str, Any]]]
log = logging.getLogger("spatialtwin.jobs")


class JobRunner:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._live: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    async def recover(self) -> int:
        """Mark jobs a previous process left unfinished as failed; returns how many."""
        count = 0
        for record in await self.store.list_records(KIND):
            if record.get("status") in ("queued", "running"):
                record.update(
                    status="failed",
                    error={"code": "interrupted", "message": "the server stopped during the job"},
                    updated_at=now_utc().isoformat(),
                )
                await self.store.put_record(KIND, record["id"], record)
                count += 1
        return count

    async def start(self, kind: str, work: JobWork) -> dict[str, Any]:
        job_id = f"job_{uuid.uuid4().hex[:12]}"
        now = now_utc().isoformat()
        record = {
            "id": job_id,
            "kind": kind,
            "status": "queued",
            "progress": 0.0,
            "stage": "queued",
            "result": None,
            "error": None,
            "created_at": now,
            "updated_at": now,
        }
        self._live[job_id] = record
        self._locks[job_id] = asyncio.Lock()
        await self._persist(job_id)
        loop = asyncio.get_running_loop()

        def progress(stage: str, fraction: float) -> None:
            # Called from worker threads: update in place, schedule a write on the loop.
            record.update(
                status="running",
                stage=stage,
                progress=round(max(record["progress"], min(float(fraction), 1.0)), 3),
                updated_at=now_utc().isoformat(),
            )
            loop.call_soon_threadsafe(self._schedule_persist, job_id)

        task = asyncio.create_task(self._run(job_id, work, progress))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return dict(record)

    def _schedule_persist(self, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._persist(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _persist(self, job_id: str) -> None:
        async with self._locks[job_id]:
            await self.store.put_record(KIND, job_id, dict(self._live[job_id]))

    async def _run(self, job_id: str, work: JobWork, progress: Progress) -> None:
        record = self._live[job_id]
        try:
            progress("started", 0.01)
            result = await work(progress)
            record.update(status="done", stage="done", progress=1.0, result=result)
        except SpatialTwinError as exc:
            record.update(status="failed", stage="failed", error=exc.to_json()["error"])
        except Exception:
            log.exception("job failed", extra={"fields": {"jobId": job_id}})
            record.update(
                status="failed",
                stage="failed",
                error={"code": "internal_error", "message": "the job failed; see the log"},
            )
        record["updated_at"] = now_utc().isoformat()
        await self._persist(job_id)

    async def get(self, job_id: str) -> dict[str, Any]:
        live = self._live.get(job_id)
        if live is not None:
            return dict(live)
        record = await self.store.get_record(KIND, job_id)
        if record is None:
            raise NotFoundError("job", job_id)
        return record

    async def wait(self, job_id: str) -> dict[str, Any]:
        """Until the job ends (for the CLI and tests)."""
        while (await self.get(job_id))["status"] in ("queued", "running"):
            await asyncio.sleep(0.05)
        return await self.get(job_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
