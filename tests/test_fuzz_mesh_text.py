"""Fuzzing the readers of text and PLY meshes and MakeHuman's and BVH's formats: OBJ (body
import, garment ingest with its MTL, `.mhclo` authoring bodies), PLY (ASCII and binary),
`.mhclo`, `.mhskel`/`.mhw` and BVH.

Seeds are cut from the real files in ../shared/data (MakeHuman's hm08 base mesh with its
groups, a MakeHuman outfit, its `.mhclo`, the `standing01` and CMU 131_01 BVH clips) or made
from them by trimesh (the PLYs); mutations are line- and token-level (a number replaced by
`nan`, `1e999`, a huge or negative index, a line dropped, cut or repeated) and byte-level.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import trimesh
from hypothesis import given
from hypothesis import strategies as st

from spatialtwin.body.source_mesh import SceneMesh
from spatialtwin.garment.binding import ProxyBinding
from spatialtwin.garment.source import MeshSource
from spatialtwin.gltf.bvh import parse_bvh
from spatialtwin.gltf.garment_io import read_garment_file
from spatialtwin.gltf.makehuman import (
    HM08_VERTEX_COUNT,
    obj_vertex_positions,
    read_mhclo,
    read_mhskel,
    read_mhw,
)
from spatialtwin.gltf.obj_mesh import read_obj_blocks
from spatialtwin.gltf.read_scene import read_scene
from spatialtwin.tracking.mocap_clip import BvhClip
from tests.conftest import shared
from tests.fuzz_strategies import (
    FuzzInput,
    as_input,
    bvh_slice,
    dump_hostile_json,
    exercise,
    fuzz_settings,
    fuzz_summary,  # noqa: F401  (the per-parser summary at the end of the run)
    json_paths,
    mhclo_slice,
    mutated_bytes,
    mutated_json,
    mutated_lines,
    obj_slice,
)

MTL_HEADER = b"mtllib outfit.mtl\nusemtl cloth\n"


@cache
def obj_seeds() -> list[bytes]:
    body = shared("bodies", "base.obj").read_bytes()
    outfit = shared("garments", "female_sportsuit01.obj").read_bytes()
    return [obj_slice(body, 60), obj_slice(outfit, 150, MTL_HEADER)]


@cache
def ply_seeds() -> list[bytes]:
    """The outfit slice as PLY, ASCII and binary, written by trimesh (with its UVs)."""
    mesh = trimesh.load(io.BytesIO(obj_seeds()[1]), file_type="obj", process=False)
    return [
        trimesh.exchange.ply.export_ply(mesh, encoding="ascii"),
        trimesh.exchange.ply.export_ply(mesh, encoding="binary"),
    ]


@cache
def mhclo_seeds() -> list[bytes]:
    return [mhclo_slice(shared("garments", "female_sportsuit01.mhclo").read_bytes())]


@cache
def bvh_seeds() -> list[bytes]:
    return [
        shared("motion", "standing01.bvh").read_bytes(),
        bvh_slice(shared("motion", "scaled_131_01.bvh").read_bytes()),
    ]


@cache
def base_vertices() -> np.ndarray:
    return obj_vertex_positions(shared("bodies", "base.obj").read_bytes())


@cache
def mhskel_seed() -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    doc = json.loads(shared("bodies", "default.mhskel").read_bytes())
    return doc, json_paths(doc)


@cache
def mhw_seed() -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """default_weights.mhw with its first 8 bones (the reader's work is per bone)."""
    doc = json.loads(shared("bodies", "default_weights.mhw").read_bytes())
    doc["weights"] = dict(list(doc["weights"].items())[:8])
    return doc, json_paths(doc)


def text_input(seeds: Callable[[], list[bytes]], name: str) -> st.SearchStrategy[FuzzInput]:
    return as_input(
        lambda: st.one_of(mutated_lines(seeds()), mutated_bytes(seeds(), max_ops=2)), name
    )


# ---------------------------------------------------------------- what a valid result is


def check_body_mesh(mesh: SceneMesh) -> None:
    assert mesh.faces.size and np.isfinite(mesh.vertices).all()
    assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)
    if mesh.face_groups is not None:
        assert len(mesh.face_groups) == len(mesh.faces)
        assert mesh.face_groups.max() < len(mesh.group_names)


def check_garment_source(source: MeshSource) -> None:
    assert len(source.faces) and source.faces.min() >= 0
    assert source.faces.max() < len(source.vertices)
    assert len(source.face_material) == len(source.faces)
    if source.corner_uvs is not None:
        assert source.corner_uvs.shape == (len(source.faces), 3, 2)


def check_binding(binding: ProxyBinding) -> None:
    n = len(binding.ref_vertices)
    assert binding.ref_vertices.shape == (n, 3) and binding.weights.shape == (n, 3)
    assert binding.ref_vertices.min() >= 0 and binding.ref_vertices.max() < HM08_VERTEX_COUNT
    assert np.isfinite(binding.weights).all() and np.isfinite(binding.offsets).all()


def check_clip(clip: BvhClip) -> None:
    width = sum(len(c) for c in clip.channels)
    assert clip.values.shape[1:] == (width,) and np.isfinite(clip.values).all()
    assert len(clip.names) == len(clip.parents) == len(clip.offsets)
    assert all(-1 <= p < i for i, p in enumerate(clip.parents))
    assert clip.frame_time_s > 0


# ---------------------------------------------------------------- OBJ


@fuzz_settings(1.0)
@given(text_input(obj_seeds, "fuzz.obj"))
def test_body_import_reads_or_refuses_every_mutated_obj(item: FuzzInput) -> None:
    exercise(
        "read_scene(OBJ)", lambda: read_scene(item.data, "fuzz.obj"), len(item), check_body_mesh
    )


@fuzz_settings(1.0)
@given(text_input(obj_seeds, "fuzz.obj"))
def test_garment_ingest_reads_or_refuses_every_mutated_obj(item: FuzzInput) -> None:
    exercise(
        "garment_io.read_garment_file(OBJ)",
        lambda: read_garment_file(item.data, "fuzz.obj"),
        len(item),
        check_garment_source,
    )


@fuzz_settings(1.0)
@given(text_input(obj_seeds, "fuzz.obj"))
def test_the_corner_uv_obj_reader_reads_or_refuses_every_mutated_obj(item: FuzzInput) -> None:
    exercise("obj_mesh.read_obj_blocks", lambda: read_obj_blocks(item.data, "fuzz.obj"), len(item))


@fuzz_settings(1.0)
@given(text_input(obj_seeds, "fuzz.obj"))
def test_the_authoring_obj_reader_reads_or_refuses_every_mutated_obj(item: FuzzInput) -> None:
    def check(positions: np.ndarray) -> None:
        assert positions.ndim == 2 and positions.shape[1] == 3
        assert np.isfinite(positions).all()

    exercise(
        "makehuman.obj_vertex_positions", lambda: obj_vertex_positions(item.data), len(item), check
    )


# ---------------------------------------------------------------- PLY


@st.composite
def ply_with_mutated_header(draw: st.DrawFn) -> bytes:
    """A PLY whose header (element counts, property types, format) is edited, body kept."""
    seed = draw(st.sampled_from(ply_seeds()))
    head, sep, body = seed.partition(b"end_header\n")
    lines = head.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    words = lines[i].split(b" ")
    k = draw(st.integers(0, len(words) - 1))
    words[k] = draw(
        st.sampled_from(
            [
                b"0",
                b"1",
                b"-1",
                b"4294967295",
                b"2147483648",
                b"99999999999999999999",
                b"nan",
                b"double",
                b"uchar",
                b"int",
                b"uint",
                b"list",
                b"binary_big_endian",
                b"binary_little_endian",
                b"ascii",
                b"vertex",
                b"face",
                b"x",
                b"",
            ]
        )
    )
    lines[i] = b" ".join(words)
    return b"\n".join(lines) + sep + body


def ply_input() -> st.SearchStrategy[FuzzInput]:
    return as_input(
        lambda: st.one_of(
            ply_with_mutated_header(),
            mutated_bytes(ply_seeds(), hot=512),
            mutated_lines(ply_seeds()),
        ),
        "fuzz.ply",
    )


@fuzz_settings(1.0)
@given(ply_input())
def test_body_import_reads_or_refuses_every_mutated_ply(item: FuzzInput) -> None:
    exercise(
        "read_scene(PLY)", lambda: read_scene(item.data, "fuzz.ply"), len(item), check_body_mesh
    )


@fuzz_settings(1.0)
@given(ply_input())
def test_garment_ingest_reads_or_refuses_every_mutated_ply(item: FuzzInput) -> None:
    exercise(
        "garment_io.read_garment_file(PLY)",
        lambda: read_garment_file(item.data, "fuzz.ply"),
        len(item),
        check_garment_source,
    )


# ---------------------------------------------------------------- MakeHuman


@fuzz_settings(1.0)
@given(text_input(mhclo_seeds, "fuzz.mhclo"))
def test_the_mhclo_reader_reads_or_refuses_every_mutated_mhclo(item: FuzzInput) -> None:
    exercise("makehuman.read_mhclo", lambda: read_mhclo(item.data), len(item), check_binding)


@st.composite
def mutated_json_text(draw: st.DrawFn, seed: tuple[dict[str, Any], list[tuple[Any, ...]]]) -> bytes:
    doc, paths = seed
    return dump_hostile_json(draw(mutated_json(doc, paths)))


@fuzz_settings(0.5)
@given(as_input(lambda: mutated_json_text(mhskel_seed()), "fuzz.mhskel"))
def test_the_mhskel_reader_reads_or_refuses_every_mutated_skeleton(item: FuzzInput) -> None:
    exercise("makehuman.read_mhskel", lambda: read_mhskel(item.data, base_vertices()), len(item))


@fuzz_settings(0.5)
@given(as_input(lambda: mutated_json_text(mhw_seed()), "fuzz.mhw"))
def test_the_mhw_reader_reads_or_refuses_every_mutated_weights_file(item: FuzzInput) -> None:
    bones = list(mhw_seed()[0]["weights"])
    exercise(
        "makehuman.read_mhw",
        lambda: read_mhw(item.data, bones, HM08_VERTEX_COUNT),
        len(item),
    )


# ---------------------------------------------------------------- BVH


@fuzz_settings(1.0)
@given(text_input(bvh_seeds, "fuzz.bvh"))
def test_the_bvh_reader_reads_or_refuses_every_mutated_clip(item: FuzzInput) -> None:
    text = item.data.decode("latin-1")
    exercise("bvh.parse_bvh", lambda: parse_bvh(text), len(item), check_clip)
