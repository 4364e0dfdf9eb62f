"""Garments and fabrics as stored things: ingest, list, read, place on a twin, preview GLB.

A garment is a record (`garments/<id>`) plus content-addressed blobs: the uploaded file as
sent, the prepared meshes (NPZ: render mesh and simulation mesh, metres) and one blob per
texture image, its PNG/JPEG bytes as uploaded (`blobs.images`, in the order the record's
`images` and its materials' texture references use; the sizes of a size run share them).
Blobs are written first and the record last; if anything fails the blobs this call created are
removed, so a refused or failed upload leaves the store as it was. Custom fabrics are records
(`fabrics/<id>`); presets live in code.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.garment.appearance import Appearance, TextureImage
from spatialtwin.garment.fabrics import PRESETS, FabricSpec, preset
from spatialtwin.garment.mesh import GarmentMesh
from spatialtwin.garment.pieces import Piece
from spatialtwin.garment.pipeline import (
    IngestOptions,
    Progress,
    binding_from_npz,
    meshes_from_npz,
    prepare_garment,
    prepared_to_npz,
)
from spatialtwin.garment.placement import BodyLandmarks, PlacedGarment, place_garment
from spatialtwin.garment.refit import GarmentRefit, correspond_authoring, refit_garment
from spatialtwin.garment.render_mesh import RenderBinding
from spatialtwin.garment.units import CATEGORIES, UNITS
from spatialtwin.rights.license import now_utc
from spatialtwin.services.authoring import (
    Attachment,
    estimation_template,
    resolve_authoring,
    stored_authoring,
)
from spatialtwin.store.base import RecordExistsError, Store

KIND = "garments"
FABRIC_KIND = "fabrics"
_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/ ]{0,63}$")


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != "blobs"}
    out["links"] = {
        "self": f"/api/v1/garments/{record['id']}",
        "preview": f"/api/v1/garments/{record['id']}/preview.glb",
    }
    return out


def _noop(stage: str, fraction: float) -> None:
    return None


def _fabric_exists(fabric_id: str) -> SpatialTwinError:
    return SpatialTwinError(
        "fabric_exists", f"a fabric with id {fabric_id!r} exists", {"id": fabric_id}, status=409
    )


def parse_metadata(meta: Any) -> dict[str, Any]:
    """Check the merchandiser's metadata; returns the cleaned fields."""
    if not isinstance(meta, dict):
        raise SpatialTwinError("invalid_metadata", "metadata must be a JSON object", status=422)
    missing = [k for k in ("sku", "category", "fabric") if meta.get(k) in (None, "")]
    if missing:
        raise SpatialTwinError(
            "missing_metadata",
            f"metadata is missing {', '.join(missing)}",
            {"missing": missing},
            status=422,
        )
    sku = str(meta["sku"])
    if not _SKU.match(sku):
        raise SpatialTwinError(
            "invalid_metadata",
            "sku must be 1–64 letters, digits or _ . - / space",
            {"sku": sku},
            status=422,
        )
    category = str(meta["category"])
    if category not in CATEGORIES:
        raise SpatialTwinError(
            "invalid_category",
            f"category must be one of {', '.join(CATEGORIES)}",
            {"category": category, "allowed": list(CATEGORIES)},
            status=422,
        )
    units = str(meta.get("units") or "auto")
    if units not in UNITS:
        raise SpatialTwinError(
            "invalid_units",
            f"units must be one of {', '.join(UNITS)}",
            {"units": units},
            status=422,
        )
    estimate = meta.get("estimate_body", False)
    if not isinstance(estimate, bool):
        raise SpatialTwinError(
            "invalid_metadata",
            "estimate_body must be true or false",
            {"estimate_body": estimate},
            status=422,
        )
    return {
        "estimate_body": estimate,
        "sku": sku,
        "name": str(meta.get("name") or sku)[:200],
        "category": category,
        "size_label": str(meta.get("size_label") or "")[:32],
        "fabric": meta["fabric"],
        "units": units,
    }


class GarmentRepository:
    def __init__(
        self,
        store: Store,
        executor: Executor | None = None,
        options: IngestOptions | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.options = options or IngestOptions()
        self._mesh_cache: dict[str, tuple[GarmentMesh, GarmentMesh]] = {}
        self._landmarks: dict[int, BodyLandmarks] = {}

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # --- fabrics -------------------------------------------------------------------------------

    async def list_fabrics(self) -> list[dict[str, Any]]:
        custom = await self.store.list_records(FABRIC_KIND)
        return [p.to_json() for p in PRESETS.values()] + custom

    async def create_fabric(self, payload: Any) -> dict[str, Any]:
        spec = FabricSpec.from_json(payload)
        if spec.id in PRESETS or await self.store.get_record(FABRIC_KIND, spec.id) is not None:
            raise _fabric_exists(spec.id)
        record = spec.to_json()
        record["created_at"] = now_utc().isoformat()
        try:
            await self.store.create_record(FABRIC_KIND, spec.id, record)
        except RecordExistsError as exc:  # another create of this id won the race
            raise _fabric_exists(spec.id) from exc
        return record

    async def resolve_fabric(self, ref: Any) -> FabricSpec:
        """A preset id, a stored custom fabric's id, or an inline custom fabric object."""
        if isinstance(ref, dict):
            return FabricSpec.from_json(ref)
        fabric_id = str(ref)
        if fabric_id in PRESETS:
            return preset(fabric_id)
        stored = await self.store.get_record(FABRIC_KIND, fabric_id) if fabric_id else None
        if stored is not None:
            return FabricSpec.from_json(stored)
        return preset(fabric_id)  # raises unknown_fabric

    # --- garments ------------------------------------------------------------------------------

    async def ingest(
        self,
        data: bytes,
        filename: str,
        metadata: Any,
        progress: Progress = _noop,
        garment_id: str | None = None,
        attachment: Attachment | None = None,
    ) -> dict[str, Any]:
        """Validate, prepare and store one upload; returns the stored record.

        `garment_id` fixes the id (the sample garments seeded from `assets/` keep theirs);
        uploads get a fresh one.
        """
        meta = parse_metadata(metadata)
        fabric = await self.resolve_fabric(meta["fabric"])
        authoring, authoring_info, avatar_npz = await self._run(
            resolve_authoring, data, filename, attachment
        )
        prepared = await self._run(
            lambda: prepare_garment(
                data,
                filename,
                meta["category"],
                meta["units"],
                self.options,
                progress,
                authoring,
                estimation_template() if authoring is None and meta["estimate_body"] else None,
            )
        )
        progress("storing", 0.9)
        garment_id = garment_id or f"gar_{uuid.uuid4().hex[:12]}"
        record: dict[str, Any] = {
            "id": garment_id,
            "sku": meta["sku"],
            "name": meta["name"],
            "size_label": meta["size_label"],
            "fabric": fabric.to_json(),
            "filename": filename[:200],
            "bytes": len(data),
            "created_at": now_utc().isoformat(),
            **prepared.summary(),
            "authoring_body": (
                {**authoring_info, **prepared.summary()["authoring_body"]}
                if prepared.authoring
                else None
            ),
            "images": [image.describe() for image in prepared.images],
        }
        created: list[str] = []
        try:
            source_key, new = await self.store.put_blob(data)
            if new:
                created.append(source_key)
            npz = await self._run(prepared_to_npz, prepared)
            mesh_key, new = await self.store.put_blob(npz)
            if new:
                created.append(mesh_key)
            image_keys = []
            for image in prepared.images:
                key, new = await self.store.put_blob(image.data)
                if new:
                    created.append(key)
                image_keys.append(key)
            record["blobs"] = {"source": source_key, "meshes_npz": mesh_key, "images": image_keys}
            if avatar_npz is not None:
                avatar_key, new = await self.store.put_blob(avatar_npz)
                if new:
                    created.append(avatar_key)
                record["blobs"]["authoring_npz"] = avatar_key
            await self.store.create_record(KIND, garment_id, record)
        except BaseException as exc:
            for key in created:
                await self.store.delete_blob(key)
            if isinstance(exc, RecordExistsError):
                raise SpatialTwinError(
                    "garment_exists",
                    f"a garment with id {garment_id!r} exists",
                    {"id": garment_id},
                    status=409,
                ) from exc
            raise
        self._mesh_cache[garment_id] = (prepared.render, prepared.simulation)
        return record

    async def list(self) -> list[dict[str, Any]]:
        return await self.store.list_records(KIND)

    async def get(self, garment_id: str) -> dict[str, Any]:
        record = await self.store.get_record(KIND, garment_id)
        if record is None:
            raise NotFoundError("garment", garment_id)
        return record

    async def meshes(self, record: dict[str, Any]) -> tuple[GarmentMesh, GarmentMesh]:
        """(render mesh, simulation mesh) of a stored garment, metres."""
        cached = self._mesh_cache.get(record["id"])
        if cached is not None:
            return cached
        data = await self.store.get_blob(record["blobs"]["meshes_npz"])
        if data is None:
            raise SpatialTwinError(
                "garment_mesh_missing",
                "the garment's mesh data is missing",
                {"id": record["id"]},
                status=500,
            )
        meshes = await self._run(meshes_from_npz, data)
        self._mesh_cache[record["id"]] = meshes
        return meshes

    async def appearance(self, record: dict[str, Any]) -> Appearance:
        """The garment's materials and texture images, as uploaded.

        Records stored before textures were kept have no `images`: they read as their
        materials' colours.
        """
        keys = (record.get("blobs") or {}).get("images") or []
        described = record.get("images") or []
        images = []
        for key, meta in zip(keys, described, strict=False):
            data = await self.store.get_blob(key)
            if data is None:
                raise SpatialTwinError(
                    "garment_image_missing",
                    "a texture image of the garment is missing",
                    {"id": record["id"], "blob": key},
                    status=500,
                )
            images.append(
                TextureImage(str(meta["mime"]), data, int(meta["width_px"]), int(meta["height_px"]))
            )
        return Appearance.from_record(record.get("materials") or [], images)

    async def refit_source(self, record: dict[str, Any]) -> GarmentRefit | None:
        """What a look needs to refit this garment onto a twin, if it has an authoring body."""
        if not record.get("authoring_body"):
            return None
        render, _ = await self.meshes(record)
        data = await self.store.get_blob(record["blobs"]["meshes_npz"])
        binding = await self._run(binding_from_npz, data) if data is not None else None
        avatar_key = record["blobs"].get("authoring_npz")
        avatar = await self.store.get_blob(avatar_key) if avatar_key else None
        authoring = await self._run(stored_authoring, record, avatar)
        if binding is None or authoring is None:
            return None
        return GarmentRefit(render, binding, authoring)

    async def render_binding(self, record: dict[str, Any]) -> RenderBinding:
        """The garment's render mesh and materials bound to its simulation mesh (as prepared),
        ready to ride on any placed or draped state of the simulation mesh."""
        render, sim = await self.meshes(record)
        appearance = await self.appearance(record)
        return await self._run(RenderBinding.of, render, sim, appearance)

    async def place_on(self, record: dict[str, Any], body: TwinBody) -> PlacedGarment:
        """The garment's simulation mesh placed on `body`: what the drape step starts from
        (refitted through its authoring body when it has one, else placed by translation)."""
        _, sim = await self.meshes(record)
        pieces = [Piece.from_json(p) for p in record["pieces"]]
        fabric = FabricSpec.from_json(record["fabric"]).to_solver()
        refit = await self.refit_source(record)
        if refit is not None:
            return await self._run(
                lambda: refit_garment(
                    refit.render,
                    sim,
                    pieces,
                    refit.binding,
                    correspond_authoring(refit.authoring, body),
                    body,
                    fabric,
                )
            )
        marks = self._landmarks.get(id(body))
        if marks is None:
            marks = await self._run(BodyLandmarks.of, body)
            self._landmarks[id(body)] = marks
        return await self._run(lambda: place_garment(sim, pieces, body, fabric, marks))
