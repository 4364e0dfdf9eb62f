"""Garment services: ingest, fabrics, size runs, placement on a twin, previews.

An upload is validated, prepared (units, up axis, weld, remesh, authoring body) and stored:
the uploaded file as sent, the prepared meshes (NPZ), one blob per texture image, and the
record last; if anything fails the blobs this call created are removed, so a refused or
failed upload leaves the store as it was. Small uploads are ingested within their request;
larger ones are staged as blobs and ingested by a `garment.ingest` job (whose payload names
the blobs, so any process can run it). A garment's meshes, binding and authoring body are read
once and kept in the services' cache under their blob's hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.garment.appearance import Appearance, TextureImage
from spatialtwin.garment.fabrics import PRESETS, FabricSpec, preset
from spatialtwin.garment.look import LookGarment
from spatialtwin.garment.mesh import GarmentMesh
from spatialtwin.garment.pieces import Piece
from spatialtwin.garment.placement import BodyLandmarks, PlacedGarment, place_garment
from spatialtwin.garment.refit import GarmentRefit, correspond_authoring, refit_garment
from spatialtwin.garment.render_mesh import RenderBinding
from spatialtwin.garment.sizes import size_run
from spatialtwin.garment.units import CATEGORIES, UNITS
from spatialtwin.gltf.garment_io import garment_on_twin_glb
from spatialtwin.gltf.garment_npz import binding_from_npz, meshes_from_npz, prepared_to_npz
from spatialtwin.jobs.records import parse_time
from spatialtwin.rights.license import now_utc, provenance
from spatialtwin.services.access import submitter
from spatialtwin.services.authoring import (
    Attachment,
    estimation_template,
    resolve_authoring,
    stored_authoring,
)
from spatialtwin.services.blobs import release_blobs
from spatialtwin.services.ingest import prepare_garment
from spatialtwin.services.views import garment_view
from spatialtwin.store.garment_repository import fabric_exists, garment_exists
from spatialtwin.store.twin_repository import body_key

if TYPE_CHECKING:
    from spatialtwin.services.access import Access
    from spatialtwin.services.base import ServiceContext
    from spatialtwin.services.twins import TwinService

INGEST = "garment.ingest"
_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/ ]{0,63}$")
Progress = Callable[[str, float], None]


def _noop(stage: str, fraction: float) -> None:
    return None


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


def prepared_look_garment(
    data: bytes,
    filename: str,
    category: str,
    units: str,
    fabric: FabricSpec,
    attachment: Attachment | None,
    estimate_body: bool,
    meta: dict[str, Any],
) -> LookGarment:
    """A garment file prepared as an upload would be, ready to drape (no store)."""
    authoring, _, _ = resolve_authoring(data, filename, attachment)
    prepared = prepare_garment(
        data,
        filename,
        category,
        units,
        authoring=authoring,
        estimate_from=estimation_template() if authoring is None and estimate_body else None,
    )
    authoring = authoring or (
        stored_authoring({"authoring_body": prepared.summary()["authoring_body"]}, None)
        if prepared.authoring
        else None
    )
    colour = prepared.materials[0]["base_color"] if prepared.materials else None
    refit = (
        GarmentRefit(prepared.render, prepared.binding, authoring)
        if authoring is not None and prepared.binding is not None
        else None
    )
    return LookGarment(
        key=Path(filename).stem,
        mesh=prepared.simulation,
        pieces=prepared.pieces,
        fabric=fabric.to_solver(),
        meta={**meta, "category": category, "fabric": fabric.id, "units": prepared.units},
        **({"base_color": tuple(colour)} if colour else {}),
        render=prepared.render,
        appearance=Appearance.from_record(prepared.materials, prepared.images),
        refit=refit,
    )


class GarmentService:
    def __init__(self, services: ServiceContext, access: Access, twins: TwinService) -> None:
        self.services = services
        self.access = access
        self.twins = twins
        self.records = services.garment_records

    # --- fabrics -------------------------------------------------------------------------------

    async def list_fabrics(self) -> list[dict[str, Any]]:
        custom = await self.records.list_fabrics()
        return [p.to_json() for p in PRESETS.values()] + custom

    async def create_fabric(self, payload: Any) -> dict[str, Any]:
        spec = FabricSpec.from_json(payload)
        if spec.id in PRESETS or await self.records.find_fabric(spec.id) is not None:
            raise fabric_exists(spec.id)
        record = spec.to_json()
        record["created_at"] = now_utc().isoformat()
        await self.records.create_fabric(record)
        return record

    async def resolve_fabric(self, ref: Any) -> FabricSpec:
        """A preset id, a stored custom fabric's id, or an inline custom fabric object."""
        if isinstance(ref, dict):
            return FabricSpec.from_json(ref)
        fabric_id = str(ref)
        if fabric_id in PRESETS:
            return preset(fabric_id)
        stored = await self.records.find_fabric(fabric_id) if fabric_id else None
        if stored is not None:
            return FabricSpec.from_json(stored)
        return preset(fabric_id)  # raises unknown_fabric

    # --- ingest --------------------------------------------------------------------------------

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
        run = self.services.run
        authoring, authoring_info, avatar_npz = await run(
            resolve_authoring, data, filename, attachment
        )
        options = self.services.options.ingest
        prepared = await run(
            lambda: prepare_garment(
                data,
                filename,
                meta["category"],
                meta["units"],
                options,
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
            "brand": self.access.owner_brand(),  # who may see it (None: the house's)
        }
        store = self.services.store
        created: list[str] = []
        try:
            source_key, new = await store.put_blob(data)
            if new:
                created.append(source_key)
            npz = await run(prepared_to_npz, prepared)
            mesh_key, new = await store.put_blob(npz)
            if new:
                created.append(mesh_key)
            image_keys = []
            for image in prepared.images:
                key, new = await store.put_blob(image.data)
                if new:
                    created.append(key)
                image_keys.append(key)
            record["blobs"] = {"source": source_key, "meshes_npz": mesh_key, "images": image_keys}
            if avatar_npz is not None:
                avatar_key, new = await store.put_blob(avatar_npz)
                if new:
                    created.append(avatar_key)
                record["blobs"]["authoring_npz"] = avatar_key
            await self.records.create(record)
        except BaseException:
            for key in created:
                await store.delete_blob(key)
            raise
        self.services.cache.put(("meshes", mesh_key), (prepared.render, prepared.simulation))
        return record

    async def upload(
        self,
        path: Path,
        filename: str,
        size_bytes: int,
        metadata: Any,
        attachment: tuple[str, Path] | None = None,
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """An upload in transit (a local file, and maybe an authoring-body part): ingested now
        when small (record, None), else staged as blobs and queued as a `garment.ingest` job
        (None, job). The metadata is checked before either."""
        parse_metadata(metadata)
        if size_bytes <= self.services.options.garment_inline_max_bytes:
            extra = None
            if attachment is not None:
                extra = Attachment(attachment[0], await _read(attachment[1]))
            record = await self.ingest(await _read(path), filename, metadata, attachment=extra)
            return record, None
        return None, await self.submit_ingest(path, filename, metadata, attachment)

    async def submit_ingest(
        self,
        path: Path,
        filename: str,
        metadata: Any,
        attachment: tuple[str, Path] | None = None,
        garment_id: str | None = None,
    ) -> dict[str, Any]:
        """Stage the file (and attachment) as blobs, without holding them in memory, and queue
        the job that ingests them; returns the job."""
        store = self.services.store
        staged: list[str] = []
        source, new = await store.put_blob_file(path)
        staged += [source] if new else []
        extra = None
        if attachment is not None:
            key, new = await store.put_blob_file(attachment[1])
            staged += [key] if new else []
            extra = {"filename": attachment[0], "blob": key}
        payload = {
            "garment_id": garment_id or f"gar_{uuid.uuid4().hex[:12]}",
            "filename": filename,
            "source": source,
            "metadata": metadata,
            "attachment": extra,
            "staged": staged,
            "caller": submitter(),
        }
        try:
            return await self.services.jobs.submit(INGEST, payload)
        except BaseException:
            for key in staged:
                await store.delete_blob(key)
            raise

    async def ingest_job(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """The `garment.ingest` job. Run again after an interruption, it finds its own garment
        and ends. Once the garment is stored, the upload's blobs it does not keep (an avatar
        part is stored as body arrays) are released; a job that fails has its upload released
        by `release_upload` (the kind's `on_failure`); an interrupted job that will run again
        keeps it for its next attempt."""
        started_s = time.time()
        garment_id = str(payload["garment_id"])
        store = self.services.store
        record = await self.records.find(garment_id)
        if record is not None and record.get("blobs", {}).get("source") != payload["source"]:
            raise garment_exists(garment_id)
        if record is None:
            data = await _blob(store, payload["source"])
            extra = payload.get("attachment")
            attachment = (
                None
                if extra is None
                else Attachment(str(extra["filename"]), await _blob(store, extra["blob"]))
            )
            record = await self.ingest(
                data,
                str(payload["filename"]),
                payload["metadata"],
                progress,
                garment_id=garment_id,
                attachment=attachment,
            )
        unkept = _upload_keys(payload) - _blob_keys(record["blobs"])
        await release_blobs(store, unkept, since_s=started_s)
        return garment_view(record)

    async def release_upload(self, job: dict[str, Any]) -> None:
        """`garment.ingest`'s clean-up once the job failed (refused, or interrupted with no
        attempt left): the upload's blobs (the file and any attachment) are deleted unless
        another record names them (a garment that keeps the same file, another job queued
        with it) or someone stored them again after the job was submitted."""
        submitted = parse_time(job.get("created_at"))
        if submitted is None:  # not knowing when it was staged, leave it to the start's sweep
            return
        keys = _upload_keys(job.get("payload") or {})
        await release_blobs(
            self.services.store, keys, since_s=submitted.timestamp(), ending_job=job.get("id")
        )

    # --- reading -------------------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        return await self.records.list()

    async def get(self, garment_id: str) -> dict[str, Any]:
        return await self.records.get(garment_id)

    async def size_run(self, sku: str) -> list[dict[str, Any]]:
        """Every garment with this sku, smallest size first."""
        return size_run(await self.records.list(), sku)

    async def meshes(self, record: dict[str, Any]) -> tuple[GarmentMesh, GarmentMesh]:
        """(render mesh, simulation mesh) of a stored garment, metres."""
        key = record["blobs"]["meshes_npz"]
        cached = self.services.cache.get(("meshes", key))
        if cached is not None:
            return cached
        data = await self.services.store.get_blob(key)
        if data is None:
            raise SpatialTwinError(
                "garment_mesh_missing",
                "the garment's mesh data is missing",
                {"id": record["id"]},
                status=500,
            )
        meshes = await self.services.run(meshes_from_npz, data)
        return self.services.cache.put(("meshes", key), meshes)

    async def appearance(self, record: dict[str, Any]) -> Appearance:
        """The garment's materials and texture images, as uploaded.

        Records stored before textures were kept have no `images`: they read as their
        materials' colours.
        """
        keys = (record.get("blobs") or {}).get("images") or []
        described = record.get("images") or []
        images = []
        for key, meta in zip(keys, described, strict=False):
            data = await self.services.store.get_blob(key)
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
        mesh_key = record["blobs"]["meshes_npz"]
        binding = self.services.cache.get(("binding", mesh_key))
        if binding is None:
            data = await self.services.store.get_blob(mesh_key)
            binding = await self.services.run(binding_from_npz, data) if data is not None else None
            if binding is not None:
                self.services.cache.put(("binding", mesh_key), binding)
        avatar_key = record["blobs"].get("authoring_npz")
        info = json.dumps(record["authoring_body"], sort_keys=True).encode()
        authoring_key = ("authoring", hashlib.sha256(info).hexdigest(), avatar_key)
        authoring = self.services.cache.get(authoring_key)
        if authoring is None:
            avatar = await self.services.store.get_blob(avatar_key) if avatar_key else None
            authoring = await self.services.run(stored_authoring, record, avatar)
            if authoring is not None:
                self.services.cache.put(authoring_key, authoring)
        if binding is None or authoring is None:
            return None
        return GarmentRefit(render, binding, authoring)

    async def render_binding(self, record: dict[str, Any]) -> RenderBinding:
        """The garment's render mesh and materials bound to its simulation mesh (as prepared),
        ready to ride on any placed or draped state of the simulation mesh."""
        render, sim = await self.meshes(record)
        appearance = await self.appearance(record)
        return await self.services.run(RenderBinding.of, render, sim, appearance)

    async def landmarks(self, body: TwinBody, key: str) -> BodyLandmarks:
        """The body's landmarks, cached under the hash of the blob the body was read from."""
        cached = self.services.cache.get(("landmarks", key))
        if cached is not None:
            return cached
        return self.services.cache.put(
            ("landmarks", key), await self.services.run(BodyLandmarks.of, body)
        )

    async def place_on(
        self, record: dict[str, Any], body: TwinBody, body_blob: str
    ) -> PlacedGarment:
        """The garment's simulation mesh placed on `body` (read from blob `body_blob`): what
        the drape step starts from (refitted through its authoring body when it has one, else
        placed by translation)."""
        _, sim = await self.meshes(record)
        pieces = [Piece.from_json(p) for p in record["pieces"]]
        fabric = FabricSpec.from_json(record["fabric"]).to_solver()
        refit = await self.refit_source(record)
        if refit is not None:
            return await self.services.run(
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
        marks = await self.landmarks(body, body_blob)
        return await self.services.run(lambda: place_garment(sim, pieces, body, fabric, marks))

    async def preview_glb(self, garment_id: str, twin_id: str | None, channel: str) -> bytes:
        """The garment placed on a twin, with the twin, as GLB; refused outside the license."""
        garment = self.access.require_visible("garment", await self.get(garment_id))
        if not twin_id:
            raise SpatialTwinError("missing_twin", "preview needs ?twin=<twin id>", status=400)
        twin = await self.access.twin_for_use(twin_id, channel)
        body = await self.twins.body(twin)
        placed = await self.place_on(garment, body, body_key(twin))
        render = await self.render_binding(garment)
        return await self.services.run(
            lambda: garment_on_twin_glb(body, garment, placed, provenance(twin), render)
        )

    async def stored_look_garment(self, record: dict[str, Any]) -> LookGarment:
        """A stored garment ready to drape and show: meshes, materials, refit source."""
        render, sim = await self.meshes(record)
        appearance = await self.appearance(record)
        refit = await self.refit_source(record)
        return look_garment(record, sim, render, appearance, refit)

    async def file_look_garment(
        self,
        data: bytes,
        filename: str,
        category: str,
        units: str,
        fabric_ref: Any,
        attachment: Attachment | None = None,
        estimate_body: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> LookGarment:
        """A garment file (not stored) prepared as an upload would be, ready to drape."""
        if category not in CATEGORIES:
            raise SpatialTwinError(
                "invalid_category", f"category must be one of {', '.join(CATEGORIES)}"
            )
        fabric = await self.resolve_fabric(fabric_ref)
        return await self.services.run(
            lambda: prepared_look_garment(
                data, filename, category, units, fabric, attachment, estimate_body, meta or {}
            )
        )


async def _read(path: Path) -> bytes:
    return await asyncio.to_thread(Path(path).read_bytes)


async def _blob(store: Any, key: str) -> bytes:
    data = await store.get_blob(key)
    if data is None:
        raise NotFoundError("blob", key)
    return bytes(data)


def _upload_keys(payload: dict[str, Any]) -> set[str]:
    """The blobs a `garment.ingest` job's upload was staged as: the file and any attachment."""
    extra = payload.get("attachment")
    keys = {payload.get("source"), extra.get("blob") if isinstance(extra, dict) else None}
    return {key for key in keys if isinstance(key, str)}


def _blob_keys(blobs: dict[str, Any]) -> set[str]:
    """Every blob key a record's `blobs` names (single keys and lists of them)."""
    keys: set[str] = set()
    for value in blobs.values():
        keys |= {str(v) for v in value} if isinstance(value, list) else {str(value)}
    return keys
