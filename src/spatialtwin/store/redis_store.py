"""A store for a fleet: records and pub/sub on Redis, blobs in a directory every process shares.

    store = RedisStore("redis://127.0.0.1:6379/0", blobs="/var/lib/spatialtwin/blobs")
    await store.check()                      # StoreUnavailableError naming the URL if unreachable

Records: two Redis hashes per kind, `<ns>:rec:<kind>` (id -> the record's compact JSON) and
`<ns>:rev:<kind>` (id -> its revision, the SHA-256 of those bytes), plus the set `<ns>:kinds`.
Every write is one Lua script, so it is atomic against every other server: a create refuses a
taken id, a replace compares the stored revision with the one the writer read and refuses a
changed (or deleted) record, exactly as `EmbeddedStore` does with `link` and `flock`. A read of
(record, revision) is one MULTI. Listing a kind is one `HGETALL`; keeping a kind in two hashes
instead of a key per record keeps the key space small (Dramatiq's maintenance runs `KEYS` on
it) and Redis' memory per record at its JSON's size plus 0.2-0.6 kB (a look record ~1.7 kB;
`tests/test_worker_fleet.py::test_redis_memory_per_record_and_per_look`).

Blobs: files under `blobs/<aa>/<sha256>`, the embedded store's layout (so nginx can serve them
with `X-Accel-Redirect`, and a data directory's `blobs/` can be copied over), each written to a
temporary file and renamed into place. When a blob was last stored (`stored_at_s`) lives in the
sorted set `<ns>:blobs`, not in the file's mtime, so no cross-machine file lock is needed:
a put marks the blob stored now *before* it looks for the file, and a conditional delete
checks and removes that mark in one script and leaves a short tombstone (`<ns>:blobdel:<sha>`)
until its unlink is done; a put that meets a tombstone waits for it. A put after the deleter
decided therefore either makes the delete refuse (the mark is younger) or waits and writes the
file again: a blob someone stored is never lost to a delete.

Pub/sub: Redis channels `<ns>:<db>:<channel>` (Redis channels ignore the database number, so
it is part of the name); a subscription that loses its connection subscribes again by itself
(messages sent meanwhile are lost, as with any pub/sub: listeners also poll what matters).
A connection error is tried again once (a pooled connection Redis closed as it restarted fails
one command); a create or replace whose reply was lost is looked up instead (written at its
revision: done). What still fails is `StoreUnavailableError` (503 with `Retry-After`), never a
500. Redis Cluster is not supported (the scripts touch keys of several slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from spatialtwin.errors import StoreUnavailableError
from spatialtwin.files import STALE_AFTER_S, TEMP_SUFFIX, is_leftover
from spatialtwin.store.base import RecordChangedError, RecordExistsError, Store
from spatialtwin.store.blob_files import (
    SHA256,
    blob_target,
    existing_blob,
    file_size,
    hash_file,
    read_range,
    write_blob,
)

log = logging.getLogger("spatialtwin.store")

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
TOMBSTONE_MS = 10_000  # a delete's unlink takes microseconds; a crashed deleter's mark expires
_TOMBSTONE_WAIT_S = 0.02
RESUBSCRIBE_MAX_S = 2.0
RETRY_AFTER_S = 0.05
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

T = TypeVar("T")

# KEYS: rec hash, rev hash, kinds set. ARGV: id, data, revision, kind.
_CREATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"""
# ARGV: id, data, new revision, kind, expected revision.
_REPLACE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[5] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"""
# KEYS: rec hash, rev hash. ARGV: id.
_DELETE = """
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return gone
"""
# KEYS: blobs zset, tombstone. ARGV: sha, now_s. 1: marked; 0: a delete is under way.
_MARK_BLOB = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""
# KEYS: blobs zset, tombstone. ARGV: sha, stored_before_s (or '' for unconditional), ttl_ms.
_CLAIM_DELETE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  if not score or tonumber(score) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
if score then return 1 end
return 2
"""


def _check_id(value: str, what: str) -> str:
    """The embedded store's rule (a file name there): both stores accept the same ids."""
    if not isinstance(value, str) or not _SAFE_ID.match(value) or ".." in value:
        raise ValueError(f"unsafe {what} {value!r}")
    return value


def _safe(value: str) -> bool:
    return isinstance(value, str) and bool(_SAFE_ID.match(value)) and ".." not in value


def record_bytes(record: dict[str, Any]) -> bytes:
    """A record as stored here: compact sorted JSON (a third smaller in Redis' memory than the
    embedded store's indented files; revisions are per store, equal content equal revision)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _revision(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisStore(Store):
    def __init__(
        self,
        url: str,
        blobs: str | os.PathLike[str],
        *,
        namespace: str = "spatialtwin",
        scratch: str | os.PathLike[str] | None = None,
        socket_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.namespace = _check_id(namespace, "namespace")
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            health_check_interval=30,
        )
        db = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self._channel_prefix = f"{self.namespace}:{db}:"
        self.blobs_root = Path(blobs)
        self.blobs_root.mkdir(parents=True, exist_ok=True)
        # Uploads in transit are this host's: a dead writer is told by its pid, which only
        # means something on the host that wrote it.
        self._scratch = (
            Path(scratch)
            if scratch is not None
            else self.blobs_root / ".tmp" / socket.gethostname()
        )
        self._scratch.mkdir(parents=True, exist_ok=True)
        self._kinds_key = f"{self.namespace}:kinds"
        self._blobs_key = f"{self.namespace}:blobs"
        self._create = self._redis.register_script(_CREATE)
        self._replace = self._redis.register_script(_REPLACE)
        self._put = self._redis.register_script(_PUT)
        self._delete = self._redis.register_script(_DELETE)
        self._mark_blob = self._redis.register_script(_MARK_BLOB)
        self._claim_delete = self._redis.register_script(_CLAIM_DELETE)
        self.leftovers_removed = self.remove_leftovers()

    # --- plumbing -------------------------------------------------------------------------

    async def _call(self, op: Callable[[], Awaitable[T]], *, once: bool = False) -> T:
        """`op()`, tried again once after a lost connection (a pooled connection that Redis
        closed as it restarted can fail one command; the retry connects anew), then
        `StoreUnavailableError` (503), never a 500. `once`: no second try, for a write whose
        lost reply leaves unknown whether it was made (its caller looks)."""
        try:
            return await op()
        except _UNAVAILABLE as exc:
            if once:
                raise StoreUnavailableError(redacted(self.url), str(exc)) from exc
        await asyncio.sleep(RETRY_AFTER_S)
        try:
            return await op()
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(redacted(self.url), str(exc)) from exc

    async def _written_at(self, kind: str, record_id: str, revision: str) -> bool:
        """After a write whose reply was lost: whether the record now stands at `revision`
        (then the write was made; equal bytes, equal revision)."""
        await asyncio.sleep(RETRY_AFTER_S)
        current = await self.get_record_revision(kind, record_id)
        return current is not None and current[1] == revision

    async def check(self) -> None:
        """Raise `StoreUnavailableError` unless Redis answers (what a start checks first)."""
        await self._call(self._redis.ping)

    def _rec(self, kind: str) -> str:
        return f"{self.namespace}:rec:{kind}"

    def _rev(self, kind: str) -> str:
        return f"{self.namespace}:rev:{kind}"

    def _tombstone(self, key: str) -> str:
        return f"{self.namespace}:blobdel:{key}"

    def _channel(self, channel: str) -> str:
        return self._channel_prefix + channel

    def remove_leftovers(self) -> int:
        """Delete temporary files dead writers left: in this host's scratch folder by pid (or
        age), in the shared blob folders only once they are an hour old (another host's pid
        says nothing here)."""
        now_s = time.time()
        removed = 0
        for path in self._scratch.iterdir():
            if path.is_file() and is_leftover(path, now_s):
                path.unlink(missing_ok=True)
                removed += 1
        for path in self.blobs_root.glob(f"*/.*{TEMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if now_s - path.stat().st_mtime > STALE_AFTER_S:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def scratch_dir(self) -> Path:
        return self._scratch

    def blob_root(self) -> Path:
        return self.blobs_root

    async def close(self) -> None:
        await self._redis.aclose()

    # --- records --------------------------------------------------------------------------

    async def put_record(self, kind: str, record_id: str, record: dict[str, Any]) -> None:
        _check_id(kind, "kind")
        _check_id(record_id, "id")
        data = record_bytes(record)
        keys = [self._rec(kind), self._rev(kind), self._kinds_key]
        await self._call(lambda: self._put(keys, [record_id, data, _revision(data), kind]))

    async def create_record(self, kind: str, record_id: str, record: dict[str, Any]) -> str:
        _check_id(kind, "kind")
        _check_id(record_id, "id")
        data = record_bytes(record)
        revision = _revision(data)
        keys = [self._rec(kind), self._rev(kind), self._kinds_key]
        args = [record_id, data, revision, kind]
        try:
            created = await self._call(lambda: self._create(keys, args), once=True)
        except StoreUnavailableError:
            if await self._written_at(kind, record_id, revision):
                return revision
            created = await self._call(lambda: self._create(keys, args), once=True)
        if not created:
            raise RecordExistsError(kind, record_id)
        return revision

    async def get_record_revision(
        self, kind: str, record_id: str
    ) -> tuple[dict[str, Any], str] | None:
        if not (_safe(kind) and _safe(record_id)):
            return None

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hget(self._rec(kind), record_id)
                pipe.hget(self._rev(kind), record_id)
                return await pipe.execute()

        data, revision = await self._call(read)
        if data is None or revision is None:
            return None
        return json.loads(data), revision.decode()

    async def replace_record(
        self, kind: str, record_id: str, record: dict[str, Any], revision: str
    ) -> str:
        _check_id(kind, "kind")
        _check_id(record_id, "id")
        data = record_bytes(record)
        new = _revision(data)
        keys = [self._rec(kind), self._rev(kind), self._kinds_key]
        args = [record_id, data, new, kind, str(revision)]
        try:
            replaced = await self._call(lambda: self._replace(keys, args), once=True)
        except StoreUnavailableError:
            if await self._written_at(kind, record_id, new):
                return new
            replaced = await self._call(lambda: self._replace(keys, args), once=True)
        if not replaced:
            raise RecordChangedError(kind, record_id)
        return new

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        if not (_safe(kind) and _safe(record_id)):
            return None
        data = await self._call(lambda: self._redis.hget(self._rec(kind), record_id))
        return None if data is None else json.loads(data)

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        _check_id(kind, "kind")
        stored = await self._call(lambda: self._redis.hgetall(self._rec(kind)))
        return [json.loads(stored[k]) for k in sorted(stored)]

    async def delete_record(self, kind: str, record_id: str) -> bool:
        if not (_safe(kind) and _safe(record_id)):
            return False
        keys = [self._rec(kind), self._rev(kind)]
        return bool(await self._call(lambda: self._delete(keys, [record_id])))

    async def list_ids(self, kind: str) -> list[str]:
        _check_id(kind, "kind")
        ids = await self._call(lambda: self._redis.hkeys(self._rec(kind)))
        return sorted(i.decode() for i in ids)

    async def list_kinds(self) -> list[str]:
        kinds = await self._call(lambda: self._redis.smembers(self._kinds_key))
        return sorted(k.decode() for k in kinds)

    # --- blobs ----------------------------------------------------------------------------

    def blob_path(self, key: str) -> Path | None:
        return existing_blob(self.blobs_root, key)

    async def _mark_stored(self, key: str) -> None:
        """Mark the blob stored now, waiting out a delete under way (its tombstone)."""
        keys = [self._blobs_key, self._tombstone(key)]
        deadline = time.monotonic() + TOMBSTONE_MS / 1000 + 1
        while not await self._call(lambda: self._mark_blob(keys, [key, repr(time.time())])):
            if time.monotonic() > deadline:  # the tombstone outlived its TTL: Redis' clock
                raise StoreUnavailableError(redacted(self.url), "blob delete never finished")
            await asyncio.sleep(_TOMBSTONE_WAIT_S)

    async def put_blob(self, data: bytes) -> tuple[str, bool]:
        key = hashlib.sha256(data).hexdigest()
        await self._mark_stored(key)
        return key, await asyncio.to_thread(_place, blob_target(self.blobs_root, key), data)

    async def put_blob_file(self, path: str | os.PathLike[str]) -> tuple[str, bool]:
        """Hash the file in chunks, copy it beside its blob path and rename it into place (an
        upload of any size, never held in memory)."""
        source = Path(path)
        key = await asyncio.to_thread(hash_file, source)
        await self._mark_stored(key)
        return key, await asyncio.to_thread(_place, blob_target(self.blobs_root, key), source)

    async def get_blob(self, key: str) -> bytes | None:
        path = self.blob_path(key)
        if path is None:
            return None
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def blob_size(self, key: str) -> int | None:
        return await file_size(self.blob_path(key))

    async def open_blob(
        self, key: str, start: int = 0, count: int | None = None, chunk_bytes: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        async for chunk in read_range(self.blob_path(key), start, count, chunk_bytes):
            yield chunk

    async def list_blobs(self) -> list[tuple[str, float]]:
        stored = await self._call(
            lambda: self._redis.zrange(self._blobs_key, 0, -1, withscores=True)
        )
        return sorted((k.decode(), float(s)) for k, s in stored)

    async def delete_blob(self, key: str, stored_before_s: float | None = None) -> bool:
        """Claim the delete in Redis (the mark checked and removed, a tombstone left), unlink
        the file, lift the tombstone. True if a blob was deleted."""
        if not isinstance(key, str) or not SHA256.match(key):
            return False
        keys = [self._blobs_key, self._tombstone(key)]
        before = "" if stored_before_s is None else repr(float(stored_before_s))
        claimed = await self._call(
            lambda: self._claim_delete(keys, [key, before, TOMBSTONE_MS]), once=True
        )
        if not claimed:
            return False
        target = blob_target(self.blobs_root, key)
        try:
            existed = await asyncio.to_thread(_unlink, target)
        finally:
            await self._call(lambda: self._redis.delete(self._tombstone(key)))
        return existed

    # --- pub/sub --------------------------------------------------------------------------

    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        data = json.dumps(message, allow_nan=False)
        return int(await self._call(lambda: self._redis.publish(self._channel(channel), data)))

    async def subscribe(self, channel: str) -> AsyncIterator[dict[str, Any]]:
        """Messages published on `channel` by any process from now on; subscribes again by
        itself after a lost connection (backing off up to `RESUBSCRIBE_MAX_S`)."""
        name = self._channel(channel)
        backoff_s = 0.05
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(name)
                backoff_s = 0.05
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        decoded = json.loads(message["data"])
                    except ValueError:
                        log.warning("undecodable message", extra={"fields": {"channel": channel}})
                        continue
                    if isinstance(decoded, dict):
                        yield decoded
            except _UNAVAILABLE:
                log.warning(
                    "subscription lost; subscribing again", extra={"fields": {"channel": channel}}
                )
            finally:
                with contextlib.suppress(*_UNAVAILABLE, RuntimeError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, RESUBSCRIBE_MAX_S)

    async def subscribers(self, channel: str) -> int:
        """How many subscriptions `channel` has across every process (Redis `PUBSUB NUMSUB`)."""
        counts = await self._call(lambda: self._redis.pubsub_numsub(self._channel(channel)))
        return int(counts[0][1]) if counts else 0

    # --- tests and benchmarks -------------------------------------------------------------

    async def memory_bytes(self) -> int:
        """Redis' `used_memory` (what the sizing in the README is measured with)."""
        info = await self._call(lambda: self._redis.info("memory"))
        return int(info["used_memory"])

    async def clear(self) -> None:
        """Remove every key of this namespace (a test's or a benchmark's fresh start)."""

        async def wipe() -> None:
            async for key in self._redis.scan_iter(match=f"{self.namespace}:*", count=1000):
                await self._redis.delete(key)

        await self._call(wipe)


def _place(target: Path, source: bytes | Path) -> bool:
    """Write the blob file unless it is there; whether this call wrote it."""
    if target.exists():
        return False
    write_blob(target, source)
    return True


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
