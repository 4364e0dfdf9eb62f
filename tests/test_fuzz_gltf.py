"""Fuzzing every reader of uploaded glTF: the one glTF reader (GLB and embedded .gltf), LOD's
scene reader, body import and garment ingest (which hands the checked file on to trimesh).

Seeds are the real CesiumMan.glb (skinned, textured, 19 joints) and what the project's own
LOD writer makes of it (KHR_mesh_quantization with EXT_meshopt_compression views, and the
same quantised level uncompressed), as GLB and as a .gltf with a data-URI buffer. Inputs are
those seeds mutated byte by byte and field by field in their JSON chunk (see
`tests/fuzz_strategies.py`); the property is `exercise`'s: a usable scene or a 4xx
`SpatialTwinError`, within the time and memory limits.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from spatialtwin.body.source_mesh import SceneMesh
from spatialtwin.garment.source import MeshSource
from spatialtwin.gltf.garment_io import read_garment_file
from spatialtwin.gltf.glb_reader import GltfScene, parse_glb, parse_gltf_json
from spatialtwin.gltf.level_glb import PositionGrid, write_level
from spatialtwin.gltf.read_glb import read_glb_scene
from spatialtwin.gltf.read_scene import read_scene
from spatialtwin.lod.scene import LodScene
from tests.conftest import shared
from tests.fuzz_strategies import (
    GLTF_VOCABULARY,
    FuzzInput,
    as_input,
    dump_hostile_json,
    exercise,
    fuzz_settings,
    fuzz_summary,  # noqa: F401  (the per-parser summary at the end of the run)
    json_paths,
    mutated_bytes,
    mutated_json,
    pack_glb,
    split_glb,
)


@cache
def cesium() -> bytes:
    return shared("bodies", "CesiumMan.glb").read_bytes()


@cache
def levels() -> tuple[bytes, bytes]:
    """CesiumMan as the LOD writer's level 0: meshopt-compressed, and plain quantised."""
    scene = read_glb_scene(cesium(), "cesium")
    grid = PositionGrid.for_scene(scene)
    compressed = write_level(scene, grid, compress=True, fallback_uri="fallback.bin").glb
    plain = write_level(scene, grid, compress=False).glb
    return compressed, plain


@cache
def seeds() -> list[bytes]:
    return [cesium(), *levels()]


@cache
def json_seeds() -> list[tuple[dict[str, Any], bytes, list[tuple[Any, ...]]]]:
    """(JSON chunk, BIN chunk, every path into the JSON) of each GLB seed."""
    out = []
    for data in seeds():
        doc, binary = split_glb(data)
        out.append((doc, binary, json_paths(doc)))
    return out


@st.composite
def glb_with_mutated_json(draw: st.DrawFn) -> bytes:
    doc, binary, paths = draw(st.sampled_from(json_seeds()))
    edited = draw(mutated_json(doc, paths, GLTF_VOCABULARY))
    return pack_glb(dump_hostile_json(edited), binary)


@st.composite
def gltf_with_mutated_json(draw: st.DrawFn) -> bytes:
    """A .gltf whose buffer 0 is the seed's BIN chunk as a data URI, its JSON mutated."""
    doc, binary, paths = draw(st.sampled_from(json_seeds()))
    doc = json.loads(json.dumps(doc))
    uri = "data:application/octet-stream;base64," + base64.b64encode(binary).decode()
    doc["buffers"][0]["uri"] = uri
    edited = draw(mutated_json(doc, paths, GLTF_VOCABULARY))
    return dump_hostile_json(edited)


def any_glb() -> st.SearchStrategy[bytes]:
    return st.one_of(mutated_bytes(seeds()), glb_with_mutated_json())


# ---------------------------------------------------------------- what a valid result is


def check_gltf_scene(scene: GltfScene) -> None:
    joints = len(scene.rig.nodes) if scene.rig is not None else 0
    for p in scene.primitives:
        n = len(p.positions)
        assert p.positions.shape == (n, 3) and p.positions.dtype == np.float64
        assert p.faces.ndim == 2 and p.faces.shape[1] == 3
        assert p.faces.size == 0 or (p.faces.min() >= 0 and p.faces.max() < n)
        assert p.normals is None or p.normals.shape == (n, 3)
        assert p.uvs is None or p.uvs.shape == (n, 2)
        if p.joints is not None:
            assert p.weights is not None and p.weights.shape == p.joints.shape == (n, 4)
            assert p.joints.min(initial=0) >= 0 and p.joints.max(initial=0) < joints


def check_lod_scene(scene: LodScene) -> None:
    assert scene.meshes
    for m in scene.meshes:
        n = len(m.positions_m)
        assert m.faces.size == 0 or (m.faces.min() >= 0 and m.faces.max() < n)
        assert m.normals.shape == (n, 3)


def check_body_mesh(mesh: SceneMesh) -> None:
    assert mesh.faces.size and np.isfinite(mesh.vertices).all()
    assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)
    if mesh.skin_joints is not None:
        assert mesh.rig is not None and mesh.skin_joints.max() < len(mesh.rig.joint_names)


def check_garment_source(source: MeshSource) -> None:
    assert len(source.faces) and source.faces.min() >= 0
    assert source.faces.max() < len(source.vertices)
    assert len(source.face_material) == len(source.faces)
    assert source.face_material.max() < max(len(source.materials), 1)


# ---------------------------------------------------------------- the readers


def _glb_reader(data: bytes) -> GltfScene:
    doc = parse_glb(data, "fuzz.glb")
    doc.check_accessors()
    return doc.scene()


@fuzz_settings(2.0)
@given(as_input(any_glb, "fuzz.glb"))
def test_the_glb_reader_reads_or_refuses_every_mutated_glb(item: FuzzInput) -> None:
    exercise("glb_reader.parse_glb", lambda: _glb_reader(item.data), len(item), check_gltf_scene)


@fuzz_settings(1.0)
@given(as_input(gltf_with_mutated_json, "fuzz.gltf"))
def test_the_gltf_reader_reads_or_refuses_every_mutated_embedded_gltf(item: FuzzInput) -> None:
    exercise(
        "glb_reader.parse_gltf_json",
        lambda: parse_gltf_json(item.data, "fuzz.gltf").scene(),
        len(item),
        check_gltf_scene,
    )


@fuzz_settings(1.0)
@given(as_input(any_glb, "fuzz.glb"))
def test_the_lod_reader_reads_or_refuses_every_mutated_glb(item: FuzzInput) -> None:
    exercise(
        "read_glb.read_glb_scene",
        lambda: read_glb_scene(item.data, "fuzz"),
        len(item),
        check_lod_scene,
    )


@fuzz_settings(1.0)
@given(st.one_of(as_input(any_glb, "fuzz.glb"), as_input(gltf_with_mutated_json, "fuzz.gltf")))
def test_body_import_reads_or_refuses_every_mutated_gltf(item: FuzzInput) -> None:
    exercise(
        "read_scene(glTF)",
        lambda: read_scene(item.data, item.name),
        len(item),
        check_body_mesh,
    )


@fuzz_settings(0.7)
@given(as_input(lambda: st.one_of(mutated_bytes([cesium()]), glb_with_mutated_json()), "fuzz.glb"))
def test_garment_ingest_reads_or_refuses_every_mutated_glb(item: FuzzInput) -> None:
    exercise(
        "garment_io.read_garment_file(glTF)",
        lambda: read_garment_file(item.data, item.name),
        len(item),
        check_garment_source,
    )
