"""Built LOD sets kept in the store, keyed by the content hashes of their inputs.

A set is built once per distinct input (twin body, garments, drape, license provenance,
pipeline options): its key is the SHA-256 of those hashes, so a changed input gives a new key
and the next manifest request rebuilds, while the old files stay valid for clients that still
hold them. Level files are ordinary content-addressed blobs; a `lod_files/<sha256>` record
marks each one as servable and names the twins it shows, so the public file route never hands
out other blobs (raw body arrays) and withdraws a twin's files when its license is revoked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatialtwin.store.base import Store

SETS = "lod_sets"
FILES = "lod_files"
MEDIA_TYPES = {"glb": "model/gltf-binary", "bin": "application/octet-stream"}


def cache_key(inputs: dict[str, str], options: dict[str, Any]) -> str:
    blob = json.dumps({"inputs": inputs, "options": options}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class ServedFile:
    path: Path
    sha256: str
    media_type: str
    owners: tuple[str, ...]
    size: int  # bytes; the file behind a content hash never changes, so stat once


class LodCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._locks: dict[str, asyncio.Lock] = {}
        self._served: dict[str, ServedFile] = {}
        self._withdrawn: set[str] = set()

    async def get_or_build(
        self,
        key: str,
        owners: list[str],
        build: Callable[[], Awaitable[tuple[dict[str, Any], dict[str, bytes]]]],
    ) -> tuple[dict[str, Any], bool]:
        """(manifest, whether this call built it); concurrent callers of one key build once."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            record = await self.store.get_record(SETS, key)
            if record is not None and all(
                self.store.blob_path(name.split(".")[0]) is not None for name in record["files"]
            ):
                return record["manifest"], False
            manifest, files = await build()
            for name, data in files.items():
                sha, ext = name.split(".")
                got, _ = await self.store.put_blob(data)
                assert got == sha, "level file names must be the SHA-256 of their bytes"
                # A file can show several twins (geometry-only fallbacks are shared when only
                # provenance differs): it keeps every owner, and a withdrawal stays withdrawn.
                old = await self.store.get_record(FILES, sha) or {}
                record = {
                    "sha256": sha,
                    "ext": ext,
                    "owners": sorted(set(old.get("owners", ())) | set(owners)),
                }
                if old.get("withdrawn"):
                    record["withdrawn"] = True
                await self.store.put_record(FILES, sha, record)
                self._served.pop(sha, None)
            await self.store.put_record(
                SETS,
                key,
                {"key": key, "owners": owners, "files": sorted(files), "manifest": manifest},
            )
            return manifest, True

    async def served_file(self, sha: str, ext: str) -> ServedFile | None:
        """The file behind `/lod/<sha>.<ext>`, or None if it is not a live LOD file."""
        if sha in self._withdrawn:
            return None
        hit = self._served.get(sha)
        if hit is not None:
            return hit if hit.media_type == MEDIA_TYPES.get(ext) else None
        record = await self.store.get_record(FILES, sha)
        if record is None or record.get("ext") != ext or record.get("withdrawn"):
            return None
        path = self.store.blob_path(sha)
        if path is None:
            return None
        size = (await asyncio.to_thread(path.stat)).st_size
        hit = ServedFile(path, sha, MEDIA_TYPES[ext], tuple(record.get("owners", ())), size)
        self._served[sha] = hit
        return hit

    async def withdraw_owner(self, owner: str) -> int:
        """Stop serving every file that shows `owner` (a revoked twin); returns how many."""
        count = 0
        for record in await self.store.list_records(FILES):
            if owner in record.get("owners", ()) and not record.get("withdrawn"):
                record["withdrawn"] = True
                await self.store.put_record(FILES, record["sha256"], record)
                self._withdrawn.add(record["sha256"])
                self._served.pop(record["sha256"], None)
                count += 1
        for record in await self.store.list_records(SETS):
            if owner in record.get("owners", ()):
                await self.store.delete_record(SETS, record["key"])
        return count
