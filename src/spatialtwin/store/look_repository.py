"""Looks as stored things: a twin wearing garments in a pose, draped once, served as GLB.

A look is a record (`looks/<id>`) plus one content-addressed blob, its GLB. A request is
checked in full before any work starts (twin and garments exist, the twin's license allows the
channel, the pose parses), so a refused request leaves the store as it was; the drape then runs
as a job (`store/jobs.py`). The GLB blob is written first and the record last; if anything
fails the blob this call created is removed. Every read checks the twin's license again, so a
look of a revoked twin is no longer served.

A request names each garment by id or as a size of a run, `{"sku": …, "size": "best" | label}`
(the best size is chosen on the twin by ease, `garment.sizes`, and the choice with its ease
table is kept in the record's `sizes`); `"layer_order": "category" | "as_given"` says which
garment is worn over which (`garment.layers`). A look whose drape missed a quality threshold
(`garment.quality`), or for which no size fits, is stored all the same, with `warnings`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from spatialtwin.body.pose import Pose, PoseError
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.garment.appearance import Appearance
from spatialtwin.garment.fabrics import FabricSpec
from spatialtwin.garment.layers import check_layer_order
from spatialtwin.garment.look import (
    MAX_GARMENTS,
    LookGarment,
    LookOptions,
    drape_look,
)
from spatialtwin.garment.pieces import Piece
from spatialtwin.garment.placement import BodyLandmarks
from spatialtwin.garment.refit import GarmentRefit
from spatialtwin.garment.sizes import choose_size, size_run
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
class LookItem:
    """One garment of a request: a stored garment, or a size run to choose the best size of.

    `record` is the garment worn; for `size == "best"` it is None until the twin is measured,
    and `run` holds every size, smallest first.
    """

    record: dict[str, Any] | None
    run: list[dict[str, Any]] = field(default_factory=list)
    size: str | None = None

    @property
    def sku(self) -> str | None:
        source = self.record or (self.run[0] if self.run else None)
        return None if source is None else source.get("sku")


@dataclass
class LookRequest:
    """A checked request: the records it names, the parsed pose, the layering rule."""

    twin: dict[str, Any]
    items: list[LookItem]
    pose: Pose | None
    channel: str
    layer_order: str = "category"


def parse_pose(raw: Any) -> Pose | None:
    if raw is None:
        return None
    try:
        return Pose.from_json(raw)
    except PoseError as exc:
        raise SpatialTwinError("invalid_pose", str(exc), {"pose": raw}, status=422) from exc
    except (TypeError, ValueError) as exc:  # a part of the wrong JSON type (root an object)
        raise SpatialTwinError(
            "invalid_pose",
            "pose 'root' must be three numbers and each joint four numbers [x, y, z, w]",
        ) from exc


def look_garment(
    record: dict[str, Any],
    sim_mesh: Any,
    render_mesh: Any = None,
    appearance: Appearance | None = None,
    refit: GarmentRefit | None = None,
) -> LookGarment:
    """A stored garment as the drape step wants it: the simulation mesh to drape and, to show,
    the upload's render mesh and materials."""
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
        render=render_mesh,
        appearance=appearance,
        refit=refit,
    )


def _garment_list(raw: Any) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise SpatialTwinError(
            "invalid_garments",
            "'garments' must be a non-empty list of garment ids or {\"sku\", \"size\"} objects",
            {"garments": raw},
            status=422,
        )
    return raw


def parse_garment_ref(raw: Any) -> dict[str, str]:
    """One entry of a look request's `garments`: a garment id, `{"id": …}`, or a size of a
    run, `{"sku": …, "size": "best" | "<size label>"}` (`{"id": …, "size": …}` picks from the
    run of that garment's sku). Returns the checked fields; raises `SpatialTwinError` (422)."""
    if isinstance(raw, str):
        raw = {"id": raw}
    fields = ("id", "sku", "size")
    ok = (
        isinstance(raw, dict)
        and set(raw) <= set(fields)
        and (("id" in raw) != ("sku" in raw))
        and all(isinstance(raw[k], str) and 0 < len(raw[k]) <= 64 for k in raw)
    )
    if not ok:
        raise SpatialTwinError(
            "invalid_garments",
            "each garment is an id or an object with 'id' or 'sku' and optionally 'size' "
            "('best' or a size label), strings of 1–64 characters",
            {"garment": raw},
            status=422,
        )
    return {k: str(v) for k, v in raw.items()}


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
        allowed = ["twin", "garments", "pose", "channel", "layer_order"]
        unknown = sorted(set(payload) - set(allowed))
        if unknown:
            raise SpatialTwinError(
                "invalid_request",
                f"unknown fields {unknown}",
                {"allowed": allowed},
                status=422,
            )
        twin_id = payload.get("twin")
        if not isinstance(twin_id, str) or not twin_id:
            raise SpatialTwinError("missing_twin", "a look needs 'twin': a twin id", status=422)
        refs = [parse_garment_ref(g) for g in _garment_list(payload.get("garments"))]
        keys = [ref.get("id") or f"sku:{ref['sku']}" for ref in refs]
        if len(refs) > MAX_GARMENTS or len(set(keys)) != len(keys):
            raise SpatialTwinError(
                "invalid_garments",
                f"a look wears 1–{MAX_GARMENTS} different garments",
                {"garments": payload.get("garments")},
                status=422,
            )
        layer_order = check_layer_order(payload.get("layer_order", "category"))
        channel = payload.get("channel", "ecommerce")
        if not isinstance(channel, str):
            raise SpatialTwinError("invalid_request", "'channel' must be a string", status=422)
        pose = parse_pose(payload.get("pose"))
        twin = await self.twins.get(twin_id)
        check_use(twin, channel)
        items = [await self._item(ref) for ref in refs]
        return LookRequest(twin, items, pose, channel, layer_order)

    async def _item(self, ref: dict[str, str]) -> LookItem:
        """A stored garment, one size of a run, or a whole run for "best"; 404 / 422."""
        if "id" in ref:
            record = await self.garments.get(ref["id"])
            if "size" not in ref:
                return LookItem(record)
            sku = str(record.get("sku"))
        else:
            sku = ref["sku"]
        run = size_run(await self.garments.list(), sku)
        if not run:
            raise SpatialTwinError(
                "size_run_not_found", f"no garment has sku {sku!r}", {"sku": sku}, status=404
            )
        if ref.get("size", "best") == "best":
            return LookItem(None, run, "best")
        chosen = [r for r in run if r.get("size_label") == ref["size"]]
        if not chosen:
            raise SpatialTwinError(
                "size_not_in_run",
                f"sku {sku!r} has no size {ref['size']!r}",
                {"sku": sku, "size": ref["size"], "sizes": [r.get("size_label") for r in run]},
                status=422,
            )
        return LookItem(chosen[0], run, ref["size"])

    async def choose_sizes(
        self, request: LookRequest, body: TwinBody, marks: BodyLandmarks
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The garment record worn for each item (the best size chosen on `body` where asked)
        and, per size run, the choice with its ease table (`garment.sizes.SizeChoice`)."""
        worn, choices = [], []
        for item in request.items:
            if item.record is not None:
                worn.append(item.record)
                continue
            sizes = []
            for record in item.run:
                _, sim = await self.garments.meshes(record)
                sizes.append(look_garment(record, sim))
            choice = await self._run(lambda s=sizes: choose_size(body, s, marks))
            worn.append(next(r for r in item.run if r["id"] == choice.chosen_key))
            choices.append({"sku": item.sku, "size": item.size, **choice.to_json()})
        return worn, choices

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
        marks = await self._landmarks_of(twin["id"], body)
        progress("sizing", 0.02)
        garments, sizes = await self.choose_sizes(request, body, marks)
        wearing = []
        for record in garments:
            render, sim = await self.garments.meshes(record)
            appearance = await self.garments.appearance(record)
            refit = await self.garments.refit_source(record)
            wearing.append(look_garment(record, sim, render, appearance, refit))
        look = await self._run(
            lambda: drape_look(
                body, wearing, request.pose, self.options, progress, marks, request.layer_order
            )
        )
        warnings = [c["warning"] for c in sizes if c["warning"]] + look.warnings
        progress("writing", 0.93)
        look_id = f"look_{uuid.uuid4().hex[:12]}"
        pose_json = request.pose.to_json() if request.pose is not None else None
        record: dict[str, Any] = {
            "id": look_id,
            "twin": twin["id"],
            "garments": [g["id"] for g in garments],
            "layer_order": request.layer_order,
            "draping_order": [g.key for g in look.garments],
            "sizes": sizes,
            "pose": pose_json,
            "channel": request.channel,
            "created_at": now_utc().isoformat(),
            "stats": look.stats(),
            "quality_thresholds": self.options.quality.to_json(),
            "warnings": warnings,
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
            await self.store.create_record(KIND, look_id, record)
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
