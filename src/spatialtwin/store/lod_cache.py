"""LOD records: built level sets (`lod_sets/<key>`) and servable level files (`lod_files/<sha>`).

A set's key is the SHA-256 of the content hashes of its inputs and options
(`cache_key`), so a changed input gives a new key while the old files stay valid for clients
that hold them. Level files are ordinary content-addressed blobs; a `lod_files/<sha256>`
record marks one as servable and names the twins (and looks) it shows (`owners`), so the
public file route never hands out other blobs, and `withdrawn` marks it refused for good once
a twin it shows is revoked. Every change compare-and-sets on the record's revision: a
publication racing a withdrawal keeps the withdrawal, and owners are merged, never lost.
Building and the license checks are `services/lod.py` and `services/access.py`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from spatialtwin.store.base import RecordChangedError, RecordExistsError, Store
from spatialtwin.store.schema import LOD_FILES, LOD_SETS, stamped, upgraded

SETS = LOD_SETS
FILES = LOD_FILES
MEDIA_TYPES = {
    "glb": "model/gltf-binary",
    "bin": "application/octet-stream",
    "usdz": "model/vnd.usdz+zip",  # the AR level for iOS AR Quick Look
}
CAS_ATTEMPTS = 16


def cache_key(inputs: dict[str, str], options: dict[str, Any]) -> str:
    blob = json.dumps({"inputs": inputs, "options": options}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


class LodRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get_set(self, key: str) -> dict[str, Any] | None:
        record = await self.store.get_record(SETS, key)
        return None if record is None else upgraded(SETS, record)

    async def set_is_complete(self, record: dict[str, Any]) -> bool:
        """Every file of the set is still a blob of the store."""
        for name in record["files"]:
            if await self.store.blob_size(name.split(".")[0]) is None:
                return False
        return True

    async def put_set(
        self, key: str, owners: list[str], files: list[str], manifest: dict[str, Any]
    ) -> None:
        record = {"key": key, "owners": owners, "files": sorted(files), "manifest": manifest}
        await self.store.put_record(SETS, key, stamped(SETS, record))

    async def get_file(self, sha: str) -> dict[str, Any] | None:
        record = await self.store.get_record(FILES, sha)
        return None if record is None else upgraded(FILES, record)

    async def publish_file(self, sha: str, ext: str, owners: list[str]) -> None:
        """Mark blob `sha` servable as `.ext`, showing `owners` (merged with those it had);
        a file once withdrawn stays withdrawn."""
        for _ in range(CAS_ATTEMPTS):
            got = await self.store.get_record_revision(FILES, sha)
            if got is None:
                record = {"sha256": sha, "ext": ext, "owners": sorted(set(owners))}
                record["withdrawn"] = False
                try:
                    await self.store.create_record(FILES, sha, stamped(FILES, record))
                    return
                except RecordExistsError:
                    continue
            old, revision = got
            record = upgraded(FILES, old)
            record["owners"] = sorted(set(record.get("owners", ())) | set(owners))
            record["ext"] = ext
            try:
                await self.store.replace_record(FILES, sha, stamped(FILES, record), revision)
                return
            except RecordChangedError:
                continue
        raise RecordChangedError(FILES, sha)

    async def withdraw_owner(self, owner: str) -> int:
        """Refuse every file that shows `owner` (a revoked twin) and forget its sets; returns
        how many files this call withdrew."""
        count = 0
        for sha in await self.store.list_ids(FILES):
            if await self._withdraw(sha, owner):
                count += 1
        for key in await self.store.list_ids(SETS):
            record = await self.store.get_record(SETS, key)
            if record is not None and owner in record.get("owners", ()):
                await self.store.delete_record(SETS, key)
        return count

    async def _withdraw(self, sha: str, owner: str) -> bool:
        for _ in range(CAS_ATTEMPTS):
            got = await self.store.get_record_revision(FILES, sha)
            if got is None:
                return False
            old, revision = got
            record = upgraded(FILES, old)
            if owner not in record.get("owners", ()) or record.get("withdrawn"):
                return False
            record["withdrawn"] = True
            try:
                await self.store.replace_record(FILES, sha, stamped(FILES, record), revision)
                return True
            except RecordChangedError:
                continue
        raise RecordChangedError(FILES, sha)

    async def list_files(self) -> list[dict[str, Any]]:
        return [upgraded(FILES, r) for r in await self.store.list_records(FILES)]
