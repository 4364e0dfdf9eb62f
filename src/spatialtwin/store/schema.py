"""Record schemas: every stored record kind carries a `schema_version`; older records upgrade.

The shapes are documented in `docs/records.md`. A record written before versions existed has
no `schema_version` and reads as version 0. Repositories stamp what they write (`stamped`) and
upgrade what they read (`upgraded`), so a record written by an older process — in an old data
directory, or by an older server of a fleet sharing one Redis — reads in today's shape;
`migrate` rewrites a whole store in place on start (compare-and-set, so a writer that changes
a record meanwhile is never overwritten). A record from newer code (a version above today's)
is left as it is.

Upgrades are pure functions of one record, version n -> n + 1, listed per kind in `UPGRADES`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any, Protocol

from spatialtwin.store.base import RecordChangedError

log = logging.getLogger("spatialtwin.schema")

Record = dict[str, Any]
Upgrade = Callable[[Record], Record]

TWINS = "twins"
GARMENTS = "garments"
LOOKS = "looks"
FABRICS = "fabrics"
JOBS = "jobs"
LOD_SETS = "lod_sets"
LOD_FILES = "lod_files"
MIRROR_DEVICES = "mirror_devices"

# The license is a part of the twin record with a version of its own, so its shape can change
# (roles, metering: #11) without a new twin version.
LICENSE_VERSION = 1

# Job kinds as the closure-based runner named them, before kinds were registered by name.
_OLD_JOB_KINDS = {"look_drape": "look.drape", "garment_ingest": "garment.ingest"}


def _twin_0_to_1(record: Record) -> Record:
    lic = dict(record.get("license") or {})
    lic.setdefault("schema_version", LICENSE_VERSION)
    record["license"] = lic
    record.setdefault("source", {})
    return record


def _garment_0_to_1(record: Record) -> Record:
    record.setdefault("images", [])
    record.setdefault("authoring_body", None)
    record.setdefault("warnings", [])
    return record


def _look_0_to_1(record: Record) -> Record:
    record.setdefault("warnings", [])
    record.setdefault("sizes", [])
    record.setdefault("layer_order", "category")
    return record


def _job_0_to_1(record: Record) -> Record:
    kind = str(record.get("kind", ""))
    record["kind"] = _OLD_JOB_KINDS.get(kind, kind)
    # A job of the closure runner cannot be run again: no payload, one attempt, no owner.
    record.setdefault("payload", None)
    record.setdefault("attempts", 1 if record.get("status") != "queued" else 0)
    record.setdefault("max_attempts", 1)
    record.setdefault("idempotent", False)
    record.setdefault("owner", None)
    record.setdefault("lease_until", None)
    return record


def _lod_file_0_to_1(record: Record) -> Record:
    record["withdrawn"] = bool(record.get("withdrawn", False))
    record["owners"] = sorted(set(record.get("owners") or ()))
    return record


def _unchanged(record: Record) -> Record:
    return record


UPGRADES: dict[str, list[Upgrade]] = {
    TWINS: [_twin_0_to_1],
    GARMENTS: [_garment_0_to_1],
    LOOKS: [_look_0_to_1],
    FABRICS: [_unchanged],
    JOBS: [_job_0_to_1],
    LOD_SETS: [_unchanged],
    LOD_FILES: [_lod_file_0_to_1],
    MIRROR_DEVICES: [_unchanged],
}
CURRENT: dict[str, int] = {kind: len(steps) for kind, steps in UPGRADES.items()}


def version_of(record: Record) -> int:
    value = record.get("schema_version", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def upgraded(kind: str, record: Record) -> Record:
    """`record` in today's shape (a copy when anything changed); kinds without a schema and
    records from newer code come back as they are."""
    steps = UPGRADES.get(kind)
    version = version_of(record)
    if steps is None or version >= len(steps):
        return record
    out = copy.deepcopy(record)
    for step in steps[version:]:
        out = step(out)
    out["schema_version"] = len(steps)
    return out


def stamped(kind: str, record: Record) -> Record:
    """`record`, marked in place as today's version of `kind` (what every repository writes,
    so the caller's copy says what was stored)."""
    record["schema_version"] = CURRENT[kind]
    return record


class _MigratableStore(Protocol):
    async def list_ids(self, kind: str) -> list[str]: ...

    async def get_record_revision(self, kind: str, record_id: str) -> tuple[Record, str] | None: ...

    async def replace_record(
        self, kind: str, record_id: str, record: Record, revision: str
    ) -> str: ...


async def migrate(store: _MigratableStore, attempts: int = 4) -> dict[str, int]:
    """Rewrite every record older than today's version in today's shape; returns how many of
    each kind were rewritten. A record changed while it is upgraded is read again."""
    counts: dict[str, int] = {}
    for kind in UPGRADES:
        for record_id in await store.list_ids(kind):
            for _ in range(attempts):
                got = await store.get_record_revision(kind, record_id)
                if got is None:
                    break
                record, revision = got
                if version_of(record) >= CURRENT[kind]:
                    break
                try:
                    await store.replace_record(kind, record_id, upgraded(kind, record), revision)
                except RecordChangedError:
                    continue
                counts[kind] = counts.get(kind, 0) + 1
                break
    if counts:
        log.info("migrated records", extra={"fields": {"records": counts}})
    return counts
