"""Blobs nothing needs any more: found by the keys the records name, and removed.

A blob is in use while a record names its key anywhere (as a value, a field name or the
record's id): a twin's body arrays, a garment's source, meshes and textures, a look's GLB, a
level set's files, and the upload a queued or running job will read. A finished job holds
only what its `result` names: the upload of a failed ingest is garbage once the job failed.
Reading every record rather than a list of known fields keeps a new record kind's blobs safe
without this module knowing it. Whoever names a blob in a record puts it first (which marks it
stored now), so a blob named while a removal runs is young, and spared.

Two removals use it:
- `release_blobs`: a failed job's own blobs (`garment.ingest`'s upload), unless another
  record names them or someone stored the same bytes again after `since_s`;
- `sweep_unused_blobs`: at a server's start, every blob no record names that was last stored
  more than `min_age_s` ago (an hour by default: no write goes that long between storing a
  blob and the record that names it), which is what a killed process leaves: an upload staged
  for a job never submitted, an inline ingest's arrays without its record.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spatialtwin.jobs.records import ACTIVE, JOBS
from spatialtwin.store.base import Store

log = logging.getLogger("spatialtwin.blobs")
SWEEP_MIN_AGE_S = 3600.0
_KEY = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def keys_named(value: Any) -> set[str]:
    """Every SHA-256 hex key in a JSON value: strings (also inside URLs such as a level
    file's `/api/v1/lod/<sha>.glb`) and object keys, at any depth."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.update(_KEY.findall(item))
        elif isinstance(item, dict):
            for key, inner in item.items():
                found.update(_KEY.findall(str(key)))
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _named_by(kind: str, record_id: str, record: dict[str, Any]) -> set[str]:
    if kind == JOBS and record.get("status") not in ACTIVE:
        return keys_named(record.get("result"))
    return keys_named(record) | keys_named(record_id)


async def keys_in_use(store: Store, ending_job: str | None = None) -> set[str]:
    """The keys every record names; `ending_job`'s record counts as ended (its clean-up
    runs before it is marked so, `jobs.runner`)."""
    used: set[str] = set()
    for kind in await store.list_kinds():
        for record_id in await store.list_ids(kind):
            record = await store.get_record(kind, record_id)
            if record is not None and kind == JOBS and record_id == ending_job:
                record = {**record, "status": "failed"}
            if record is not None:
                used |= _named_by(kind, record_id, record)
    return used


async def release_blobs(
    store: Store, keys: Iterable[str], since_s: float, ending_job: str | None = None
) -> list[str]:
    """Delete those of `keys` no record names (`ending_job` ended) and nobody stored again
    after `since_s` (seconds since the epoch); returns the keys deleted."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    used = await keys_in_use(store, ending_job)
    deleted = []
    for key in wanted:
        if key not in used and await store.delete_blob(key, stored_before_s=since_s):
            deleted.append(key)
    return deleted


@dataclass(frozen=True)
class SweepReport:
    blobs: int
    in_use: int
    removed: int
    kept_young: int

    def to_json(self) -> dict[str, int]:
        return {
            "blobs": self.blobs,
            "inUse": self.in_use,
            "removed": self.removed,
            "keptYoung": self.kept_young,
        }


async def sweep_unused_blobs(store: Store, min_age_s: float = SWEEP_MIN_AGE_S) -> SweepReport:
    """Remove every blob no record names, last stored more than `min_age_s` ago."""
    started_s = time.time()
    blobs = await store.list_blobs()
    used = await keys_in_use(store)
    cutoff_s = started_s - min_age_s
    removed = young = 0
    for key, stored_at_s in blobs:
        if key in used:
            continue
        if stored_at_s >= cutoff_s:
            young += 1
        elif await store.delete_blob(key, stored_before_s=cutoff_s):
            removed += 1
    report = SweepReport(len(blobs), sum(1 for k, _ in blobs if k in used), removed, young)
    log.info("blobs swept", extra={"fields": report.to_json()})
    return report
