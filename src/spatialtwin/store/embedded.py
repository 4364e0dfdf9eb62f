"""The embedded default store: a data directory, no external service.

Layout: `records/<kind>/<id>.json` and `blobs/<aa>/<sha256>`. Every write goes to a temporary
file in the same directory and is renamed into place, so a crash leaves the old version or the
new one, never half a file. Pub/sub is in-process (one server), which is what a single mirror
or a developer's machine needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from spatialtwin.store.atomic import write_bytes_atomic, write_json_atomic
from spatialtwin.store.base import Store

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def _check_id(value: str, what: str) -> str:
    if not _SAFE_ID.match(value) or ".." in value:
        raise ValueError(f"unsafe {what} {value!r}")
    return value


class EmbeddedStore(Store):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "records").mkdir(parents=True, exist_ok=True)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    def _record_path(self, kind: str, record_id: str) -> Path:
        return (
            self.root / "records" / _check_id(kind, "kind") / f"{_check_id(record_id, 'id')}.json"
        )

    def blob_path(self, key: str) -> Path | None:
        if not _SHA.match(key):
            return None
        path = self.root / "blobs" / key[:2] / key
        return path if path.exists() else None

    async def put_record(self, kind: str, record_id: str, record: dict[str, Any]) -> None:
        await asyncio.to_thread(write_json_atomic, self._record_path(kind, record_id), record)

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        try:
            path = self._record_path(kind, record_id)
        except ValueError:
            return None
        try:
            return json.loads(await asyncio.to_thread(path.read_bytes))
        except FileNotFoundError:
            return None

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        folder = self.root / "records" / _check_id(kind, "kind")

        def read_all() -> list[dict[str, Any]]:
            if not folder.exists():
                return []
            return [json.loads(p.read_bytes()) for p in sorted(folder.glob("*.json"))]

        return await asyncio.to_thread(read_all)

    async def delete_record(self, kind: str, record_id: str) -> bool:
        try:
            self._record_path(kind, record_id).unlink()
            return True
        except (FileNotFoundError, ValueError):
            return False

    async def put_blob(self, data: bytes) -> tuple[str, bool]:
        key = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / key[:2] / key
        if path.exists():
            return key, False
        await asyncio.to_thread(write_bytes_atomic, path, data)
        return key, True

    async def get_blob(self, key: str) -> bytes | None:
        path = self.blob_path(key)
        return None if path is None else await asyncio.to_thread(path.read_bytes)

    async def delete_blob(self, key: str) -> bool:
        path = self.blob_path(key)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        return True

    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        queues = list(self._subscribers.get(channel, ()))
        for q in queues:
            q.put_nowait(message)
        return len(queues)

    async def subscribe(self, channel: str) -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers[channel].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers[channel].discard(queue)

    def snapshot(self) -> dict[str, int]:
        """Counts of records and blobs: what a test compares before and after a refusal."""
        records = sum(1 for _ in (self.root / "records").rglob("*.json"))
        blobs = sum(1 for p in (self.root / "blobs").rglob("*") if p.is_file())
        return {"records": records, "blobs": blobs}
