"""Reading body files (GLB, glTF, OBJ, PLY) into plain arrays, in the source's own units.

Every format the importer accepts is parsed here and nowhere else. The result is one triangle
mesh in world space: glTF node transforms are applied and skinned meshes are posed by their
joints' rest transforms (which is what a viewer shows), so that vertex and joint positions agree.
Nothing is rescaled or re-oriented here: units and axes are the importer's decisions.

UVs are returned in glTF's convention (v runs down the image); OBJ's v is flipped to match.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
import pygltflib as g
import trimesh
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.errors import SpatialTwinError

SUPPORTED_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")

_COMPONENT_DTYPES = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_TYPE_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_TRIANGLES = 4


@dataclass
class SourceRig:
    """A source file's skeleton: joint names, parent indices (-1 for roots), rest positions."""

    joint_names: list[str]
    parents: NDArray[np.int64]
    rest_positions: NDArray[np.float64]  # (J, 3) world space, source units


@dataclass
class SceneMesh:
    """One triangle mesh gathered from a file, world space, source units.

    `weld_map` maps each vertex to the first vertex at the same position (UV seams split
    vertices); `face_groups` indexes `group_names` (OBJ groups, glTF mesh names).
    `skin_joints` index `rig.joint_names`.
    """

    format: str
    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]
    normals: NDArray[np.float64] | None = None
    uvs: NDArray[np.float64] | None = None
    face_groups: NDArray[np.int64] | None = None
    group_names: list[str] = field(default_factory=list)
    skin_joints: NDArray[np.int64] | None = None
    skin_weights: NDArray[np.float64] | None = None
    rig: SourceRig | None = None
    # Index of each vertex's position in the source file (OBJ `v` lines), where vertices were
    # split by UV seams; binding files such as MakeHuman's `.mhclo` address these indices.
    source_index: NDArray[np.int64] | None = None


def read_scene(data: bytes, filename: str) -> SceneMesh:
    """Parse `data` according to `filename`'s suffix; bad or unknown files raise 4xx errors."""
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
            scene = _read_gltf(_load_glb(data, filename), None, filename)
        elif suffix == ".gltf":
            scene = _read_gltf(*_load_gltf_json(data, filename), filename)
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
    return _checked(scene, filename)


def _checked(scene: SceneMesh, filename: str) -> SceneMesh:
    if scene.faces.size == 0:
        raise SpatialTwinError(
            "no_triangles",
            f"{filename!r} holds no triangles: a body needs a surface mesh",
            {"filename": filename, "vertices": len(scene.vertices)},
            status=422,
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


def _load_glb(data: bytes, filename: str) -> g.GLTF2:
    if len(data) < 20 or data[:4] != b"glTF":
        raise SpatialTwinError(
            "corrupt_file",
            f"{filename!r} is not a GLB file (no 'glTF' magic)",
            {"filename": filename},
        )
    return g.GLTF2.load_from_bytes(data)


def _load_gltf_json(data: bytes, filename: str) -> tuple[g.GLTF2, list[bytes]]:
    doc = g.GLTF2.from_json(data.decode("utf-8"))
    buffers = []
    for buf in doc.buffers:
        uri = buf.uri or ""
        if not uri.startswith("data:"):
            raise SpatialTwinError(
                "unsupported_format",
                f"{filename!r} refers to an external buffer {uri!r}; upload a .glb or a .gltf "
                "with embedded (data URI) buffers",
                {"filename": filename, "uri": uri},
                status=415,
            )
        buffers.append(base64.b64decode(uri.split(",", 1)[1]))
    return doc, buffers


def _accessor(doc: g.GLTF2, blobs: list[bytes], index: int) -> NDArray[np.float64]:
    """An accessor's elements as float64 (count, width), normalised integers scaled to [0, 1]."""
    acc = doc.accessors[index]
    if acc.sparse is not None:
        raise SpatialTwinError("unsupported_format", "sparse glTF accessors are not supported")
    dtype = np.dtype(_COMPONENT_DTYPES[acc.componentType]).newbyteorder("<")
    width = _TYPE_WIDTH[acc.type]
    if acc.bufferView is None:
        return np.zeros((acc.count, width))
    view = doc.bufferViews[acc.bufferView]
    blob = blobs[view.buffer]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    elem = dtype.itemsize * width
    stride = view.byteStride or elem
    need = stride * (acc.count - 1) + elem if acc.count else 0
    if start + need > len(blob) or start + need > (view.byteOffset or 0) + view.byteLength:
        raise SpatialTwinError("corrupt_file", f"glTF accessor {index} runs past its buffer")
    raw = np.frombuffer(blob, dtype=np.uint8, count=need, offset=start)
    if stride != elem:
        rows = np.lib.stride_tricks.as_strided(raw, (acc.count, elem), (stride, 1))
        raw = np.ascontiguousarray(rows)
    out = raw.view(dtype).reshape(acc.count, width).astype(np.float64)
    if acc.normalized and dtype.kind in "iu":
        out /= float(np.iinfo(dtype).max)
    return out


def _local_matrix(node: g.Node) -> NDArray[np.float64]:
    if node.matrix is not None:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T  # column-major
    m = np.eye(4)
    if node.rotation is not None:
        m[:3, :3] = Rotation.from_quat(node.rotation).as_matrix()
    if node.scale is not None:
        m[:3, :3] = m[:3, :3] * np.asarray(node.scale, dtype=np.float64)
    if node.translation is not None:
        m[:3, 3] = node.translation
    return m


def _world_matrices(doc: g.GLTF2) -> tuple[dict[int, NDArray[np.float64]], dict[int, int]]:
    """World matrices of the nodes of the default scene, and each node's parent."""
    parent: dict[int, int] = {}
    for i, node in enumerate(doc.nodes):
        for c in node.children or []:
            parent[c] = i
    scene_index = doc.scene if doc.scene is not None else 0
    roots = (
        doc.scenes[scene_index].nodes
        if doc.scenes
        else [i for i in range(len(doc.nodes)) if i not in parent]
    )
    world: dict[int, NDArray[np.float64]] = {}
    stack = [(r, np.eye(4)) for r in roots]
    while stack:
        i, above = stack.pop()
        if i in world:
            raise SpatialTwinError("corrupt_file", "glTF node hierarchy has a cycle")
        world[i] = above @ _local_matrix(doc.nodes[i])
        stack.extend((c, world[i]) for c in doc.nodes[i].children or [])
    return world, parent


def _read_gltf(doc: g.GLTF2, blobs: list[bytes] | None, filename: str) -> SceneMesh:
    if blobs is None:
        blob = doc.binary_blob()
        blobs = [blob or b""]
    world, parent = _world_matrices(doc)

    # (1) The skeleton: the union of all skins' joints, parents = nearest joint ancestor.
    joint_nodes: list[int] = sorted({j for skin in doc.skins for j in skin.joints})
    joint_of_node = {n: k for k, n in enumerate(joint_nodes)}
    rig = None
    if joint_nodes:
        parents = []
        for n in joint_nodes:
            p = parent.get(n)
            while p is not None and p not in joint_of_node:
                p = parent.get(p)
            parents.append(-1 if p is None else joint_of_node[p])
        positions = np.array([world.get(n, np.eye(4))[:3, 3] for n in joint_nodes])
        names = [doc.nodes[n].name or f"joint{n}" for n in joint_nodes]
        rig = SourceRig(names, np.asarray(parents, dtype=np.int64), positions)

    # (2) Every triangle primitive of every mesh node, in world space.
    verts, faces, normals, uvs, groups, sj, sw = [], [], [], [], [], [], []
    group_names: list[str] = []
    offset = 0
    for node_index, mat in world.items():
        node = doc.nodes[node_index]
        if node.mesh is None:
            continue
        mesh = doc.meshes[node.mesh]
        skin = doc.skins[node.skin] if node.skin is not None else None
        for prim in mesh.primitives:
            if (prim.mode if prim.mode is not None else _TRIANGLES) != _TRIANGLES:
                continue
            attrs = prim.attributes
            if attrs.POSITION is None:
                continue
            p = _accessor(doc, blobs, attrs.POSITION)
            n = len(p)
            idx = (
                _accessor(doc, blobs, prim.indices).astype(np.int64).reshape(-1)
                if prim.indices is not None
                else np.arange(n)
            )
            tri = idx[: len(idx) // 3 * 3].reshape(-1, 3)
            nrm = _accessor(doc, blobs, attrs.NORMAL) if attrs.NORMAL is not None else None
            skinned = (
                skin is not None and attrs.JOINTS_0 is not None and attrs.WEIGHTS_0 is not None
            )
            if skinned:
                assert skin is not None and rig is not None
                local_joints = _accessor(doc, blobs, attrs.JOINTS_0).astype(np.int64)
                weights = _accessor(doc, blobs, attrs.WEIGHTS_0)
                ibm = (
                    _accessor(doc, blobs, skin.inverseBindMatrices)
                    .reshape(-1, 4, 4)
                    .transpose(0, 2, 1)
                    if skin.inverseBindMatrices is not None
                    else np.tile(np.eye(4), (len(skin.joints), 1, 1))
                )
                joint_mats = np.stack([world[j] @ ibm[k] for k, j in enumerate(skin.joints)])
                totals = weights.sum(axis=1, keepdims=True)
                weights = weights / np.where(totals > 0, totals, 1.0)
                blended = np.einsum("nk,nkab->nab", weights, joint_mats[local_joints])
                p = np.einsum("nab,nb->na", blended[:, :3, :3], p) + blended[:, :3, 3]
                if nrm is not None:
                    nrm = np.einsum("nab,nb->na", blended[:, :3, :3], nrm)
                sj.append(np.asarray([joint_of_node[j] for j in skin.joints])[local_joints])
                sw.append(weights)
            else:
                p = p @ mat[:3, :3].T + mat[:3, 3]
                if nrm is not None:
                    nrm = nrm @ np.linalg.inv(mat[:3, :3])
                if rig is not None:  # an unskinned part of a rigged file follows the root
                    sj.append(np.zeros((n, 4), dtype=np.int64))
                    sw.append(np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)))
            if np.linalg.det(mat[:3, :3]) < 0 and not skinned:
                tri = tri[:, ::-1]
            verts.append(p)
            faces.append(tri + offset)
            normals.append(nrm)
            uvs.append(
                _accessor(doc, blobs, attrs.TEXCOORD_0) if attrs.TEXCOORD_0 is not None else None
            )
            name = mesh.name or node.name or f"mesh{node.mesh}"
            if name not in group_names:
                group_names.append(name)
            groups.append(np.full(len(tri), group_names.index(name)))
            offset += n
    if not verts:
        return SceneMesh("gltf", np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    all_normals = (
        np.concatenate(normals) if all(x is not None for x in normals) else None  # type: ignore[arg-type]
    )
    all_uvs = np.concatenate(uvs) if all(x is not None for x in uvs) else None  # type: ignore[arg-type]
    return SceneMesh(
        format="gltf",
        vertices=np.concatenate(verts),
        faces=np.concatenate(faces),
        normals=all_normals,
        uvs=all_uvs,
        face_groups=np.concatenate(groups),
        group_names=group_names,
        skin_joints=np.concatenate(sj) if sj and len(sj) == len(verts) else None,
        skin_weights=np.concatenate(sw) if sw and len(sw) == len(verts) else None,
        rig=rig if sj and len(sj) == len(verts) else None,
    )


# ---------------------------------------------------------------- OBJ


def _read_obj(data: bytes, filename: str) -> SceneMesh:
    """Wavefront OBJ with groups (`g`/`o`), polygons fanned into triangles.

    trimesh's OBJ reader drops group membership, which the importer needs (a MakeHuman base
    mesh keeps its skin in group `body` beside helper geometry), so OBJ is parsed here.
    """
    text = data.decode("utf-8", errors="strict")
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
