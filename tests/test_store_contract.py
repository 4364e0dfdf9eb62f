"""One contract, two stores: every test here runs on `EmbeddedStore` and on `RedisStore` (a real
`redis-server`, tests/redis_server.py), so the fleet's store and the default cannot drift.

Records: create-only refusal, compare-and-set by revision (no lost update among concurrent
writers), listing by kind and id, unsafe ids refused. Blobs: content-addressed, deduplicated,
read whole, by range and from a local file, `stored_at_s` renewed by a put, and a conditional
delete that never removes a blob stored after the deleter's cutoff, even racing the put.
Pub/sub: current subscribers only, in order. What only one store has (pub/sub across
processes) is tested at the end, for that store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from spatialtwin.errors import RecordChangedError, RecordExistsError
from spatialtwin.store.base import Store
from spatialtwin.store.embedded import EmbeddedStore
from spatialtwin.store.redis_store import RedisStore

DB = 1  # this module's Redis database


async def _open(kind: str, tmp_path, request) -> Store:
    if kind == "embedded":
        return EmbeddedStore(tmp_path / "data")
    server = request.getfixturevalue("redis_server")
    return RedisStore(
        server.url(DB), blobs=tmp_path / "blobs", namespace=f"t{uuid.uuid4().hex[:10]}"
    )


@pytest.fixture(params=["embedded", "redis"])
async def store(request, tmp_path) -> AsyncIterator[Store]:
    opened = await _open(request.param, tmp_path, request)
    opened.second = lambda: _second(opened, tmp_path)  # type: ignore[attr-defined]
    yield opened
    if isinstance(opened, RedisStore):
        await opened.clear()
    await opened.close()


def _second(store: Store, tmp_path) -> Store:
    """Another handle on the same data: another server of the fleet, or another process on
    the data directory."""
    if isinstance(store, RedisStore):
        return RedisStore(store.url, blobs=store.blobs_root, namespace=store.namespace)
    return EmbeddedStore(tmp_path / "data")


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- records ------------------------------------------------------------------------------


async def test_records_round_trip_list_and_delete(store):
    await store.put_record("twins", "b2", {"id": "b2", "height_m": 1.8})
    await store.put_record("twins", "a1", {"id": "a1", "height_m": 1.7, "tags": ["x"]})
    await store.put_record("looks", "l1", {"id": "l1"})
    assert await store.get_record("twins", "a1") == {"id": "a1", "height_m": 1.7, "tags": ["x"]}
    assert [r["id"] for r in await store.list_records("twins")] == ["a1", "b2"]
    assert await store.list_ids("twins") == ["a1", "b2"]
    assert {"looks", "twins"} <= set(await store.list_kinds())
    assert await store.list_records("fabrics") == [] and await store.list_ids("fabrics") == []
    assert await store.delete_record("twins", "a1") is True
    assert await store.delete_record("twins", "a1") is False
    assert await store.get_record("twins", "a1") is None
    assert await store.get_record_revision("twins", "a1") is None
    assert await store.list_ids("twins") == ["b2"]


async def test_records_and_ids_list_in_the_same_order_by_id(store):
    """`a-b` sorts before `a.json`'s name but after the id `a`: both stores order by id."""
    for record_id in ("a-b", "a", "a.c", "B", "a_1"):
        await store.put_record("garments", record_id, {"id": record_id})
    ids = await store.list_ids("garments")
    assert ids == sorted(["a-b", "a", "a.c", "B", "a_1"]) == ["B", "a", "a-b", "a.c", "a_1"]
    assert [r["id"] for r in await store.list_records("garments")] == ids


async def test_a_record_written_by_one_handle_is_read_by_another(store):
    other = store.second()
    try:
        await store.put_record("garments", "g1", {"id": "g1", "sku": "S-1"})
        assert await other.get_record("garments", "g1") == {"id": "g1", "sku": "S-1"}
        got, revision = await other.get_record_revision("garments", "g1")
        await other.replace_record("garments", "g1", {**got, "sku": "S-2"}, revision)
        assert (await store.get_record("garments", "g1"))["sku"] == "S-2"
    finally:
        await other.close()


async def test_create_refuses_a_taken_id_and_changes_nothing(store):
    revision = await store.create_record("jobs", "j1", {"id": "j1", "status": "queued"})
    assert (await store.get_record_revision("jobs", "j1"))[1] == revision
    with pytest.raises(RecordExistsError):
        await store.create_record("jobs", "j1", {"id": "j1", "status": "forged"})
    assert await store.get_record_revision("jobs", "j1") == (
        {"id": "j1", "status": "queued"},
        revision,
    )


async def test_of_concurrent_creates_of_one_id_exactly_one_wins(store):
    async def create(n: int) -> int | None:
        try:
            await store.create_record("jobs", "race", {"id": "race", "by": n})
        except RecordExistsError:
            return None
        return n

    won = [n for n in await asyncio.gather(*(create(n) for n in range(12))) if n is not None]
    assert len(won) == 1
    assert (await store.get_record("jobs", "race"))["by"] == won[0]


async def test_replace_is_compare_and_set_on_the_revision(store):
    first = await store.create_record("twins", "t1", {"id": "t1", "n": 0})
    second = await store.replace_record("twins", "t1", {"id": "t1", "n": 1}, first)
    assert second != first
    assert await store.get_record_revision("twins", "t1") == ({"id": "t1", "n": 1}, second)
    with pytest.raises(RecordChangedError):  # a writer that read the first version
        await store.replace_record("twins", "t1", {"id": "t1", "n": 99}, first)
    assert await store.get_record("twins", "t1") == {"id": "t1", "n": 1}
    # equal content, equal revision
    assert await store.replace_record("twins", "t1", {"n": 1, "id": "t1"}, second) == second
    await store.delete_record("twins", "t1")
    with pytest.raises(RecordChangedError):  # a deleted record is changed too
        await store.replace_record("twins", "t1", {"id": "t1", "n": 2}, second)
    assert await store.get_record("twins", "t1") is None


async def test_concurrent_read_modify_write_loses_no_update(store):
    """Twenty writers over two handles each add themselves to one record by compare-and-set
    (read, change, replace; read again when refused): every one of them is in the end."""
    other = store.second()
    await store.create_record("lod_files", "f", {"owners": []})

    async def add(handle: Store, name: str) -> int:
        refused = 0
        while True:
            record, revision = await handle.get_record_revision("lod_files", "f")
            await asyncio.sleep(0)  # let the others read the same revision
            try:
                await handle.replace_record(
                    "lod_files", "f", {"owners": [*record["owners"], name]}, revision
                )
                return refused
            except RecordChangedError:
                refused += 1

    try:
        refusals = await asyncio.gather(
            *(add(store if n % 2 else other, f"w{n:02d}") for n in range(20))
        )
    finally:
        await other.close()
    owners = (await store.get_record("lod_files", "f"))["owners"]
    assert sorted(owners) == [f"w{n:02d}" for n in range(20)]
    assert sum(refusals) > 0  # the writers did collide: the refusals kept every change


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a/b", ".hidden", "", "x" * 129, "a..b"])
async def test_unsafe_ids_are_refused_everywhere(store, bad):
    assert await store.get_record("twins", bad) is None
    assert await store.get_record_revision("twins", bad) is None
    assert await store.delete_record("twins", bad) is False
    with pytest.raises(ValueError):
        await store.put_record("twins", bad, {"id": bad})
    with pytest.raises(ValueError):
        await store.create_record(bad, "ok", {})
    with pytest.raises(ValueError):
        await store.list_records(bad)
    assert store.blob_path(bad) is None
    assert await store.list_ids("twins") == []


# --- blobs --------------------------------------------------------------------------------


async def test_blobs_are_content_addressed_deduplicated_and_readable_every_way(store, tmp_path):
    data = b"glTF" + bytes(range(256)) * 40
    key, created = await store.put_blob(data)
    assert key == hashlib.sha256(data).hexdigest() and created
    assert await store.put_blob(data) == (key, False)
    assert await store.get_blob(key) == data
    assert await store.blob_size(key) == len(data)
    path = store.blob_path(key)
    assert path is not None and path.read_bytes() == data
    assert path.parent.parent == store.blob_root() and path.parent.name == key[:2]
    parts = [c async for c in store.open_blob(key, 1000, 5000, chunk_bytes=1024)]
    assert b"".join(parts) == data[1000:6000] and max(len(p) for p in parts) == 1024
    assert b"".join([c async for c in store.open_blob(key, len(data) - 7)]) == data[-7:]
    assert [c async for c in store.open_blob("0" * 64)] == []
    assert await store.get_blob("0" * 64) is None and await store.blob_size("0" * 64) is None
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"an upload " * 1000)
    file_key, file_created = await store.put_blob_file(upload)
    assert file_key == hashlib.sha256(upload.read_bytes()).hexdigest() and file_created
    assert await store.put_blob_file(upload) == (file_key, False)
    assert await store.get_blob(file_key) == upload.read_bytes()
    assert {k for k, _ in await store.list_blobs()} == {key, file_key}


async def test_a_put_marks_the_blob_stored_now(store):
    before_s = time.time()
    key, _ = await store.put_blob(b"level bytes")
    [(listed, first_s)] = await store.list_blobs()
    assert listed == key and before_s - 1 <= first_s <= time.time() + 1
    await asyncio.sleep(0.05)
    assert (await store.put_blob(b"level bytes"))[1] is False
    [(_, again_s)] = await store.list_blobs()
    assert again_s > first_s


async def test_a_conditional_delete_spares_a_blob_stored_after_its_cutoff(store):
    key, _ = await store.put_blob(b"old upload")
    cutoff_s = time.time()
    await asyncio.sleep(0.05)
    await store.put_blob(b"old upload")  # someone stored it again after the cutoff
    assert await store.delete_blob(key, stored_before_s=cutoff_s) is False
    assert await store.get_blob(key) == b"old upload"
    assert await store.delete_blob(key, stored_before_s=time.time() + 1) is True
    assert await store.get_blob(key) is None and store.blob_path(key) is None
    assert await store.list_blobs() == []
    assert await store.delete_blob(key) is False
    other, _ = await store.put_blob(b"another")
    assert await store.delete_blob(other) is True  # unconditional
    assert await store.get_blob(other) is None


async def test_a_put_racing_a_conditional_delete_is_never_lost(store):
    """The deleter decided the blob was unused before `cutoff`; a put after that, racing the
    delete, must leave the blob there, whichever runs first."""
    other = store.second()
    try:
        for n in range(25):
            data = f"upload {n}".encode()
            key, _ = await store.put_blob(data)
            cutoff_s = time.time()
            deleted, (put_key, _) = await asyncio.gather(
                store.delete_blob(key, stored_before_s=cutoff_s), other.put_blob(data)
            )
            assert put_key == key
            assert await store.get_blob(key) == data, (n, deleted)
            assert key in {k for k, _ in await store.list_blobs()}
    finally:
        await other.close()


# --- pub/sub and the rest -----------------------------------------------------------------


async def _listen(store: Store, channel: str, into: list[dict[str, Any]], until: int) -> None:
    async with contextlib.aclosing(store.subscribe(channel)) as messages:
        async for message in messages:
            if message.get("probe"):
                continue
            into.append(message)
            if len(into) == until:
                return


async def _subscribed(store: Store, channel: str, listeners: int) -> None:
    """Wait until `listeners` subscriptions hear `channel` (a Redis subscription is made on
    the server, a round trip after the generator starts): probes they skip."""
    await eventually(lambda: _probe(store, channel, listeners))


async def _probe(store: Store, channel: str, listeners: int) -> bool:
    return await store.publish(channel, {"probe": True}) >= listeners


async def test_pubsub_delivers_to_current_subscribers_in_order(store):
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    elsewhere: list[dict[str, Any]] = []
    tasks = [
        asyncio.create_task(_listen(store, "twins", first, 3)),
        asyncio.create_task(_listen(store, "twins", second, 3)),
        asyncio.create_task(_listen(store, "mirror_devices", elsewhere, 1)),
    ]
    await _subscribed(store, "twins", 2)
    await _subscribed(store, "mirror_devices", 1)
    for n in range(3):
        assert await store.publish("twins", {"event": "license_changed", "n": n}) == 2
    await asyncio.wait_for(asyncio.gather(*tasks[:2]), 5)
    assert first == second == [{"event": "license_changed", "n": n} for n in range(3)]
    assert elsewhere == []
    tasks[2].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await tasks[2]
    await eventually(lambda: _nobody_hears(store, "twins"))
    await eventually(lambda: _nobody_hears(store, "mirror_devices"))


async def _nobody_hears(store: Store, channel: str) -> bool:
    return await store.publish(channel, {"probe": True}) == 0


async def test_the_scratch_dir_is_cleared_of_dead_writers_leftovers(store, tmp_path):
    scratch = store.scratch_dir()
    assert scratch is not None and scratch.is_dir()
    dead = scratch / f"upload-{2**22 + 12345}-abcd.part"  # no such pid
    dead.write_bytes(b"half an upload")
    mine = scratch / f"upload-{os.getpid()}-live.part"
    mine.write_bytes(b"in flight")
    again = store.second()
    try:
        assert not dead.exists() and mine.exists()
    finally:
        mine.unlink()
        await again.close()


async def test_redis_pubsub_reaches_another_process_handle(redis_server, tmp_path, request):
    """What the embedded store cannot do (its pub/sub is in-process): a message published on
    one server's store reaches a subscriber on another's."""
    a = await _open("redis", tmp_path, request)
    b = RedisStore(a.url, blobs=a.blobs_root, namespace=a.namespace)
    got: list[dict[str, Any]] = []
    try:
        task = asyncio.create_task(_listen(b, "twins", got, 1))
        await eventually(lambda: _subscribers(b, "twins"))
        assert await a.publish("twins", {"event": "license_changed", "twinId": "t"}) == 1
        await asyncio.wait_for(task, 5)
        assert got == [{"event": "license_changed", "twinId": "t"}]
        # another database of the same Redis is another store: it hears nothing
        c = RedisStore(redis_server.url(DB + 1), blobs=tmp_path / "c", namespace=a.namespace)
        assert await c.publish("twins", {"event": "x"}) == 0
        await c.close()
    finally:
        await a.clear()
        await a.close()
        await b.close()


async def _subscribers(store: RedisStore, channel: str) -> bool:
    return await store.subscribers(channel) == 1


async def test_redis_unreachable_is_a_503_naming_the_url(tmp_path):
    from spatialtwin.errors import StoreUnavailableError
    from tests.redis_server import free_port

    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    store = RedisStore(url, blobs=tmp_path / "blobs", socket_timeout_s=1)
    try:
        with pytest.raises(StoreUnavailableError) as err:
            await store.check()
        assert err.value.status == 503 and err.value.code == "store_unavailable"
        assert "127.0.0.1" in err.value.message and "secret" not in err.value.message
        with pytest.raises(StoreUnavailableError):
            await store.put_record("twins", "a", {})
    finally:
        await store.close()


def test_an_event_log_is_refused_clearly_where_a_store_cannot_keep_one(tmp_path):
    """The default event log lies beside a store's local blobs; a bad name, or a store with no
    local folder, is a refusal with a code (never NotImplementedError)."""
    from spatialtwin.errors import SpatialTwinError
    from spatialtwin.store.embedded import EmbeddedStore

    class NoLocalFiles(EmbeddedStore):
        def blob_root(self):
            return None

    store = NoLocalFiles(tmp_path)
    with pytest.raises(SpatialTwinError) as bad_name:
        super(EmbeddedStore, store).event_log("../usage")
    assert bad_name.value.code == "invalid_stream"
    with pytest.raises(SpatialTwinError) as none:
        super(EmbeddedStore, store).event_log("usage")
    assert none.value.code == "event_log_unavailable" and none.value.status == 503
