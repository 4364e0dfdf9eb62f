"""The embedded default store: a data directory, no external service.

Layout: `records/<kind>/<id>.json`, `blobs/<aa>/<sha256>` and `tmp/` (uploads in transit). A
blob's mtime is when it was last put (set at full clock precision, `blob_files.stamp_now`):
putting bytes that are there touches the file, under a shared `flock` on `blobs/.lock` that a
conditional delete takes exclusively from reading the mtime to the unlink, so a blob put again
meanwhile is never deleted (`delete_blob`).
Every write goes to a temporary file in the same directory and is renamed into place, so a
crash leaves the old version or the new one, never half a file; the temporary files a killed
process leaves behind are removed when a store opens the directory (`atomic.is_leftover`:
their writer's pid is gone, or they are an hour old). Creates hard-link the complete file into
place (refused when the id is taken); compare-and-set replaces hold `records/<kind>/.lock`
(`flock`, so they exclude other processes on the directory too) from reading the revision to
the rename. Pub/sub is in-process (one server), which is what a single mirror or a
developer's machine needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from spatialtwin.files import (
    TEMP_SUFFIX,
    create_bytes_exclusive,
    is_leftover,
    json_bytes,
    write_bytes_atomic,
)
from spatialtwin.store.base import RecordChangedError, RecordExistsError, Store
from spatialtwin.store.blob_files import (
    SHA256,
    blob_target,
    existing_blob,
    file_size,
    hash_file,
    read_range,
    stamp_now,
    write_blob,
)
from spatialtwin.store.event_log import JsonlEventLog

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _check_id(value: str, what: str) -> str:
    if not _SAFE_ID.match(value) or ".." in value:
        raise ValueError(f"unsafe {what} {value!r}")
    return value


def _revision(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EmbeddedStore(Store):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        for folder in ("records", "blobs", "tmp"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self.leftovers_removed = self.remove_leftovers()

    def remove_leftovers(self) -> int:
        """Delete the temporary files of writers that are gone; returns how many."""
        now_s = time.time()
        candidates = [
            *(self.root / "records").rglob(f".*{TEMP_SUFFIX}"),
            *(self.root / "blobs").rglob(f".*{TEMP_SUFFIX}"),
            *(p for p in (self.root / "tmp").iterdir() if p.is_file()),
        ]
        removed = 0
        for path in candidates:
            if is_leftover(path, now_s):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def scratch_dir(self) -> Path:
        return self.root / "tmp"

    def event_log(self, stream: str) -> JsonlEventLog:
        """`DATA/events/<stream>.jsonl`, fsynced per event (`store.event_log`)."""
        return JsonlEventLog(self.root / "events" / f"{_check_id(stream, 'stream')}.jsonl")

    def blob_root(self) -> Path:
        return self.root / "blobs"

    @contextlib.contextmanager
    def _blob_lock(self, exclusive: bool) -> Iterator[None]:
        """Puts share it; a conditional delete holds it alone (across processes: `flock`)."""
        with open(self.root / "blobs" / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _touch_existing(self, target: Path) -> bool:
        """Mark a blob that is there as stored now; False when it is not there."""
        with self._blob_lock(exclusive=False):
            try:
                stamp_now(target)
            except FileNotFoundError:
                return False
            return True

    @contextlib.contextmanager
    def _kind_lock(self, kind: str) -> Iterator[None]:
        """Exclusive lock on a kind's records, across threads and processes (`flock`)."""
        folder = self.root / "records" / _check_id(kind, "kind")
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _record_path(self, kind: str, record_id: str) -> Path:
        return (
            self.root / "records" / _check_id(kind, "kind") / f"{_check_id(record_id, 'id')}.json"
        )

    def blob_path(self, key: str) -> Path | None:
        return self._blob_file(key)

    def _blob_file(self, key: str) -> Path | None:
        """The blob's file, for this store's own reads (`blob_path` is what it offers out)."""
        return existing_blob(self.root / "blobs", key)

    async def put_record(self, kind: str, record_id: str, record: dict[str, Any]) -> None:
        path, data = self._record_path(kind, record_id), json_bytes(record)

        def write() -> None:
            with self._kind_lock(kind):
                write_bytes_atomic(path, data)

        await asyncio.to_thread(write)

    async def create_record(self, kind: str, record_id: str, record: dict[str, Any]) -> str:
        path, data = self._record_path(kind, record_id), json_bytes(record)
        if not await asyncio.to_thread(create_bytes_exclusive, path, data):
            raise RecordExistsError(kind, record_id)
        return _revision(data)

    async def get_record_revision(
        self, kind: str, record_id: str
    ) -> tuple[dict[str, Any], str] | None:
        try:
            path = self._record_path(kind, record_id)
            data = await asyncio.to_thread(path.read_bytes)
        except (ValueError, FileNotFoundError):
            return None
        return json.loads(data), _revision(data)

    async def replace_record(
        self, kind: str, record_id: str, record: dict[str, Any], revision: str
    ) -> str:
        path, data = self._record_path(kind, record_id), json_bytes(record)

        def compare_and_set() -> bool:
            with self._kind_lock(kind):
                try:
                    current = path.read_bytes()
                except FileNotFoundError:
                    return False
                if _revision(current) != revision:
                    return False
                write_bytes_atomic(path, data)
                return True

        if not await asyncio.to_thread(compare_and_set):
            raise RecordChangedError(kind, record_id)
        return _revision(data)

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
            files = sorted(folder.glob("*.json"), key=lambda p: p.stem)  # by id, as list_ids
            return [json.loads(p.read_bytes()) for p in files]

        return await asyncio.to_thread(read_all)

    async def delete_record(self, kind: str, record_id: str) -> bool:
        try:
            path = self._record_path(kind, record_id)
        except ValueError:
            return False

        def delete() -> bool:
            with self._kind_lock(kind):
                try:
                    path.unlink()
                except FileNotFoundError:
                    return False
                return True

        return await asyncio.to_thread(delete)

    async def list_kinds(self) -> list[str]:
        def kinds() -> list[str]:
            folder = self.root / "records"
            return sorted(p.name for p in folder.iterdir() if p.is_dir() and _SAFE_ID.match(p.name))

        return await asyncio.to_thread(kinds)

    async def list_ids(self, kind: str) -> list[str]:
        folder = self.root / "records" / _check_id(kind, "kind")

        def ids() -> list[str]:
            if not folder.exists():
                return []
            return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))

        return await asyncio.to_thread(ids)

    async def put_blob_file(self, path: str | os.PathLike[str]) -> tuple[str, bool]:
        """Hash the file in chunks, copy it beside its blob path and rename it into place: an
        upload of any size becomes a blob without being held in memory."""
        source = Path(path)

        def store_file() -> tuple[str, bool]:
            key = hash_file(source)
            target = blob_target(self.root / "blobs", key)
            if self._touch_existing(target):
                return key, False
            write_blob(target, source)
            return key, True

        return await asyncio.to_thread(store_file)

    async def blob_size(self, key: str) -> int | None:
        return await file_size(self._blob_file(key))

    async def open_blob(
        self, key: str, start: int = 0, count: int | None = None, chunk_bytes: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        async for chunk in read_range(self._blob_file(key), start, count, chunk_bytes):
            yield chunk

    async def put_blob(self, data: bytes) -> tuple[str, bool]:
        key = hashlib.sha256(data).hexdigest()
        path = blob_target(self.root / "blobs", key)
        if await asyncio.to_thread(self._touch_existing, path):
            return key, False
        await asyncio.to_thread(write_blob, path, data)
        return key, True

    async def get_blob(self, key: str) -> bytes | None:
        path = self._blob_file(key)
        return None if path is None else await asyncio.to_thread(path.read_bytes)

    async def list_blobs(self) -> list[tuple[str, float]]:
        def stored() -> list[tuple[str, float]]:
            blobs = []
            for path in (self.root / "blobs").glob("*/*"):
                if SHA256.match(path.name):
                    with contextlib.suppress(FileNotFoundError):
                        blobs.append((path.name, path.stat().st_mtime))
            return sorted(blobs)

        return await asyncio.to_thread(stored)

    async def delete_blob(self, key: str, stored_before_s: float | None = None) -> bool:
        path = self._blob_file(key)
        if path is None:
            return False
        if stored_before_s is None:
            path.unlink(missing_ok=True)
            return True

        def delete_if_unchanged() -> bool:
            with self._blob_lock(exclusive=True):
                try:
                    if path.stat().st_mtime >= stored_before_s:
                        return False
                    path.unlink()
                except FileNotFoundError:
                    return False
                return True

        return await asyncio.to_thread(delete_if_unchanged)

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

    def _stored_files(self, ignore_kinds: tuple[str, ...] = ()) -> list[Path]:
        records = [
            p
            for p in (self.root / "records").rglob("*.json")
            if not p.name.startswith(".") and p.parent.name not in ignore_kinds
        ]
        blobs = [
            p for p in (self.root / "blobs").rglob("*") if p.is_file() and SHA256.match(p.name)
        ]
        return sorted(records) + sorted(blobs)

    def snapshot(self, content: bool = False, ignore_kinds: tuple[str, ...] = ()) -> dict[str, Any]:
        """Counts of records and blobs and, with `content`, `sha256`: a hash of every record's
        and blob's path and bytes. A test compares it before and after a refusal, so a
        refusal that rewrote a record (same count, other bytes) fails the test. Records of
        `ignore_kinds` are left out (a failed job's own record, say)."""
        files = self._stored_files(ignore_kinds)
        records = sum(1 for p in files if p.suffix == ".json")
        snap: dict[str, Any] = {"records": records, "blobs": len(files) - records}
        if content:
            snap["sha256"] = self.content_digest(files)
        return snap

    def content_digest(self, files: list[Path] | None = None) -> str:
        """SHA-256 over every stored record and blob: (relative path, SHA-256 of its bytes)."""
        digest = hashlib.sha256()
        for path in self._stored_files() if files is None else files:
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()
