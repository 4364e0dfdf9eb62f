"""Garment and fabric records: plain get/create/list.

A garment is a record (`garments/<id>`) plus content-addressed blobs named in
`record["blobs"]`: the uploaded file as sent (`source`), the prepared meshes (`meshes_npz`:
render mesh and simulation mesh, metres), one blob per texture image (`images`, PNG/JPEG bytes
as uploaded, in the order of the record's `images`) and, for a garment exported with its
avatar, that body (`authoring_npz`). Custom fabrics are records (`fabrics/<id>`); presets
live in code (`garment.fabrics`). Ingest is `services/garments.py`.
"""

from __future__ import annotations

from typing import Any

from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.store.base import RecordExistsError, Store
from spatialtwin.store.schema import FABRICS, GARMENTS, stamped, upgraded

KIND = GARMENTS
FABRIC_KIND = FABRICS


def fabric_exists(fabric_id: str) -> SpatialTwinError:
    return SpatialTwinError(
        "fabric_exists", f"a fabric with id {fabric_id!r} exists", {"id": fabric_id}, status=409
    )


def garment_exists(garment_id: str) -> SpatialTwinError:
    return SpatialTwinError(
        "garment_exists",
        f"a garment with id {garment_id!r} exists",
        {"id": garment_id},
        status=409,
    )


class GarmentRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, garment_id: str) -> dict[str, Any] | None:
        record = await self.store.get_record(KIND, garment_id)
        return None if record is None else upgraded(KIND, record)

    async def get(self, garment_id: str) -> dict[str, Any]:
        record = await self.find(garment_id)
        if record is None:
            raise NotFoundError("garment", garment_id)
        return record

    async def create(self, record: dict[str, Any]) -> str:
        try:
            return await self.store.create_record(KIND, record["id"], stamped(KIND, record))
        except RecordExistsError as exc:
            raise garment_exists(record["id"]) from exc

    async def list(self) -> list[dict[str, Any]]:
        return [upgraded(KIND, r) for r in await self.store.list_records(KIND)]

    # --- fabrics -------------------------------------------------------------------------------

    async def find_fabric(self, fabric_id: str) -> dict[str, Any] | None:
        record = await self.store.get_record(FABRIC_KIND, fabric_id)
        return None if record is None else upgraded(FABRIC_KIND, record)

    async def list_fabrics(self) -> list[dict[str, Any]]:
        return [upgraded(FABRIC_KIND, r) for r in await self.store.list_records(FABRIC_KIND)]

    async def create_fabric(self, record: dict[str, Any]) -> str:
        try:
            return await self.store.create_record(
                FABRIC_KIND, record["id"], stamped(FABRIC_KIND, record)
            )
        except RecordExistsError as exc:  # another create of this id won the race
            raise fabric_exists(record["id"]) from exc
