"""Any GLB (ours, gltfpack's, a DCC tool's) as a `LodScene`: per-mesh arrays in metres.

Unlike `read_scene` (one merged mesh for body import), LOD needs every mesh separately with its
material, texture and skin, and must read KHR_mesh_quantization (normalised integers, node or
inverse-bind dequantisation) and EXT_meshopt_compression payloads. Skinned meshes are posed by
the file's joint nodes (their bind pose in any sane file), unskinned ones by their node
transforms, so positions are the world-space metres a viewer shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pygltflib as g
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.meshopt_codec import view_bytes
from spatialtwin.lod.scene import LodMaterial, LodMesh, LodRig, LodScene

_DTYPES = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class _Reader:
    def __init__(self, doc: g.GLTF2) -> None:
        self.doc = doc
        self.blobs = {0: doc.binary_blob() or b""}
        self._views: dict[int, bytes] = {}

    def view(self, index: int) -> bytes:
        if index not in self._views:
            self._views[index] = view_bytes(self.doc, index, self.blobs)
        return self._views[index]

    def accessor(self, index: int) -> NDArray[np.float64]:
        acc = self.doc.accessors[index]
        dtype = np.dtype(_DTYPES[acc.componentType])
        width = _WIDTH[acc.type]
        if acc.bufferView is None:
            return np.zeros((acc.count, width))
        view = self.doc.bufferViews[acc.bufferView]
        data = self.view(acc.bufferView)
        elem = dtype.itemsize * width
        stride = view.byteStride or elem
        start = acc.byteOffset or 0
        raw = np.frombuffer(data, dtype=np.uint8)
        if start + stride * (acc.count - 1) + elem > len(raw):
            raise SpatialTwinError("corrupt_file", f"accessor {index} runs past its buffer view")
        rows = np.lib.stride_tricks.as_strided(raw[start:], (acc.count, elem), (stride, 1))
        out = np.ascontiguousarray(rows).view(dtype).reshape(acc.count, width).astype(np.float64)
        if acc.normalized and dtype.kind in "iu":
            out = np.maximum(out / float(np.iinfo(dtype).max), -1.0)
        return out


def _local(node: g.Node) -> NDArray[np.float64]:
    if node.matrix is not None:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T
    m = np.eye(4)
    if node.rotation is not None:
        m[:3, :3] = Rotation.from_quat(node.rotation).as_matrix()
    if node.scale is not None:
        m[:3, :3] = m[:3, :3] * np.asarray(node.scale, dtype=np.float64)
    if node.translation is not None:
        m[:3, 3] = node.translation
    return m


def _image(reader: _Reader, material: g.Material | None) -> tuple[bytes | None, str]:
    pbr = material.pbrMetallicRoughness if material else None
    if pbr is None or pbr.baseColorTexture is None:
        return None, "image/png"
    tex = reader.doc.textures[pbr.baseColorTexture.index]
    if tex.source is None:
        return None, "image/png"
    img = reader.doc.images[tex.source]
    if img.bufferView is None:
        return None, "image/png"
    return reader.view(img.bufferView), img.mimeType or "image/png"


def read_glb_scene(data: bytes, name: str = "scene") -> LodScene:
    """Every triangle primitive of the default scene, as separate `LodMesh`es in metres."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise SpatialTwinError("corrupt_file", "not a GLB file (no 'glTF' magic)", status=422)
    try:
        doc = g.GLTF2.load_from_bytes(data)
    except Exception as exc:
        raise SpatialTwinError(
            "corrupt_file", f"GLB could not be parsed: {exc}", status=422
        ) from exc
    reader = _Reader(doc)
    parent = {c: i for i, n in enumerate(doc.nodes) for c in n.children or []}
    roots = (
        doc.scenes[doc.scene or 0].nodes
        if doc.scenes
        else [i for i in range(len(doc.nodes)) if i not in parent]
    )
    world: dict[int, NDArray[np.float64]] = {}
    stack = [(r, np.eye(4)) for r in roots]
    while stack:
        i, above = stack.pop()
        world[i] = above @ _local(doc.nodes[i])
        stack.extend((c, world[i]) for c in doc.nodes[i].children or [])

    joint_nodes = sorted({j for skin in doc.skins for j in skin.joints})
    rig_index = {n: k for k, n in enumerate(joint_nodes)}
    rig = None
    if joint_nodes:
        parents, rest_local = [], []
        for n in joint_nodes:
            p = parent.get(n)
            while p is not None and p not in rig_index:
                p = parent.get(p)
            parents.append(-1 if p is None else rig_index[p])
            w = world.get(n, np.eye(4))
            rest_local.append(w if p is None else np.linalg.inv(world.get(p, np.eye(4))) @ w)
        rig = LodRig(
            [doc.nodes[n].name or f"joint{n}" for n in joint_nodes],
            np.asarray(parents, dtype=np.int64),
            np.stack(rest_local),
        )

    meshes: list[LodMesh] = []
    for node_index, mat in world.items():
        node = doc.nodes[node_index]
        if node.mesh is None:
            continue
        gmesh = doc.meshes[node.mesh]
        skin = doc.skins[node.skin] if node.skin is not None else None
        for pi, prim in enumerate(gmesh.primitives):
            if (prim.mode if prim.mode is not None else 4) != 4 or prim.attributes.POSITION is None:
                continue
            meshes.append(
                _primitive(
                    reader,
                    prim,
                    mat,
                    skin,
                    world,
                    rig_index,
                    f"{gmesh.name or node.name or 'mesh'}" + (f"_{pi}" if pi else ""),
                    _role(node, gmesh),
                )
            )
    if not meshes:
        raise SpatialTwinError("no_triangles", "the GLB holds no triangle meshes", status=422)
    return LodScene(meshes, rig, name=name, extras=_extras(doc))


def _role(node: g.Node, mesh: g.Mesh) -> Any:
    for extras in (node.extras, mesh.extras):
        role = (
            (extras or {}).get("spatialtwin", {}).get("role") if isinstance(extras, dict) else None
        )
        if role in ("body", "garment"):
            return role
    return "other"


def _extras(doc: g.GLTF2) -> dict[str, Any]:
    extras = doc.asset.extras if isinstance(doc.asset.extras, dict) else {}
    st = extras.get("spatialtwin", {})
    return (
        {k: v for k, v in st.items() if k not in ("version", "lod")} if isinstance(st, dict) else {}
    )


def _primitive(
    reader: _Reader,
    prim: g.Primitive,
    mat: NDArray[np.float64],
    skin: g.Skin | None,
    world: dict[int, NDArray[np.float64]],
    rig_index: dict[int, int],
    name: str,
    role: Any,
) -> LodMesh:
    doc = reader.doc
    a = prim.attributes
    pos = reader.accessor(a.POSITION)
    n = len(pos)
    faces = (
        reader.accessor(prim.indices).astype(np.int64).reshape(-1, 3)
        if prim.indices is not None
        else np.arange(n - n % 3).reshape(-1, 3)
    )
    nrm = reader.accessor(a.NORMAL) if a.NORMAL is not None else None
    uvs = reader.accessor(a.TEXCOORD_0) if a.TEXCOORD_0 is not None else None
    joints = weights = None
    if skin is not None and a.JOINTS_0 is not None and a.WEIGHTS_0 is not None:
        local_joints = reader.accessor(a.JOINTS_0).astype(np.int64)
        weights = reader.accessor(a.WEIGHTS_0)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        ibm = (
            reader.accessor(skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
            if skin.inverseBindMatrices is not None
            else np.tile(np.eye(4), (len(skin.joints), 1, 1))
        )
        mats = np.stack([world.get(j, np.eye(4)) @ ibm[k] for k, j in enumerate(skin.joints)])
        blended = np.einsum("nk,nkab->nab", weights, mats[local_joints])
        pos = np.einsum("nab,nb->na", blended[:, :3, :3], pos) + blended[:, :3, 3]
        if nrm is not None:
            nrm = np.einsum("nab,nb->na", np.linalg.inv(blended[:, :3, :3]).transpose(0, 2, 1), nrm)
        joints = np.asarray([rig_index[j] for j in skin.joints])[local_joints]
    else:
        pos = pos @ mat[:3, :3].T + mat[:3, 3]
        if nrm is not None:
            nrm = nrm @ np.linalg.inv(mat[:3, :3])
        if np.linalg.det(mat[:3, :3]) < 0:
            faces = faces[:, ::-1]
    if nrm is None:
        import trimesh

        nrm = trimesh.Trimesh(pos, faces, process=False).vertex_normals
    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    gmat = doc.materials[prim.material] if prim.material is not None else None
    image, mime = _image(reader, gmat)
    pbr = gmat.pbrMetallicRoughness if gmat is not None else None
    material = LodMaterial(
        name=(gmat.name if gmat is not None else None) or "material",
        base_color=tuple(pbr.baseColorFactor)
        if pbr and pbr.baseColorFactor
        else (1.0, 1.0, 1.0, 1.0),
        roughness=float(pbr.roughnessFactor) if pbr and pbr.roughnessFactor is not None else 1.0,
        metallic=float(pbr.metallicFactor) if pbr and pbr.metallicFactor is not None else 1.0,
        double_sided=bool(gmat.doubleSided) if gmat is not None else False,
        base_color_image=image,
        image_mime=mime,
    )
    return LodMesh(name, role, pos, faces, nrm, uvs, joints, weights, material)
