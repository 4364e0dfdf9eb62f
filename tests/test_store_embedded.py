"""The embedded store: atomic records, content-addressed blobs, in-process pub/sub."""

from __future__ import annotations

import asyncio
import hashlib

from spatialtwin.store.embedded import EmbeddedStore


async def test_records_round_trip_and_list(tmp_path):
    store = EmbeddedStore(tmp_path)
    await store.put_record("twins", "a1", {"id": "a1", "height_m": 1.7})
    await store.put_record("twins", "b2", {"id": "b2", "height_m": 1.8})
    assert await store.get_record("twins", "a1") == {"id": "a1", "height_m": 1.7}
    assert [r["id"] for r in await store.list_records("twins")] == ["a1", "b2"]
    assert await store.delete_record("twins", "a1") is True
    assert await store.get_record("twins", "a1") is None
    assert not list(tmp_path.rglob("*.tmp"))


async def test_unsafe_ids_are_never_paths(tmp_path):
    store = EmbeddedStore(tmp_path / "data")
    assert await store.get_record("twins", "../../etc/passwd") is None
    assert store.blob_path("../x") is None


async def test_blobs_are_content_addressed_and_deduplicated(tmp_path):
    store = EmbeddedStore(tmp_path)
    data = b"glTF" + bytes(range(200))
    key, created = await store.put_blob(data)
    assert key == hashlib.sha256(data).hexdigest() and created
    again, created_again = await store.put_blob(data)
    assert again == key and not created_again
    assert await store.get_blob(key) == data
    assert store.blob_path(key).stat().st_size == len(data)
    assert store.snapshot() == {"records": 0, "blobs": 1}


async def test_pubsub_delivers_to_current_subscribers(tmp_path):
    store = EmbeddedStore(tmp_path)
    received = []

    async def listen():
        async for message in store.subscribe("twins"):
            received.append(message)
            if len(received) == 2:
                return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0)
    assert await store.publish("twins", {"n": 1}) == 1
    assert await store.publish("twins", {"n": 2}) == 1
    await asyncio.wait_for(task, 2)
    assert received == [{"n": 1}, {"n": 2}]
    assert await store.publish("twins", {"n": 3}) == 0
