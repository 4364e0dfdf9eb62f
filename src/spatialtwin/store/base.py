"""What every store offers: JSON records by kind and id, content-addressed blobs, pub/sub.

The embedded store (a data directory) is the default; a Redis-backed store can satisfy the same
interface for a fleet of servers. Services depend on this interface only.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


class Store(abc.ABC):
    """Records (JSON objects), blobs (bytes keyed by SHA-256) and a publish/subscribe bus."""

    @abc.abstractmethod
    async def put_record(self, kind: str, record_id: str, record: dict[str, Any]) -> None:
        """Create or replace a record atomically."""

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

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the embedded store has nothing to release."""
