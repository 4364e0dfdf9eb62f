"""Caches keyed by content and bounded by bytes: what services keep of bodies and meshes."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from spatialtwin.gltf.body_arrays import body_to_npz
from spatialtwin.rights.license import Rights
from spatialtwin.services.cache import ByteLRU, payload_bytes
from spatialtwin.services.context import Services
from spatialtwin.store.embedded import EmbeddedStore
from tests.conftest import HOSTILE_RIGHTS

SHA = re.compile(r"^[0-9a-f]{64}$")


def test_the_least_recently_used_entries_go_first_once_the_bytes_are_spent():
    cache = ByteLRU(max_bytes=1_000_000)
    arrays = {name: np.zeros(50_000) for name in "abc"}  # 400 kB each
    cache.put("a", arrays["a"])
    cache.put("b", arrays["b"])
    assert cache.get("a") is arrays["a"]  # a is now the most recently used
    cache.put("c", arrays["c"])  # 1.2 MB > 1 MB: b, the least recently used, goes
    assert "b" not in cache and cache.get("a") is arrays["a"] and "c" in cache
    assert cache.bytes == 800_000 == sum(payload_bytes(arrays[k]) for k in "ac")
    huge = np.zeros(200_000)  # 1.6 MB: larger than the whole cache, kept nowhere
    assert cache.put("huge", huge) is huge and "huge" not in cache and len(cache) == 2


def test_a_body_counts_its_arrays(average_body):
    counted = payload_bytes(average_body)
    arrays = average_body.vertices_m.nbytes + average_body.faces.nbytes
    assert arrays < counted < 20 * arrays  # its other arrays (normals, UVs, weights) too


async def test_a_twin_body_is_cached_under_its_blob_not_its_id(tmp_path, average_body):
    services = Services(EmbeddedStore(tmp_path))
    twin = await services.twins.create_from_body(
        "Mara", average_body, Rights.from_json(HOSTILE_RIGHTS), {}
    )
    first = await services.twins.body(twin)
    # A re-scan of the same person, 2 mm fuller: the same id now points at new body arrays.
    pushed = average_body.vertices_m + 0.002 * average_body.normals
    fuller = replace(average_body, vertices_m=pushed)
    key, _ = await services.store.put_blob(body_to_npz(fuller))
    rescanned = {**twin, "blobs": {**twin["blobs"], "body_npz": key}}
    got = await services.twins.body(rescanned)
    assert np.allclose(got.vertices_m, fuller.vertices_m)
    assert not np.allclose(got.vertices_m, first.vertices_m)
    assert await services.twins.body(twin) is first  # the old content keeps its entry
    assert set(services.cache.keys_held()) == {
        ("body", twin["blobs"]["body_npz"]),
        ("body", key),
    }
    assert all(SHA.match(k[1]) for k in services.cache.keys_held())
