"""What every store offers: JSON records by kind and id, content-addressed blobs, pub/sub.

The embedded store (a data directory) is the default; `RedisStore` satisfies the same interface
for a fleet of servers (records and pub/sub on Redis, blobs in a shared directory), and
`tests/test_store_contract.py` holds both to it. Services depend on this interface only.

Records are written three ways: `create_record` only where the id is free (two creates of one
id: the second is refused, `RecordExistsError`); `replace_record` only over the revision the writer
read (`get_record_revision`; a record changed meanwhile is refused, `RecordChangedError`), so
read-modify-write updates never lose another writer's change; `put_record` unconditionally,
for records only one writer owns. A revision is the SHA-256 of the record's stored bytes:
equal content, equal revision.

Blobs are read whole (`get_blob`) or streamed (`open_blob`, a byte range in chunks), so a store
without local files can serve large files; `blob_path` is the local file where the store has
one (the embedded store), for `sendfile`. A blob's `stored_at_s` is when it was last put
(putting bytes the store has marks them stored again), so a deletion can be made to spare a
blob someone stored after the deleter decided it was unused (`delete_blob(stored_before_s=)`).
The store holds whatever JSON it is given: record shapes and their `schema_version` are the
repositories' (`store/schema.py`).
"""

from __future__ import annotations

import abc
import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from spatialtwin.errors import RecordChangedError, RecordExistsError, SpatialTwinError
from spatialtwin.store.event_log import EventLog, JsonlEventLog

__all__ = ["RecordChangedError", "RecordExistsError", "Store"]


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
    async def list_ids(self, kind: str) -> list[str]:
        """The ids of a kind's records, sorted."""

    @abc.abstractmethod
    async def list_kinds(self) -> list[str]:
        """The record kinds the store holds, sorted."""

    @abc.abstractmethod
    async def put_blob(self, data: bytes) -> tuple[str, bool]:
        """Store bytes; returns (sha256 hex key, whether this call created the blob). Bytes
        the store already has are marked stored now."""

    @abc.abstractmethod
    async def get_blob(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def blob_path(self, key: str) -> Path | None:
        """A local file holding the blob, for `sendfile`; None if missing or not local."""

    async def put_blob_file(self, path: str | os.PathLike[str]) -> tuple[str, bool]:
        """Store a file's bytes (an upload in transit); stores that can, do it without holding
        the file in memory. Returns (sha256 hex key, whether this call created the blob)."""
        data = await _read_file(Path(path))
        return await self.put_blob(data)

    async def blob_size(self, key: str) -> int | None:
        """The blob's size in bytes, or None when there is no such blob."""
        data = await self.get_blob(key)
        return None if data is None else len(data)

    async def open_blob(
        self, key: str, start: int = 0, count: int | None = None, chunk_bytes: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        """`count` bytes of the blob from `start` (all to its end when None), in chunks of at
        most `chunk_bytes`; nothing when there is no such blob. This default reads the blob
        whole; a store that can read ranges overrides it."""
        data = await self.get_blob(key)
        if data is None:
            return
        stop = len(data) if count is None else min(len(data), start + count)
        for offset in range(start, stop, chunk_bytes):
            yield data[offset : min(offset + chunk_bytes, stop)]

    @abc.abstractmethod
    async def list_blobs(self) -> list[tuple[str, float]]:
        """Every blob as (key, stored_at_s: when it was last put, seconds since the epoch)."""

    @abc.abstractmethod
    async def delete_blob(self, key: str, stored_before_s: float | None = None) -> bool:
        """Delete the blob; with `stored_before_s`, only if it was last put before then
        (checked and deleted as one step against concurrent puts). True if deleted."""

    @abc.abstractmethod
    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Send a message to current subscribers; returns how many received it."""

    @abc.abstractmethod
    def subscribe(self, channel: str) -> AsyncIterator[dict[str, Any]]: ...

    def blob_root(self) -> Path | None:
        """The local folder every `blob_path` lies under (a front proxy serving blobs itself,
        `X-Accel-Redirect`, maps it); None for a store without local files."""
        return None

    def event_log(self, stream: str) -> EventLog:
        """The append-only log `stream` (usage events: `store.event_log`). By default a JSONL
        file in a folder beside the store's local blobs (`<blobs>-events/`, shared as the
        blobs are), until a store keeps its own (a Redis Stream)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stream):
            raise SpatialTwinError(
                "invalid_stream", "an event log's name is 1-64 of A-Z a-z 0-9 _ -", None
            )
        root = self.blob_root()
        if root is None:  # a store without local files must keep its own log
            raise SpatialTwinError(
                "event_log_unavailable",
                f"{type(self).__name__} has no local folder for the event log {stream!r}",
                {"store": type(self).__name__, "stream": stream},
                status=503,
            )
        return JsonlEventLog(Path(f"{root}-events") / f"{stream}.jsonl")

    def scratch_dir(self) -> Path | None:
        """A local folder for temporary files (uploads in transit) that the store clears of
        dead writers' leftovers on start; None: the system's temporary folder."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the embedded store has nothing to release."""


async def _read_file(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)
