"""The one glTF reader (`gltf.glb_reader`) against hostile and hand-built files.

Every file here is assembled byte by byte in the test (a JSON chunk and a binary chunk framed
as the glTF 2.0 spec lays out), so what each one claims is known exactly. Expected values are
computed independently: normals through `np.linalg.inv(...).T` of the skin matrix, meshopt
payloads with the meshoptimizer library's own encoder, the truncated body from the real
CesiumMan.glb in ../shared/data.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import tracemalloc
from typing import Any

import meshoptimizer as mo
import numpy as np
import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.glb_reader import parse_glb, parse_gltf_json
from spatialtwin.gltf.read_glb import read_glb_scene
from spatialtwin.gltf.read_scene import read_scene
from tests.conftest import shared

FLOAT, UBYTE, USHORT, UINT, BYTE = 5126, 5121, 5123, 5125, 5120
TRIANGLE = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)


def glb(gltf: dict[str, Any], binary: bytes = b"") -> bytes:
    """A GLB container: 12-byte header, a padded JSON chunk, a padded BIN chunk."""
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    body = binary + b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + (8 + len(body) if body else 0)
    out = struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(text), b"JSON") + text
    if body:
        out += struct.pack("<I4s", len(body), b"BIN\0") + body
    return out


class Doc:
    """A glTF under construction: views appended to one binary buffer, accessors on them."""

    def __init__(self) -> None:
        self.bin = bytearray()
        self.gltf: dict[str, Any] = {
            "asset": {"version": "2.0"},
            "buffers": [{"byteLength": 0}],
            "bufferViews": [],
            "accessors": [],
            "meshes": [],
            "nodes": [],
            "scenes": [{"nodes": []}],
            "scene": 0,
        }

    def view(self, data: bytes, **extra: Any) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        self.gltf["bufferViews"].append(
            {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data), **extra}
        )
        self.bin.extend(data)
        self.gltf["buffers"][0]["byteLength"] = len(self.bin)
        return len(self.gltf["bufferViews"]) - 1

    def accessor(self, array: np.ndarray, comp: int, kind: str, **extra: Any) -> int:
        view = self.view(np.ascontiguousarray(array).tobytes())
        count = len(array)
        self.gltf["accessors"].append(
            {"bufferView": view, "componentType": comp, "count": count, "type": kind, **extra}
        )
        return len(self.gltf["accessors"]) - 1

    def mesh_node(self, attributes: dict[str, int], indices: int | None = None, **node: Any) -> int:
        prim: dict[str, Any] = {"attributes": attributes}
        if indices is not None:
            prim["indices"] = indices
        self.gltf["meshes"].append({"primitives": [prim]})
        self.gltf["nodes"].append({"mesh": len(self.gltf["meshes"]) - 1, **node})
        index = len(self.gltf["nodes"]) - 1
        self.gltf["scenes"][0]["nodes"].append(index)
        return index

    def bytes(self) -> bytes:
        return glb(self.gltf, bytes(self.bin))


def triangle_doc() -> Doc:
    doc = Doc()
    pos = doc.accessor(TRIANGLE, FLOAT, "VEC3")
    idx = doc.accessor(np.array([0, 1, 2], dtype=np.uint16), USHORT, "SCALAR")
    doc.mesh_node({"POSITION": pos}, idx)
    return doc


def refused(data: bytes, code: str = "corrupt_file", status: int = 400) -> SpatialTwinError:
    with pytest.raises(SpatialTwinError) as err:
        parse_glb(data, "hostile.glb").scene()
    assert err.value.code == code and err.value.status == status, err.value.message
    return err.value


# ---------------------------------------------------------------- a sound file reads back


def test_a_hand_built_triangle_reads_back_exactly():
    (prim,) = parse_glb(triangle_doc().bytes(), "t.glb").scene().primitives
    assert np.array_equal(prim.positions, TRIANGLE)
    assert prim.faces.tolist() == [[0, 1, 2]]


# ---------------------------------------------------------------- the container


def test_a_truncated_file_is_refused_by_its_declared_length():
    data = triangle_doc().bytes()
    err = refused(data[:-8])
    assert err.detail["declared_bytes"] == len(data)
    assert err.detail["present_bytes"] == len(data) - 8


def test_a_chunk_longer_than_the_file_is_refused():
    data = bytearray(triangle_doc().bytes())
    json_len = struct.unpack_from("<I", data, 12)[0]
    struct.pack_into("<I", data, 12 + 8 + json_len, 1 << 30)  # the BIN chunk claims 1 GiB
    refused(bytes(data))


def test_a_buffer_longer_than_its_binary_chunk_is_refused():
    doc = triangle_doc()
    doc.gltf["buffers"][0]["byteLength"] = len(doc.bin) + 4096
    err = refused(doc.bytes())
    assert err.detail["present_bytes"] < err.detail["declared_bytes"]


def test_nan_in_the_json_is_refused():
    doc = triangle_doc()
    doc.gltf["nodes"][0]["translation"] = [0.0, 0.0, 0.0]
    text = doc.bytes().replace(b"[0.0, 0.0, 0.0]", b"[NaN, 0.0, 0.0]")
    refused(text)


def test_a_non_boolean_normalized_flag_is_refused():
    doc = triangle_doc()
    doc.gltf["accessors"][0]["normalized"] = 0
    refused(doc.bytes())


# ---------------------------------------------------------------- the node graph


def test_a_node_cycle_is_refused():
    doc = triangle_doc()
    doc.gltf["nodes"] += [{"children": [2]}, {"children": [1]}]
    err = refused(doc.bytes())
    assert "cycle" in err.message and err.detail["nodes"] == [1, 2]


def test_a_node_that_is_its_own_child_is_refused():
    doc = triangle_doc()
    doc.gltf["nodes"][0]["children"] = [0]
    refused(doc.bytes())


def test_a_node_with_two_parents_is_refused():
    doc = triangle_doc()
    doc.gltf["nodes"] += [{"children": [0]}, {"children": [0]}]
    refused(doc.bytes())


def test_a_child_index_outside_the_nodes_is_refused():
    doc = triangle_doc()
    doc.gltf["nodes"][0]["children"] = [7]
    refused(doc.bytes())


# ---------------------------------------------------------------- views and accessors


def test_a_buffer_view_past_its_buffer_is_refused():
    doc = triangle_doc()
    doc.gltf["bufferViews"][0]["byteOffset"] = len(doc.bin) - 4
    refused(doc.bytes())


def test_an_accessor_past_its_view_is_refused():
    doc = triangle_doc()
    doc.gltf["accessors"][0]["byteOffset"] = 4
    err = refused(doc.bytes())
    assert err.detail["claimed_bytes"] > err.detail["view_bytes"]


def test_indices_beyond_the_vertices_are_refused():
    doc = Doc()
    pos = doc.accessor(TRIANGLE, FLOAT, "VEC3")
    idx = doc.accessor(np.array([0, 1, 3], dtype=np.uint16), USHORT, "SCALAR")
    doc.mesh_node({"POSITION": pos}, idx)
    refused(doc.bytes())


def test_an_external_buffer_is_refused_as_unsupported():
    doc = triangle_doc()
    doc.gltf["buffers"][0]["uri"] = "../../etc/passwd"
    refused(doc.bytes(), "unsupported_format", 415)


def test_a_required_extension_the_reader_cannot_decode_is_refused():
    doc = triangle_doc()
    doc.gltf["extensionsRequired"] = ["KHR_draco_mesh_compression"]
    refused(doc.bytes(), "unsupported_format", 415)


def huge_count_glb(with_view: bool) -> bytes:
    """A few hundred bytes whose one accessor claims 200 million vertices (2.4 GB of floats)."""
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 64}],
        "bufferViews": [{"buffer": 0, "byteLength": 64}],
        "accessors": [{"componentType": FLOAT, "count": 200_000_000, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    if with_view:
        gltf["accessors"][0]["bufferView"] = 0
    return glb(gltf, b"\0" * 64)


@pytest.mark.parametrize("with_view", [False, True], ids=["zero-filled", "on-a-view"])
def test_huge_claimed_counts_are_refused_before_allocating(with_view):
    data = huge_count_glb(with_view)
    assert len(data) < 500
    tracemalloc.start()
    started = time.perf_counter()
    try:
        refused(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes allocated for a {len(data)}-byte file"
    assert time.perf_counter() - started < 1.0


def test_a_meshopt_view_claiming_more_than_the_codec_can_give_is_refused():
    doc = Doc()
    packed = bytes(mo.encode_vertex_buffer(np.zeros((16, 16), np.uint8), 16, 16))
    comp = doc.view(packed)
    ext = {
        "buffer": 0,
        "byteOffset": doc.gltf["bufferViews"][comp]["byteOffset"],
        "byteLength": len(packed),
        "byteStride": 16,
        "count": 50_000_000,
        "mode": "ATTRIBUTES",
    }
    doc.gltf["bufferViews"].append(
        {
            "buffer": 0,
            "byteLength": 16 * 50_000_000,
            "byteStride": 16,
            "extensions": {"EXT_meshopt_compression": ext},
        }
    )
    doc.gltf["accessors"].append(
        {"bufferView": 1, "componentType": FLOAT, "count": 50_000_000, "type": "VEC3"}
    )
    doc.mesh_node({"POSITION": 0})
    doc.gltf["extensionsUsed"] = ["EXT_meshopt_compression"]
    tracemalloc.start()
    try:
        err = refused(doc.bytes())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.detail["claimed_bytes"] == 800_000_000
    assert peak < 1_000_000


# ---------------------------------------------------------------- sparse accessors


def test_a_sparse_accessor_replaces_the_listed_elements():
    doc = Doc()
    pos = doc.accessor(TRIANGLE, FLOAT, "VEC3")
    moved = np.array([[0.0, 0.0, 0.5]], dtype=np.float32)
    doc.gltf["accessors"][pos]["sparse"] = {
        "count": 1,
        "indices": {
            "bufferView": doc.view(np.array([2], np.uint16).tobytes()),
            "componentType": USHORT,
        },
        "values": {"bufferView": doc.view(moved.tobytes())},
    }
    doc.mesh_node({"POSITION": pos})
    (prim,) = parse_glb(doc.bytes(), "s.glb").scene().primitives
    expected = TRIANGLE.astype(np.float64)
    expected[2] = [0.0, 0.0, 0.5]
    assert np.array_equal(prim.positions, expected)


def test_a_sparse_accessor_without_a_view_starts_from_zeros():
    doc = Doc()
    values = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    doc.gltf["accessors"].append(
        {
            "componentType": FLOAT,
            "count": 3,
            "type": "VEC3",
            "sparse": {
                "count": 2,
                "indices": {
                    "bufferView": doc.view(np.array([1, 2], np.uint8).tobytes()),
                    "componentType": UBYTE,
                },
                "values": {"bufferView": doc.view(values.tobytes())},
            },
        }
    )
    doc.mesh_node({"POSITION": 0})
    (prim,) = parse_glb(doc.bytes(), "s.glb").scene().primitives
    assert np.array_equal(prim.positions, TRIANGLE)


@pytest.mark.parametrize("indices", [[2, 1], [1, 3]], ids=["not-increasing", "out-of-range"])
def test_bad_sparse_indices_are_refused(indices):
    doc = Doc()
    pos = doc.accessor(TRIANGLE, FLOAT, "VEC3")
    doc.gltf["accessors"][pos]["sparse"] = {
        "count": 2,
        "indices": {
            "bufferView": doc.view(np.array(indices, np.uint16).tobytes()),
            "componentType": USHORT,
        },
        "values": {"bufferView": doc.view(np.zeros((2, 3), np.float32).tobytes())},
    }
    doc.mesh_node({"POSITION": pos})
    refused(doc.bytes())


# ---------------------------------------------------------------- quantised and compressed


def test_quantised_attributes_are_dequantised_by_the_node_and_the_spec():
    doc = Doc()
    q = np.array([[0, 0, 0], [1000, 0, 0], [0, 1000, 0]], dtype=np.uint16)
    pos = doc.accessor(np.pad(q, ((0, 0), (0, 1))), USHORT, "VEC3")  # 8-byte rows
    doc.gltf["bufferViews"][-1]["byteStride"] = 8
    nrm = doc.accessor(np.array([[0, 0, 127, 0]] * 3, dtype=np.int8), BYTE, "VEC3", normalized=True)
    doc.gltf["bufferViews"][-1]["byteStride"] = 4
    uv = doc.accessor(
        np.array([[0, 0], [65535, 0], [0, 65535]], dtype=np.uint16), USHORT, "VEC2", normalized=True
    )
    doc.mesh_node(
        {"POSITION": pos, "NORMAL": nrm, "TEXCOORD_0": uv},
        scale=[0.001, 0.001, 0.001],
        translation=[0.0, 1.0, 0.0],
    )
    doc.gltf["extensionsRequired"] = ["KHR_mesh_quantization"]
    (prim,) = parse_glb(doc.bytes(), "q.glb").scene().primitives
    assert np.allclose(prim.positions, [[0, 1, 0], [1, 1, 0], [0, 2, 0]])
    assert np.allclose(prim.normals / np.linalg.norm(prim.normals, axis=1)[:, None], [0, 0, 1])
    assert np.allclose(prim.uvs, [[0, 0], [1, 0], [0, 1]])


def test_meshopt_compressed_views_round_trip_through_the_library_encoder():
    rng = np.random.default_rng(7)
    positions = rng.normal(size=(40, 4)).astype(np.float32)  # VEC3 + padding: 16-byte rows
    faces = np.array([[i, (i + 1) % 40, (i + 2) % 40] for i in range(0, 39, 3)], np.uint32)
    doc = Doc()
    vpack = bytes(mo.encode_vertex_buffer(positions.view(np.uint8), 40, 16))
    ipack = bytes(mo.encode_index_buffer(faces.ravel(), faces.size, 40))
    decoded_views = []
    for packed, stride, count, mode, length in (
        (vpack, 16, 40, "ATTRIBUTES", 640),
        (ipack, 4, faces.size, "TRIANGLES", faces.size * 4),
    ):
        src = doc.view(packed)
        ext = {
            "buffer": 0,
            "byteOffset": doc.gltf["bufferViews"][src]["byteOffset"],
            "byteLength": len(packed),
            "byteStride": stride,
            "count": count,
            "mode": mode,
        }
        view: dict[str, Any] = {
            "buffer": 0,
            "byteLength": length,
            "extensions": {"EXT_meshopt_compression": ext},
        }
        if mode == "ATTRIBUTES":
            view["byteStride"] = stride
        doc.gltf["bufferViews"].append(view)
        decoded_views.append(len(doc.gltf["bufferViews"]) - 1)
    doc.gltf["accessors"] += [
        {"bufferView": decoded_views[0], "componentType": FLOAT, "count": 40, "type": "VEC3"},
        {
            "bufferView": decoded_views[1],
            "componentType": UINT,
            "count": faces.size,
            "type": "SCALAR",
        },
    ]
    doc.mesh_node({"POSITION": 0}, 1)
    doc.gltf["extensionsUsed"] = doc.gltf["extensionsRequired"] = ["EXT_meshopt_compression"]
    (prim,) = parse_glb(doc.bytes(), "m.glb").scene().primitives
    assert np.array_equal(prim.positions, positions[:, :3].astype(np.float64))
    # The index codec may rotate a triangle's corners; each triangle must stay itself.
    assert sorted(map(sorted, prim.faces.tolist())) == sorted(map(sorted, faces.tolist()))


def test_garbage_in_a_meshopt_payload_is_refused_not_crashed_on():
    doc = Doc()
    src = doc.view(b"\xa0" + b"\x01" * 63)
    ext = {
        "buffer": 0,
        "byteOffset": doc.gltf["bufferViews"][src]["byteOffset"],
        "byteLength": 64,
        "byteStride": 16,
        "count": 40,
        "mode": "ATTRIBUTES",
    }
    doc.gltf["bufferViews"].append(
        {
            "buffer": 0,
            "byteLength": 640,
            "byteStride": 16,
            "extensions": {"EXT_meshopt_compression": ext},
        }
    )
    doc.gltf["accessors"].append(
        {"bufferView": 1, "componentType": FLOAT, "count": 40, "type": "VEC3"}
    )
    doc.mesh_node({"POSITION": 0})
    refused(doc.bytes())


# ---------------------------------------------------------------- skinned normals


def sheared_skin_glb(shear: np.ndarray, normals: np.ndarray) -> bytes:
    """One triangle skinned to one joint whose node matrix is `shear` (inverse bind: identity)."""
    doc = Doc()
    pos = doc.accessor(TRIANGLE, FLOAT, "VEC3")
    nrm = doc.accessor(normals.astype(np.float32), FLOAT, "VEC3")
    joints = doc.accessor(np.zeros((3, 4), np.uint8), UBYTE, "VEC4")
    weights = doc.accessor(np.tile(np.float32([1, 0, 0, 0]), (3, 1)), FLOAT, "VEC4")
    doc.mesh_node(
        {"POSITION": pos, "NORMAL": nrm, "JOINTS_0": joints, "WEIGHTS_0": weights}, skin=0
    )
    m = np.eye(4)
    m[:3, :3] = shear
    doc.gltf["nodes"].append({"name": "joint", "matrix": m.T.ravel().tolist()})
    doc.gltf["scenes"][0]["nodes"].append(1)
    doc.gltf["skins"] = [{"joints": [1]}]
    return doc.bytes()


SHEAR = np.array([[1.0, 0.8, 0.0], [0.0, 1.0, 0.0], [0.3, 0.0, 2.0]])


def test_skinned_normals_follow_the_inverse_transpose_of_a_sheared_skin():
    n = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.6, 0.0, 0.8]])
    data = sheared_skin_glb(SHEAR, n)
    expected_pos = TRIANGLE @ SHEAR.T
    expected_n = n @ np.linalg.inv(SHEAR)  # rows: (S⁻ᵀ nᵀ)ᵀ
    expected_n /= np.linalg.norm(expected_n, axis=1, keepdims=True)
    lod = read_glb_scene(data).meshes[0]
    assert np.allclose(lod.positions_m, expected_pos, atol=1e-6)
    assert np.allclose(lod.normals, expected_n, atol=1e-6)
    # The face normal of the sheared triangle stays perpendicular to its sheared edges.
    edges = expected_pos[1:] - expected_pos[0]
    assert np.abs(edges @ lod.normals[0]).max() < 1e-6
    # Body import reads the same file through the same reader.
    body = read_scene(data, "sheared.glb")
    got = body.normals / np.linalg.norm(body.normals, axis=1, keepdims=True)
    assert np.allclose(got, expected_n, atol=1e-6)
    assert np.allclose(body.vertices, expected_pos, atol=1e-6)


def test_the_shear_is_large_enough_that_a_plain_transform_would_fail():
    """Guard for the test above: transforming normals by S itself gives another answer."""
    n = np.array([0.0, 0.0, 1.0])
    plain = SHEAR @ n / np.linalg.norm(SHEAR @ n)
    right = np.linalg.inv(SHEAR).T @ n
    right /= np.linalg.norm(right)
    assert np.degrees(np.arccos(np.clip(plain @ right, -1, 1))) > 5.0


def test_joint_indices_beyond_the_skin_are_refused():
    doc = Doc()
    pos = doc.accessor(TRIANGLE, FLOAT, "VEC3")
    joints = doc.accessor(
        np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.uint8), UBYTE, "VEC4"
    )
    weights = doc.accessor(np.tile(np.float32([1, 0, 0, 0]), (3, 1)), FLOAT, "VEC4")
    doc.mesh_node({"POSITION": pos, "JOINTS_0": joints, "WEIGHTS_0": weights}, skin=0)
    doc.gltf["nodes"].append({"name": "joint"})
    doc.gltf["skins"] = [{"joints": [1]}]
    refused(doc.bytes())


# ---------------------------------------------------------------- embedded .gltf


def test_an_embedded_gltf_reads_like_its_glb():
    doc = triangle_doc()
    gltf = json.loads(json.dumps(doc.gltf))
    gltf["buffers"][0]["uri"] = (
        "data:application/octet-stream;base64," + base64.b64encode(bytes(doc.bin)).decode()
    )
    (prim,) = parse_gltf_json(json.dumps(gltf).encode(), "t.gltf").scene().primitives
    assert np.array_equal(prim.positions, TRIANGLE)


# ---------------------------------------------------------------- a truncated real body


def cesium_cut() -> bytes:
    data = shared("bodies", "CesiumMan.glb").read_bytes()
    return data[: int(len(data) * 0.45)]


def test_a_truncated_rigged_glb_is_refused_at_the_reader():
    data = shared("bodies", "CesiumMan.glb").read_bytes()
    assert parse_glb(data, "CesiumMan.glb").scene().rig is not None  # the whole file reads
    with pytest.raises(SpatialTwinError) as err:
        read_scene(cesium_cut(), "CesiumMan.glb")
    assert err.value.code == "corrupt_file" and err.value.status == 400
    assert "truncated" in err.value.message
    assert err.value.detail == {
        "filename": "CesiumMan.glb",
        "declared_bytes": len(data),
        "present_bytes": len(cesium_cut()),
    }


async def test_a_truncated_rigged_glb_upload_is_refused_and_leaves_no_twin(
    aiohttp_client, tmp_path
):
    from aiohttp import FormData

    from spatialtwin.server.app import create_app

    client = await aiohttp_client(create_app(tmp_path / "data", seed=False))
    rights = {
        "owner": {"model": "Cut Test", "agency": "North Models"},
        "license": {
            "id": "lic_cut",
            "channels": ["ecommerce"],
            "valid_from": "2026-01-01T00:00:00+00:00",
        },
        "consent": {"given_at": "2026-01-01T00:00:00+00:00"},
    }
    form = FormData()
    form.add_field("file", cesium_cut(), filename="CesiumMan.glb", content_type="model/gltf-binary")
    form.add_field("metadata", json.dumps(rights), content_type="application/json")
    r = await client.post("/api/v1/twins", data=form)
    assert r.status == 400, await r.text()
    body = await r.json()
    assert body["error"]["code"] == "corrupt_file"
    assert "truncated" in body["error"]["message"]
    r = await client.get("/api/v1/twins")
    assert r.status == 200
    listed = await r.json()
    twins = listed["twins"] if isinstance(listed, dict) else listed
    assert twins == []


def test_a_garment_glb_with_huge_claimed_counts_is_refused_before_trimesh_allocates():
    """Garment uploads go on to trimesh, which zero-fills accessors without a view (it took
    12 s and 1.6 GB for this file); the reader checks every accessor's claim first."""
    from spatialtwin.gltf.garment_io import read_garment_file

    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SpatialTwinError) as err:
            read_garment_file(huge_count_glb(with_view=False), "shirt.glb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.code == "corrupt_file" and err.value.status == 422
    assert peak < 1_000_000
    assert time.perf_counter() - started < 1.0
