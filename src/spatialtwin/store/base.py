"""What every store offers: JSON records by kind and id, content-addressed blobs, pub/sub.

The embedded store (a data directory) is the default; a Redis-backed store can satisfy the same
interface for a fleet of servers. Services depend on this interface only.

Records are written three ways: `create_record` only where the id is free (two creates of one
id: the second is refused, `RecordExistsError`); `replace_record` only over the revision the writer
read (`get_record_revision`; a record changed meanwhile is refused, `RecordChangedError`), so
read-modify-write updates never lose another writer's change; `put_record` unconditionally,
for records only one writer owns (a job's progress). A revision is the SHA-256 of the
record's stored bytes: equal content, equal revision.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from spatialtwin.errors import SpatialTwinError


class RecordExistsError(SpatialTwinError):
    """A create found its id taken."""

    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(
            "record_exists",
            f"a {kind} record with id {record_id!r} exists",
            {"kind": kind, "id": record_id},
            status=409,
        )


class RecordChangedError(SpatialTwinError):
    """A compare-and-set found the record changed (or gone) since it was read."""

    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(
            "record_changed",
            f"the {kind} record {record_id!r} changed while this request was updating it; "
            "read it again and retry",
            {"kind": kind, "id": record_id},
            status=409,
        )


class Store(abc.ABC):
    """Records (JSON objects), blobs (bytes keyed by SHA-256) and a publish/subscribe bus."""

    @abc.abstractmethod
    async def put_record(self, kind: str, record_id: str, record: dict[str, Any]) -> None:
        """Create or replace a record atomically."""

    @abc.abstractmethod
    async def create_record(self, kind: str, record_id: str, record: dict[str, Any]) -> str:
        """Create a record whose id is free; returns its revision, raises `RecordExistsError`."""

    @abc.abstractmethod
    async def get_record_revision(
        self, kind: str, record_id: str
    ) -> tuple[dict[str, Any], str] | None:
        """(record, revision), or None when there is no such record."""

    @abc.abstractmethod
    async def replace_record(
        self, kind: str, record_id: str, record: dict[str, Any], revision: str
    ) -> str:
        """Replace the record if it is still at `revision`; returns the new revision, raises
        `RecordChangedError` otherwise (also when it was deleted)."""

    @abc.abstractmethod
    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def list_records(self, kind: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def delete_record(self, kind: str, record_id: str) -> bool: ...

    @abc.abstractmethod
    async def put_blob(self, data: bytes) -> tuple[str, bool]:
        """Store bytes; returns (sha256 hex key, whether this call created the blob)."""

    @abc.abstractmethod
    async def get_blob(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def blob_path(self, key: str) -> Path | None:
        """A local file holding the blob, for streaming responses; None if not local."""

    @abc.abstractmethod
    async def delete_blob(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Send a message to current subscribers; returns how many received it."""

    @abc.abstractmethod
    def subscribe(self, channel: str) -> AsyncIterator[dict[str, Any]]: ...

    def scratch_dir(self) -> Path | None:
        """A local folder for temporary files (uploads in transit) that the store clears of
        dead writers' leftovers on start; None: the system's temporary folder."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the embedded store has nothing to release."""
