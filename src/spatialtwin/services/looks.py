"""Look services: a twin wearing garments in a pose, draped by a job, served as GLB.

A request is checked in full before any work starts (twin and garments exist, the twin's
license allows the channel, the pose parses), so a refused request leaves the store as it was;
the drape then runs as a `look.drape` job whose payload is the checked request as JSON (ids
and options) and the look's id, so any process can run it. The job checks the request again
when it starts (a twin revoked while the job waited is not draped). The GLB blob is written
first and the record last; if anything fails the blob this call created is removed. Every read
passes the access door again, so a look of a revoked twin is no longer served.

A request names each garment by id or as a size of a run, `{"sku": …, "size": "best" | label}`
(the best size is chosen on the twin by ease, `garment.sizes`, and the choice with its ease
table is kept in the record's `sizes`); `"layer_order": "category" | "as_given"` says which
garment is worn over which (`garment.layers`). A look whose drape missed a quality threshold
(`garment.quality`), or for which no size fits, is stored all the same, with `warnings`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spatialtwin.body.pose import Pose, PoseError
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.layers import check_layer_order
from spatialtwin.garment.look import MAX_GARMENTS, Look, LookGarment, LookOptions, drape_look
from spatialtwin.garment.placement import BodyLandmarks
from spatialtwin.garment.sizes import SizeChoice, choose_size
from spatialtwin.gltf.look_glb import look_to_glb
from spatialtwin.rights.license import now_utc, provenance
from spatialtwin.services.access import submitter
from spatialtwin.services.garments import look_garment
from spatialtwin.services.views import look_view
from spatialtwin.store.twin_repository import body_key

if TYPE_CHECKING:
    from spatialtwin.services.access import Access
    from spatialtwin.services.base import ServiceContext
    from spatialtwin.services.garments import GarmentService
    from spatialtwin.services.twins import TwinService

DRAPE = "look.drape"
REQUEST_FIELDS = ("twin", "garments", "pose", "channel", "layer_order")
Progress = Callable[[str, float], None]


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
    """A checked request: the records it names, the parsed pose, the layering rule, and the
    request itself as JSON (what a job is given)."""

    twin: dict[str, Any]
    items: list[LookItem]
    pose: Pose | None
    channel: str
    layer_order: str = "category"
    as_json: dict[str, Any] = field(default_factory=dict)


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


def _garment_list(raw: Any) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise SpatialTwinError(
            "invalid_garments",
            '\'garments\' must be a non-empty list of garment ids or {"sku", "size"} objects',
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


def drape_and_encode(
    body: TwinBody,
    garments: list[LookGarment],
    pose: Pose | None,
    options: LookOptions,
    layer_order: str,
    provenance_of: Callable[[Look], dict[str, Any]],
    progress: Progress = _noop,
    marks: BodyLandmarks | None = None,
) -> tuple[Look, bytes]:
    """Drape `garments` on `body` (in `pose`) and write the look GLB, whose provenance is
    `provenance_of(look)`; the one pipeline the look job and `spatialtwin drape` run."""
    look = drape_look(body, garments, pose, options, progress, marks, layer_order)
    progress("writing", 0.93)
    glb = look_to_glb(
        body,
        look.garments,
        pose=pose,
        provenance=provenance_of(look),
        garment_extras=[{"garmentId": g.key} for g in look.garments],
    )
    return look, glb


def draped_garments(look: Look) -> list[dict[str, Any]]:
    """What a look GLB's provenance says of each garment."""
    return [{**g.meta, "placement": g.placement, **g.stats()} for g in look.garments]


class LookService:
    def __init__(
        self,
        services: ServiceContext,
        access: Access,
        twins: TwinService,
        garments: GarmentService,
    ) -> None:
        self.services = services
        self.access = access
        self.twins = twins
        self.garments = garments
        self.records = services.look_records

    async def check_request(self, payload: Any) -> LookRequest:
        """Everything that can be refused before draping; raises `SpatialTwinError`."""
        if not isinstance(payload, dict):
            raise SpatialTwinError("invalid_request", "expected a JSON object", status=422)
        unknown = sorted(set(payload) - set(REQUEST_FIELDS))
        if unknown:
            raise SpatialTwinError(
                "invalid_request",
                f"unknown fields {unknown}",
                {"allowed": list(REQUEST_FIELDS)},
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
        twin = await self.access.twin_for_use(twin_id, channel)
        items = [await self._item(ref) for ref in refs]
        as_json = {
            "twin": twin_id,
            "garments": refs,
            "pose": None if pose is None else pose.to_json(),
            "channel": channel,
            "layer_order": layer_order,
        }
        return LookRequest(twin, items, pose, channel, layer_order, as_json)

    async def _item(self, ref: dict[str, str]) -> LookItem:
        """A stored garment, one size of a run, or a whole run for "best"; 404 / 422."""
        garments = self.garments
        if "id" in ref:
            record = self.access.require_visible("garment", await garments.get(ref["id"]))
            if "size" not in ref:
                return LookItem(record)
            sku = str(record.get("sku"))
        else:
            sku = ref["sku"]
        run = self.access.visible(await garments.size_run(sku))
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

    async def submit(self, payload: Any) -> dict[str, Any]:
        """Check a look request and queue its drape job; returns the job."""
        request = await self.check_request(payload)
        job_payload = {
            "look_id": f"look_{uuid.uuid4().hex[:12]}",
            "request": request.as_json,
            "caller": submitter(),  # the job drapes for the brand that asked
        }
        return await self.services.jobs.submit(DRAPE, job_payload)

    async def drape_job(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """The `look.drape` job: check the request again, drape, store; the look as the API
        shows it. Run again after an interruption, it finds its own look and ends."""
        look_id = str(payload["look_id"])
        existing = await self.records.find(look_id)
        if existing is not None:
            return look_view(existing)
        request = await self.check_request(payload["request"])
        return look_view(await self.create(request, progress, look_id))

    async def choose_size(
        self, body: TwinBody, run: list[dict[str, Any]], marks: BodyLandmarks | None = None
    ) -> SizeChoice:
        """The size of a run with enough ease on `body` (`garment.sizes.choose_size`)."""
        sizes = [look_garment(r, (await self.garments.meshes(r))[1]) for r in run]
        return await self.services.run(lambda: choose_size(body, sizes, marks))

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
            choice = await self.choose_size(body, item.run, marks)
            worn.append(next(r for r in item.run if r["id"] == choice.chosen_key))
            choices.append({"sku": item.sku, "size": item.size, **choice.to_json()})
        return worn, choices

    async def create(
        self, request: LookRequest, progress: Progress = _noop, look_id: str | None = None
    ) -> dict[str, Any]:
        """Drape the look, store its GLB and record; returns the record."""
        twin = request.twin
        body = await self.twins.body(twin)
        marks = await self.garments.landmarks(body, body_key(twin))
        progress("sizing", 0.02)
        garments, sizes = await self.choose_sizes(request, body, marks)
        wearing = [await self.garments.stored_look_garment(r) for r in garments]
        look_id = look_id or f"look_{uuid.uuid4().hex[:12]}"
        pose_json = request.pose.to_json() if request.pose is not None else None

        def provenance_of(look: Look) -> dict[str, Any]:
            return {
                **provenance(twin),
                "look": {"id": look_id, "pose": pose_json},
                "garments": draped_garments(look),
            }

        options = self.services.options.look
        look, glb = await self.services.run(
            lambda: drape_and_encode(
                body,
                wearing,
                request.pose,
                options,
                request.layer_order,
                provenance_of,
                progress,
                marks,
            )
        )
        warnings = [c["warning"] for c in sizes if c["warning"]] + look.warnings
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
            "quality_thresholds": options.quality.to_json(),
            "warnings": warnings,
            "brand": self.access.owner_brand(),  # who may see it (None: the house's)
        }
        store = self.services.store
        created: list[str] = []
        try:
            key, new = await store.put_blob(glb)
            if new:
                created.append(key)
            record["blobs"] = {"glb": key}
            record["glb_bytes"] = len(glb)
            await self.records.create(record)
        except BaseException:
            for key in created:
                await store.delete_blob(key)
            raise
        return record

    async def get_for_use(self, look_id: str, channel: str | None = None) -> dict[str, Any]:
        """The look record, refused when its twin may no longer be used in `channel`
        (default: the channel the look was made for)."""
        record = self.access.require_visible("look", await self.records.get(look_id))
        await self.access.twin_for_use(
            record["twin"], channel or record["channel"], record.get("brand")
        )
        return record

    async def glb(self, look_id: str, channel: str | None = None) -> bytes:
        record = await self.get_for_use(look_id, channel)
        data = await self.services.store.get_blob(record["blobs"]["glb"])
        if data is None:
            raise SpatialTwinError(
                "look_glb_missing", "the look's GLB is missing", {"id": look_id}, status=500
            )
        await self.access.meter_look("look", look_id, channel)  # durable before it is sent
        return data
