"""Look records (`looks/<id>`): plain get/create/list.

A look is a record plus one content-addressed blob, its GLB (`record["blobs"]["glb"]`). How a
look is draped and who may see it is `services/looks.py` and `services/access.py`.
"""

from __future__ import annotations

from typing import Any

from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.store.base import RecordExistsError, Store
from spatialtwin.store.schema import LOOKS, stamped, upgraded

KIND = LOOKS


class LookRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, look_id: str) -> dict[str, Any] | None:
        record = await self.store.get_record(KIND, look_id)
        return None if record is None else upgraded(KIND, record)

    async def get(self, look_id: str) -> dict[str, Any]:
        record = await self.find(look_id)
        if record is None:
            raise NotFoundError("look", look_id)
        return record

    async def create(self, record: dict[str, Any]) -> str:
        try:
            return await self.store.create_record(KIND, record["id"], stamped(KIND, record))
        except RecordExistsError as exc:
            raise SpatialTwinError(
                "look_exists", f"a look with id {record['id']!r} exists", status=409
            ) from exc

    async def list(self) -> list[dict[str, Any]]:
        return [upgraded(KIND, r) for r in await self.store.list_records(KIND)]
