"""Reading body files (GLB, glTF, OBJ, PLY) into a `body.source_mesh.SceneMesh`, source units.

Every format the importer accepts is parsed in `gltf/`: glTF through the one glTF reader
(`glb_reader`, which checks the file against its bytes), OBJ and PLY here. The result is one
triangle mesh in world space: glTF node transforms are applied and skinned meshes are posed by
their joints' rest transforms (which is what a viewer shows), so that vertex and joint
positions agree. Nothing is rescaled or re-oriented here: units and axes are the importer's
decisions.

UVs are returned in glTF's convention (v runs down the image); OBJ's v is flipped to match.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import trimesh

from spatialtwin.body.source_mesh import SceneMesh, SourceRig
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.glb_reader import GltfScene, parse_glb, parse_gltf_json
from spatialtwin.gltf.obj_text import decode_obj_text

SUPPORTED_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")


@dataclass(frozen=True)
class SceneLimits:
    """Ceilings of one body file (docs/limits.md). Import fits a rig to every vertex and
    skins it, so work grows with them; a scanned body has a few hundred thousand, hm08 19k."""

    max_vertices: int = 1_000_000
    max_triangles: int = 1_000_000


SCENE_DEFAULTS = SceneLimits()


def read_scene(data: bytes, filename: str, limits: SceneLimits = SCENE_DEFAULTS) -> SceneMesh:
    """Parse `data` according to `filename`'s suffix; bad or unknown files raise 4xx errors,
    files over `limits` 413 `too_many_vertices` / `too_many_triangles`."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in SUPPORTED_SUFFIXES:
        raise SpatialTwinError(
            "unsupported_format",
            f"cannot read {filename!r}: body files must be one of {', '.join(SUPPORTED_SUFFIXES)}",
            {"filename": filename, "supported": list(SUPPORTED_SUFFIXES)},
            status=415,
        )
    if not data:
        raise SpatialTwinError("corrupt_file", f"{filename!r} is empty", {"filename": filename})
    try:
        if suffix == ".glb":
            scene = _read_gltf(parse_glb(data, filename).scene())
        elif suffix == ".gltf":
            scene = _read_gltf(parse_gltf_json(data, filename).scene())
        elif suffix == ".obj":
            scene = _read_obj(data, filename)
        else:
            scene = _read_ply(data, filename)
    except SpatialTwinError:
        raise
    except Exception as exc:  # a parser's own failure means the bytes are not what they claim
        raise SpatialTwinError(
            "corrupt_file",
            f"{filename!r} could not be read as {suffix[1:].upper()}: {exc}",
            {"filename": filename},
        ) from exc
    return _checked(scene, filename, limits)


def _checked(scene: SceneMesh, filename: str, limits: SceneLimits) -> SceneMesh:
    if scene.faces.size == 0:
        raise SpatialTwinError(
            "no_triangles",
            f"{filename!r} holds no triangles: a body needs a surface mesh",
            {"filename": filename, "vertices": len(scene.vertices)},
            status=422,
        )
    for what, count, limit in (
        ("triangles", len(scene.faces), limits.max_triangles),
        ("vertices", len(scene.vertices), limits.max_vertices),
    ):
        if count > limit:
            raise SpatialTwinError(
                f"too_many_{what}",
                f"{filename!r} has {count} {what}; a body file may have at most {limit}",
                {"filename": filename, what: count, "limit": limit},
                status=413,
            )
    if not np.isfinite(scene.vertices).all():
        bad = int((~np.isfinite(scene.vertices).all(axis=1)).sum())
        raise SpatialTwinError(
            "non_finite_vertices",
            f"{filename!r} has {bad} vertices with NaN or infinite coordinates",
            {"filename": filename, "vertices": bad},
            status=422,
        )
    if scene.faces.min() < 0 or scene.faces.max() >= len(scene.vertices):
        raise SpatialTwinError(
            "corrupt_file",
            f"{filename!r} has faces that index missing vertices",
            {"filename": filename, "vertices": len(scene.vertices)},
        )
    return scene


# ---------------------------------------------------------------- glTF / GLB


def _read_gltf(scene: GltfScene) -> SceneMesh:
    """All primitives merged into one mesh; an unskinned part of a rigged file follows the root."""
    rig = None
    if scene.rig is not None:
        rig = SourceRig(scene.rig.names, scene.rig.parents, scene.rig.rest_world[:, :3, 3].copy())
    verts, faces, normals, uvs, groups, sj, sw = [], [], [], [], [], [], []
    group_names: list[str] = []
    offset = 0
    for prim in scene.primitives:
        n = len(prim.positions)
        if prim.skinned:
            sj.append(prim.joints)
            sw.append(prim.weights)
        elif rig is not None:
            sj.append(np.zeros((n, 4), dtype=np.int64))
            sw.append(np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)))
        verts.append(prim.positions)
        faces.append(prim.faces + offset)
        normals.append(prim.normals)
        uvs.append(prim.uvs)
        name = prim.mesh_name or prim.node_name or f"mesh{prim.mesh_index}"
        if name not in group_names:
            group_names.append(name)
        groups.append(np.full(len(prim.faces), group_names.index(name)))
        offset += n
    if not verts:
        return SceneMesh("gltf", np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    rigged = rig is not None and len(sj) == len(verts)
    return SceneMesh(
        format="gltf",
        vertices=np.concatenate(verts),
        faces=np.concatenate(faces),
        normals=np.concatenate(normals) if all(x is not None for x in normals) else None,
        uvs=np.concatenate(uvs) if all(x is not None for x in uvs) else None,
        face_groups=np.concatenate(groups),
        group_names=group_names,
        skin_joints=np.concatenate(sj) if rigged else None,
        skin_weights=np.concatenate(sw) if rigged else None,
        rig=rig if rigged else None,
    )


# ---------------------------------------------------------------- OBJ


def _read_obj(data: bytes, filename: str) -> SceneMesh:
    """Wavefront OBJ with groups (`g`/`o`), polygons fanned into triangles.

    trimesh's OBJ reader drops group membership, which the importer needs (a MakeHuman base
    mesh keeps its skin in group `body` beside helper geometry), so OBJ is parsed here.
    """
    text = decode_obj_text(data)  # UTF-8, or Latin-1 where a line is not (a comment's accent)
    positions: list[str] = []
    texcoords: list[str] = []
    corners: list[tuple[int, int]] = []  # (position index, texcoord index or -1)
    face_sizes: list[int] = []
    face_group: list[int] = []
    group_names: list[str] = ["default"]
    current = 0
    for line in text.splitlines():
        if line.startswith("v "):
            positions.append(line[2:])
        elif line.startswith("vt "):
            texcoords.append(line[3:])
        elif line.startswith("f "):
            items = line[2:].split()
            nv, nt = len(positions), len(texcoords)
            for item in items:
                parts = item.split("/")
                vi = int(parts[0])
                ti = int(parts[1]) if len(parts) > 1 and parts[1] else 0
                vi = vi - 1 if vi > 0 else nv + vi
                ti = -1 if ti == 0 else (ti - 1 if ti > 0 else nt + ti)
                corners.append((vi, ti))
            face_sizes.append(len(items))
            face_group.append(current)
        elif line.startswith(("g ", "o ")):
            name = line[2:].strip() or "default"
            if name not in group_names:
                group_names.append(name)
            current = group_names.index(name)
    if not positions:
        raise SpatialTwinError("no_triangles", f"{filename!r} has no vertices", status=422)
    pos = np.loadtxt(io.StringIO("\n".join(positions)), dtype=np.float64, ndmin=2)[:, :3]
    if not corners:
        return SceneMesh("obj", pos, np.zeros((0, 3), dtype=np.int64))
    corner_arr = np.asarray(corners, dtype=np.int64)
    if corner_arr[:, 0].min() < 0 or corner_arr[:, 0].max() >= len(pos):
        raise SpatialTwinError("corrupt_file", f"{filename!r} has faces indexing missing vertices")
    has_uv = texcoords and (corner_arr[:, 1] >= 0).all()
    # (1) One output vertex per distinct (position, texcoord) pair.
    key = corner_arr if has_uv else corner_arr[:, :1]
    uniq, corner_vertex = np.unique(key, axis=0, return_inverse=True)
    corner_vertex = corner_vertex.reshape(-1)
    vertices = pos[uniq[:, 0]]
    uvs = None
    if has_uv:
        tex = np.loadtxt(io.StringIO("\n".join(texcoords)), dtype=np.float64, ndmin=2)[:, :2]
        uvs = tex[uniq[:, 1]] * np.array([1.0, -1.0]) + np.array([0.0, 1.0])
    # (2) Fan each polygon into triangles.
    sizes = np.asarray(face_sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    tris_per_face = np.maximum(sizes - 2, 0)
    face_of_tri = np.repeat(np.arange(len(sizes)), tris_per_face)
    k = np.arange(len(face_of_tri)) - np.repeat(
        np.cumsum(tris_per_face) - tris_per_face, tris_per_face
    )
    s = starts[face_of_tri]
    tri = np.stack([s, s + k + 1, s + k + 2], axis=1)
    faces = corner_vertex[tri]
    return SceneMesh(
        format="obj",
        vertices=vertices,
        faces=faces,
        uvs=uvs,
        face_groups=np.asarray(face_group, dtype=np.int64)[face_of_tri],
        group_names=group_names,
        source_index=uniq[:, 0].astype(np.int64),
    )


# ---------------------------------------------------------------- PLY


def _read_ply(data: bytes, filename: str) -> SceneMesh:
    if not data.startswith(b"ply"):
        raise SpatialTwinError("corrupt_file", f"{filename!r} is not a PLY file (no 'ply' magic)")
    mesh = trimesh.load(io.BytesIO(data), file_type="ply", process=False, force="mesh")
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    uvs = None
    visual_uv = getattr(mesh.visual, "uv", None)
    if visual_uv is not None and len(visual_uv) == len(mesh.vertices):
        uvs = np.asarray(visual_uv, dtype=np.float64) * np.array([1.0, -1.0]) + [0.0, 1.0]
    return SceneMesh("ply", np.asarray(mesh.vertices, dtype=np.float64), faces, uvs=uvs)
