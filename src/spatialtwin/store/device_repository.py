"""Mirror device records (`mirror_devices/<id>`): plain get/create/replace/list, nothing else.

A device is a smart mirror registered to a store; its record keeps the SHA-256 of its token,
never the token. How tokens are made and checked is `services/devices.py`.
"""

from __future__ import annotations

from typing import Any

from spatialtwin.errors import NotFoundError
from spatialtwin.store.base import Store
from spatialtwin.store.schema import MIRROR_DEVICES, stamped, upgraded

KIND = MIRROR_DEVICES


class DeviceRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, device_id: str) -> dict[str, Any] | None:
        record = await self.store.get_record(KIND, device_id)
        return None if record is None else upgraded(KIND, record)

    async def get(self, device_id: str) -> dict[str, Any]:
        record = await self.find(device_id)
        if record is None:
            raise NotFoundError("device", device_id)
        return record

    async def get_with_revision(self, device_id: str) -> tuple[dict[str, Any], str]:
        got = await self.store.get_record_revision(KIND, device_id)
        if got is None:
            raise NotFoundError("device", device_id)
        return upgraded(KIND, got[0]), got[1]

    async def create(self, record: dict[str, Any]) -> str:
        """Store a new device (`RecordExistsError` when its id is taken)."""
        return await self.store.create_record(KIND, record["id"], stamped(KIND, record))

    async def replace(self, record: dict[str, Any], revision: str) -> str:
        return await self.store.replace_record(KIND, record["id"], stamped(KIND, record), revision)

    async def list(self) -> list[dict[str, Any]]:
        return [upgraded(KIND, r) for r in await self.store.list_records(KIND)]
