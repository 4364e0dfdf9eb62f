"""Looks as stored things: a twin wearing garments in a pose, draped once, served as GLB.

A look is a record (`looks/<id>`) plus one content-addressed blob, its GLB. A request is
checked in full before any work starts (twin and garments exist, the twin's license allows the
channel, the pose parses), so a refused request leaves the store as it was; the drape then runs
as a job (`store/jobs.py`). The GLB blob is written first and the record last; if anything
fails the blob this call created is removed. Every read checks the twin's license again, so a
look of a revoked twin is no longer served.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from spatialtwin.body.pose import Pose, PoseError
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.garment.fabrics import FabricSpec
from spatialtwin.garment.look import (
    MAX_GARMENTS,
    LookGarment,
    LookOptions,
    drape_look,
)
from spatialtwin.garment.pieces import Piece
from spatialtwin.garment.placement import BodyLandmarks
from spatialtwin.gltf.look_glb import look_to_glb
from spatialtwin.rights.license import check_use, now_utc, provenance
from spatialtwin.store.base import Store
from spatialtwin.store.garment_repository import GarmentRepository
from spatialtwin.store.twin_repository import TwinRepository

KIND = "looks"
Progress = Callable[[str, float], None]


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != "blobs"}
    out["links"] = {
        "self": f"/api/v1/looks/{record['id']}",
        "glb": f"/api/v1/looks/{record['id']}/look.glb",
    }
    return out


def _noop(stage: str, fraction: float) -> None:
    return None


@dataclass
class LookRequest:
    """A checked request: the records it names and the parsed pose."""

    twin: dict[str, Any]
    garments: list[dict[str, Any]]
    pose: Pose | None
    channel: str


def parse_pose(raw: Any) -> Pose | None:
    if raw is None:
        return None
    try:
        return Pose.from_json(raw)
    except PoseError as exc:
        raise SpatialTwinError("invalid_pose", str(exc), {"pose": raw}, status=422) from exc


def look_garment(record: dict[str, Any], sim_mesh: Any) -> LookGarment:
    """A stored garment as the drape step wants it."""
    materials = record.get("materials") or []
    colour = tuple(materials[0]["base_color"]) if materials else None
    fabric = record["fabric"]
    return LookGarment(
        key=record["id"],
        mesh=sim_mesh,
        pieces=[Piece.from_json(p) for p in record["pieces"]],
        fabric=FabricSpec.from_json(fabric).to_solver(),
        meta={
            "id": record["id"],
            "sku": record.get("sku"),
            "category": record.get("category"),
            "fabric": fabric.get("id"),
            "size_label": record.get("size_label"),
        },
        **({"base_color": colour} if colour and len(colour) == 4 else {}),  # type: ignore[arg-type]
    )


class LookRepository:
    def __init__(
        self,
        store: Store,
        twins: TwinRepository,
        garments: GarmentRepository,
        executor: Executor | None = None,
        options: LookOptions | None = None,
    ) -> None:
        self.store = store
        self.twins = twins
        self.garments = garments
        self.executor = executor
        self.options = options or LookOptions()
        self._landmarks: dict[str, BodyLandmarks] = {}

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def check_request(self, payload: Any) -> LookRequest:
        """Everything that can be refused before draping; raises `SpatialTwinError`."""
        if not isinstance(payload, dict):
            raise SpatialTwinError("invalid_request", "expected a JSON object", status=422)
        unknown = sorted(set(payload) - {"twin", "garments", "pose", "channel"})
        if unknown:
            raise SpatialTwinError(
                "invalid_request",
                f"unknown fields {unknown}",
                {"allowed": ["twin", "garments", "pose", "channel"]},
                status=422,
            )
        twin_id = payload.get("twin")
        if not isinstance(twin_id, str) or not twin_id:
            raise SpatialTwinError("missing_twin", "a look needs 'twin': a twin id", status=422)
        ids = payload.get("garments")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise SpatialTwinError(
                "invalid_garments",
                "'garments' must be a non-empty list of garment ids, inner layer first",
                {"garments": ids},
                status=422,
            )
        if len(ids) > MAX_GARMENTS or len(set(ids)) != len(ids):
            raise SpatialTwinError(
                "invalid_garments",
                f"a look wears 1–{MAX_GARMENTS} different garments",
                {"garments": ids},
                status=422,
            )
        channel = payload.get("channel", "ecommerce")
        if not isinstance(channel, str):
            raise SpatialTwinError("invalid_request", "'channel' must be a string", status=422)
        pose = parse_pose(payload.get("pose"))
        twin = await self.twins.get(twin_id)
        check_use(twin, channel)
        garments = [await self.garments.get(i) for i in ids]
        return LookRequest(twin, garments, pose, channel)

    async def _landmarks_of(self, twin_id: str, body: TwinBody) -> BodyLandmarks:
        marks = self._landmarks.get(twin_id)
        if marks is None:
            marks = await self._run(BodyLandmarks.of, body)
            self._landmarks[twin_id] = marks
        return marks

    async def create(self, request: LookRequest, progress: Progress = _noop) -> dict[str, Any]:
        """Drape the look, store its GLB and record; returns the record."""
        twin = request.twin
        body = await self.twins.body(twin)
        wearing = []
        for record in request.garments:
            _, sim = await self.garments.meshes(record)
            wearing.append(look_garment(record, sim))
        marks = await self._landmarks_of(twin["id"], body)
        look = await self._run(
            lambda: drape_look(body, wearing, request.pose, self.options, progress, marks)
        )
        progress("writing", 0.93)
        look_id = f"look_{uuid.uuid4().hex[:12]}"
        pose_json = request.pose.to_json() if request.pose is not None else None
        record: dict[str, Any] = {
            "id": look_id,
            "twin": twin["id"],
            "garments": [g["id"] for g in request.garments],
            "pose": pose_json,
            "channel": request.channel,
            "created_at": now_utc().isoformat(),
            "stats": look.stats(),
        }
        prov = {
            **provenance(twin),
            "look": {"id": look_id, "pose": pose_json},
            "garments": [{**g.meta, "placement": g.placement, **g.stats()} for g in look.garments],
        }
        glb = await self._run(
            lambda: look_to_glb(
                body,
                look.garments,
                pose=request.pose,
                provenance=prov,
                garment_extras=[{"garmentId": g.key} for g in look.garments],
            )
        )
        created: list[str] = []
        try:
            key, new = await self.store.put_blob(glb)
            if new:
                created.append(key)
            record["blobs"] = {"glb": key}
            record["glb_bytes"] = len(glb)
            await self.store.put_record(KIND, look_id, record)
        except BaseException:
            for key in created:
                await self.store.delete_blob(key)
            raise
        return record

    async def get(self, look_id: str, channel: str | None = None) -> dict[str, Any]:
        """The look record, refused when its twin may no longer be used in `channel`."""
        record = await self.store.get_record(KIND, look_id)
        if record is None:
            raise NotFoundError("look", look_id)
        check_use(await self.twins.get(record["twin"]), channel or record["channel"])
        return record

    async def glb(self, look_id: str, channel: str | None = None) -> bytes:
        record = await self.get(look_id, channel)
        data = await self.store.get_blob(record["blobs"]["glb"])
        if data is None:
            raise SpatialTwinError(
                "look_glb_missing", "the look's GLB is missing", {"id": look_id}, status=500
            )
        return data
