"""Twin records (`twins/<id>`): plain get/create/replace/list, nothing else.

A twin is a record plus two content-addressed blobs named in `record["blobs"]`: the body's
arrays (`body_npz`, the working copy) and its bind-pose GLB (`bind_glb`). Creates are
create-only (a taken id is a 409, also when two creates race for it); changes compare-and-set
on the revision the writer read. What a twin may be used for is decided in
`services/access.py`, how it is made in `services/twins.py`.
"""

from __future__ import annotations

from typing import Any

from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.store.base import RecordExistsError, Store
from spatialtwin.store.schema import TWINS, stamped, upgraded

KIND = TWINS


def twin_exists(twin_id: str) -> SpatialTwinError:
    return SpatialTwinError(
        "twin_exists", f"a twin with id {twin_id!r} exists", {"id": twin_id}, status=409
    )


class TwinRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, twin_id: str) -> dict[str, Any] | None:
        record = await self.store.get_record(KIND, twin_id)
        return None if record is None else upgraded(KIND, record)

    async def get(self, twin_id: str) -> dict[str, Any]:
        record = await self.find(twin_id)
        if record is None:
            raise NotFoundError("twin", twin_id)
        return record

    async def get_with_revision(self, twin_id: str) -> tuple[dict[str, Any], str]:
        got = await self.store.get_record_revision(KIND, twin_id)
        if got is None:
            raise NotFoundError("twin", twin_id)
        return upgraded(KIND, got[0]), got[1]

    async def exists(self, twin_id: str) -> bool:
        return await self.store.get_record(KIND, twin_id) is not None

    async def create(self, record: dict[str, Any]) -> str:
        """Store a new twin; returns its revision, or raises 409 `twin_exists`."""
        try:
            return await self.store.create_record(KIND, record["id"], stamped(KIND, record))
        except RecordExistsError as exc:
            raise twin_exists(record["id"]) from exc

    async def replace(self, record: dict[str, Any], revision: str) -> str:
        """Replace the twin if it is still at `revision` (`RecordChangedError` otherwise)."""
        return await self.store.replace_record(KIND, record["id"], stamped(KIND, record), revision)

    async def list(self) -> list[dict[str, Any]]:
        return [upgraded(KIND, r) for r in await self.store.list_records(KIND)]


def body_key(record: dict[str, Any]) -> str:
    """The blob key of the twin's body arrays (NPZ)."""
    return str(record["blobs"]["body_npz"])
