"""Job records (`jobs/<id>`): their shape and lease rules.

A job record says what to run (`kind`, `payload`: JSON, ids and options), how it goes
(`status` queued -> running -> done | failed, `stage`, `progress` 0..1, `result`, `error`) and
who runs it: `owner` (host:pid:token of the process) holds a lease until `lease_until`, which
the owner's heartbeat renews. Only a stale lease (past `lease_until`, or an owner on this host
whose process is gone) counts as interrupted; an interrupted job is run again while it is
`idempotent` and has `attempts` left below `max_attempts`, else it fails `interrupted`.
A job submitted with a unique key (make twin X, build level set K) has an id made from the key
(`unique_job_id`), so one job at a time holds it; once that job ended, a new one may.

The store is used through the structural `RecordStore` protocol, so this layer depends on
the ground only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from spatialtwin.errors import SpatialTwinError
from spatialtwin.files import pid_running

JOBS = "jobs"
SCHEMA_VERSION = 1  # = store.schema.CURRENT["jobs"] (tests/test_schema_migration.py checks)
ACTIVE = ("queued", "running")
HOST = socket.gethostname()
MAX_PAYLOAD_BYTES = 64 * 1024  # ids and options: a full look request is ~10 kB


class RecordStore(Protocol):
    """What jobs need of a store (`store.base.Store` has it)."""

    async def create_record(self, kind: str, record_id: str, record: dict[str, Any]) -> str: ...

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None: ...

    async def get_record_revision(
        self, kind: str, record_id: str
    ) -> tuple[dict[str, Any], str] | None: ...

    async def replace_record(
        self, kind: str, record_id: str, record: dict[str, Any], revision: str
    ) -> str: ...

    async def list_records(self, kind: str) -> list[dict[str, Any]]: ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.isoformat()


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def process_owner() -> str:
    """This process as a job owner: host, pid and a token (a pid can be reused)."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_until(lease_s: float) -> str:
    return iso(now_utc() + timedelta(seconds=lease_s))


def lease_is_stale(record: Mapping[str, Any], at: datetime | None = None) -> bool:
    """True when nobody holds the job: no owner, a lease past its end, or an owner on this
    host whose process no longer runs (a killed process need not be waited out)."""
    owner = record.get("owner")
    until = parse_time(record.get("lease_until"))
    if not isinstance(owner, str) or until is None or until <= (at or now_utc()):
        return True
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    return host == HOST and pid != os.getpid() and not pid_running(pid)


def json_payload(payload: Any) -> dict[str, Any]:
    """`payload` as plain JSON (a copy): an object of JSON values, no NaN, at most
    `MAX_PAYLOAD_BYTES`. Closures, arrays and other Python objects are refused: any process
    must be able to read what a job is asked to do."""
    if not isinstance(payload, Mapping):
        raise SpatialTwinError(
            "invalid_job_payload", "a job payload is a JSON object", {"got": type(payload).__name__}
        )
    try:
        text = json.dumps(payload, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise SpatialTwinError(
            "invalid_job_payload",
            "a job payload holds only JSON values (ids and options, never arrays or functions)",
            {"reason": str(exc)[:200]},
        ) from exc
    if len(text) > MAX_PAYLOAD_BYTES:
        raise SpatialTwinError(
            "invalid_job_payload",
            f"a job payload is at most {MAX_PAYLOAD_BYTES} bytes of JSON",
            {"bytes": len(text)},
            status=413,
        )
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def new_job(
    kind: str,
    payload: dict[str, Any],
    *,
    idempotent: bool,
    max_attempts: int,
    unique_key: str | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    now = iso(now_utc())
    return {
        "id": job_id or f"job_{uuid.uuid4().hex[:12]}",
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "payload": payload,
        "unique_key": unique_key,
        "status": "queued",
        "stage": "queued",
        "progress": 0.0,
        "result": None,
        "error": None,
        "attempts": 0,
        "max_attempts": max_attempts,
        "idempotent": idempotent,
        "owner": None,
        "lease_until": None,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
    }


def unique_job_id(key: str) -> str:
    """The id of the job that holds `key`."""
    return f"job_{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def clamp_fraction(value: Any, floor: float) -> float:
    """A progress fraction kept in [floor, 1]: progress never goes back within an attempt."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return floor
    if not math.isfinite(f):
        return floor
    return round(max(floor, min(f, 1.0)), 3)


def error_json(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return body
