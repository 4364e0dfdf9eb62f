"""Twins as stored things: create, import, list, read, license changes, posed GLBs.

Each twin is a record (`twins/<id>`) plus two content-addressed blobs: the body's arrays (NPZ,
the working copy) and its bind-pose GLB. A create writes blobs first and the record last; if
anything fails, the blobs this call created are removed, so a refused or failed create leaves
the store as it was. Creates are create-only (a taken id is a 409, also when two creates race
for it) and license changes compare-and-set on the record's revision, so no write silently
replaces another.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict
from typing import Any

from spatialtwin.body.parametric import Measurements, create_twin_body, measured
from spatialtwin.body.pose import Pose
from spatialtwin.body.template import TemplateBody
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.gltf.body_arrays import body_from_npz, body_to_npz
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.gltf.twin_glb import twin_to_glb
from spatialtwin.rights.license import License, Rights, check_use, now_utc, provenance
from spatialtwin.store.base import RecordChangedError, RecordExistsError, Store

KIND = "twins"
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LICENSE_FIELDS = ("channels", "valid_from", "valid_until", "revoked", "terms", "fee_per_use_eur")
CAS_ATTEMPTS = 4


def check_twin_id(value: Any) -> str | None:
    """None, or an id a client may give a twin (what the store can name a record)."""
    if value is None:
        return None
    if not isinstance(value, str) or not SAFE_ID.match(value) or ".." in value:
        raise SpatialTwinError(
            "invalid_id",
            "a twin id is 1–128 letters, digits, '_', '.' or '-' (no '..')",
            {"field": "id"},
        )
    return value


def check_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpatialTwinError("invalid_request", "name must be a string", {"field": "name"})
    return value


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the API shows it, with links."""
    out = {k: v for k, v in record.items() if k != "blobs"}
    out["links"] = {
        "self": f"/api/v1/twins/{record['id']}",
        "body": f"/api/v1/twins/{record['id']}/body.glb",
    }
    return out


class TwinRepository:
    """Twins in a store. Twins from measurements are made from `template` (by default the
    shipped hm08 template, read on the first create, in the executor)."""

    def __init__(
        self, store: Store, executor: Executor | None = None, template: TemplateBody | None = None
    ) -> None:
        self.store = store
        self.executor = executor
        self.template = template
        self._body_cache: dict[str, TwinBody] = {}

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, fn, *args)

    async def create_from_measurements(self, payload: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise SpatialTwinError("invalid_request", "expected a JSON object")
        twin_id = check_twin_id(payload.get("id"))
        name = check_name(payload.get("name"))
        measurements = Measurements.from_json(payload.get("measurements"))
        rights = Rights.from_json(payload)
        if twin_id is not None:
            await self._refuse_taken(twin_id)  # before seconds of work; the create re-checks
        template = self.template
        if template is None:
            template = await self._run(shipped_template)
        body = await self._run(create_twin_body, measurements, template.body)
        source = {
            "kind": "measurements",
            "requested": measurements.to_json(),
            "template": template.name,
        }
        return await self._save(name, body, rights, source, twin_id=twin_id)

    async def create_from_body(
        self, name: str | None, body: TwinBody, rights: Rights, source: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._save(name, body, rights, source)

    async def _save(
        self,
        name: Any,
        body: TwinBody,
        rights: Rights,
        source: dict[str, Any],
        twin_id: Any = None,
    ) -> dict[str, Any]:
        twin_id = str(twin_id or f"twn_{uuid.uuid4().hex[:12]}")
        await self._refuse_taken(twin_id)
        got = await self._run(measured, body)
        record: dict[str, Any] = {
            "id": twin_id,
            "name": str(name or rights.owner.model)[:200],
            "created_at": now_utc().isoformat(),
            "measurements": got.to_json(),
            "source": source,
            "vertex_count": body.vertex_count,
            "triangle_count": len(body.faces),
            "rest_pose": "A-pose (upper arms 45° below horizontal)"
            if source.get("kind") == "measurements"
            else "as imported",
            "skeleton": body.skeleton.to_json(),
            **rights.to_json(),
            "disclosure": rights.disclosure(),
        }
        created: list[str] = []
        try:
            npz_key, new = await self.store.put_blob(await self._run(body_to_npz, body))
            if new:
                created.append(npz_key)
            glb = await self._run(lambda: twin_to_glb(body, provenance=provenance(record)))
            glb_key, new = await self.store.put_blob(glb)
            if new:
                created.append(glb_key)
            record["blobs"] = {"body_npz": npz_key, "bind_glb": glb_key}
            record["glb_bytes"] = len(glb)
            await self.store.create_record(KIND, twin_id, record)
        except BaseException as exc:
            for key in created:
                await self.store.delete_blob(key)
            if isinstance(exc, RecordExistsError):
                raise _twin_exists(twin_id) from exc
            raise
        self._body_cache[twin_id] = body
        return record

    async def _refuse_taken(self, twin_id: str) -> None:
        if await self.store.get_record(KIND, twin_id) is not None:
            raise _twin_exists(twin_id)

    async def list(self) -> list[dict[str, Any]]:
        return await self.store.list_records(KIND)

    async def get(self, twin_id: str) -> dict[str, Any]:
        record = await self.store.get_record(KIND, twin_id)
        if record is None:
            raise NotFoundError("twin", twin_id)
        return record

    async def body(self, record: dict[str, Any]) -> TwinBody:
        cached = self._body_cache.get(record["id"])
        if cached is not None:
            return cached
        data = await self.store.get_blob(record["blobs"]["body_npz"])
        if data is None:
            raise SpatialTwinError(
                "twin_body_missing",
                "the twin's body data is missing",
                {"id": record["id"]},
                status=500,
            )
        body = await self._run(body_from_npz, data)
        self._body_cache[record["id"]] = body
        return body

    async def body_glb(self, twin_id: str, channel: str, pose: Pose | None) -> bytes:
        """The twin as GLB for `channel`, refused outside its license."""
        record = await self.get(twin_id)
        check_use(record, channel)
        body = await self.body(record)
        return await self._run(lambda: twin_to_glb(body, pose=pose, provenance=provenance(record)))

    async def update_license(self, twin_id: str, changes: Any) -> dict[str, Any]:
        """Change channels/validity, or revoke (irreversible: a revoked twin stays revoked).

        Read, check, compare-and-set: a record changed by another writer between the read and
        the write is read again and the change re-checked against it (so a revocation that
        lands meanwhile is never undone); a refused change writes nothing.
        """
        for _ in range(CAS_ATTEMPTS):
            got = await self.store.get_record_revision(KIND, twin_id)
            if got is None:
                raise NotFoundError("twin", twin_id)
            record, revision = got
            record["license"] = changed_license(twin_id, record["license"], changes)
            try:
                await self.store.replace_record(KIND, twin_id, record, revision)
            except RecordChangedError:
                continue
            break
        else:
            raise RecordChangedError(KIND, twin_id)
        await self.store.publish(
            "twins",
            {
                "event": "license_changed",
                "twinId": twin_id,
                "revoked": record["license"]["revoked"],
            },
        )
        return record


def changed_license(twin_id: str, stored: dict[str, Any], changes: Any) -> dict[str, Any]:
    """The stored license with `changes` applied and checked; raises, changing nothing."""
    if not isinstance(changes, dict):
        raise SpatialTwinError("invalid_request", "expected a JSON object")
    unknown = sorted(set(changes) - set(LICENSE_FIELDS))
    if unknown:
        raise SpatialTwinError(
            "invalid_license",
            f"unknown license fields {unknown}",
            {"allowed": sorted(LICENSE_FIELDS)},
            status=422,
        )
    if "revoked" in changes and not isinstance(changes["revoked"], bool):
        raise SpatialTwinError(
            "invalid_license",
            "revoked must be true or false",
            {"field": "revoked", "expected": "true or false"},
        )
    if stored.get("revoked") and changes.get("revoked", True) is not True:
        raise SpatialTwinError(
            "license_revoked",
            "a revoked license cannot be reinstated; the owner must grant a new one",
            {"twinId": twin_id},
            status=409,
        )
    checked = License.from_json({**stored, **changes})
    if checked.revoked and not stored.get("revoked"):
        checked.revoked_at = now_utc().isoformat()
    return asdict(checked)


def _twin_exists(twin_id: str) -> SpatialTwinError:
    return SpatialTwinError(
        "twin_exists", f"a twin with id {twin_id!r} exists", {"id": twin_id}, status=409
    )
