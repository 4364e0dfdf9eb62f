"""What every service of one process shares: the store, the executor, the options, the cache,
the job queue and the record repositories.

The services (`access`, `twins`, `garments`, `looks`, `lod`) take this context and the
services they build on, so they import each other in one direction only
(access ← twins ← garments ← looks ← lod); `services.context.Services` wires them together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from spatialtwin.body.template import TemplateBody
from spatialtwin.garment.look import LookOptions
from spatialtwin.garment.pipeline import IngestOptions
from spatialtwin.jobs.queue import JobQueue
from spatialtwin.lod.levels import DEFAULTS as LOD_DEFAULTS
from spatialtwin.lod.levels import LevelOptions
from spatialtwin.services.cache import DEFAULT_MAX_BYTES, ByteLRU
from spatialtwin.store.base import Store
from spatialtwin.store.garment_repository import GarmentRepository
from spatialtwin.store.lod_cache import LodRecords
from spatialtwin.store.look_repository import LookRepository
from spatialtwin.store.twin_repository import TwinRepository

INLINE_MAX_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class ServiceOptions:
    ingest: IngestOptions
    look: LookOptions
    lod: LevelOptions
    garment_inline_max_bytes: int = INLINE_MAX_BYTES
    cache_max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ServiceOptions:
        return cls(
            ingest=IngestOptions.from_settings(settings),
            look=LookOptions.from_settings(settings),
            lod=settings.get("lod_options", LOD_DEFAULTS),
            garment_inline_max_bytes=int(
                settings.get("garment_inline_max_bytes", INLINE_MAX_BYTES)
            ),
            cache_max_bytes=int(settings.get("cache_max_bytes", DEFAULT_MAX_BYTES)),
        )


class ServiceContext:
    def __init__(
        self,
        store: Store,
        *,
        executor: Executor | None = None,
        settings: dict[str, Any] | None = None,
        template: TemplateBody | None = None,
        jobs: JobQueue | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.options = ServiceOptions.from_settings(settings or {})
        self.template = template  # None: the shipped hm08 template, read on first use
        self.cache = ByteLRU(self.options.cache_max_bytes)
        self._jobs = jobs
        self.twin_records = TwinRepository(store)
        self.garment_records = GarmentRepository(store)
        self.look_records = LookRepository(store)
        self.lod_records = LodRecords(store)

    def attach_jobs(self, jobs: JobQueue) -> None:
        self._jobs = jobs

    @property
    def jobs(self) -> JobQueue:
        if self._jobs is None:
            raise RuntimeError("these services have no job queue (attach_jobs)")
        return self._jobs

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on the executor: meshing, skinning and GLB writing never run on the
        event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
