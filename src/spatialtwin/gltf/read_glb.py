"""Any GLB (ours, gltfpack's, a DCC tool's) as a `LodScene`: per-mesh arrays in metres.

Unlike body import (one merged mesh), LOD needs every primitive separately with its material,
texture and skin. Both read through the one glTF reader (`glb_reader`), which checks the file
against its bytes, decodes KHR_mesh_quantization and EXT_meshopt_compression, and poses
skinned primitives by the file's joint nodes (their bind pose in any sane file), so positions
are the world-space metres a viewer shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spatialtwin.errors import SpatialTwinError
from spatialtwin.geometry import vertex_normals
from spatialtwin.gltf.glb_reader import GltfPrimitive, GltfRig, gltf_material, parse_glb
from spatialtwin.lod.scene import LodMesh, LodRig, LodScene, Role


def read_glb_scene(data: bytes, name: str = "scene") -> LodScene:
    """Every triangle primitive of the default scene, as separate `LodMesh`es in metres."""
    scene = parse_glb(data, f"{name}.glb").scene()
    meshes = [_mesh(p) for p in scene.primitives]
    if not meshes:
        raise SpatialTwinError("no_triangles", "the GLB holds no triangle meshes", status=422)
    return LodScene(meshes, _rig(scene.rig), name=name, extras=_extras(scene.asset_extras))


def _rig(rig: GltfRig | None) -> LodRig | None:
    """Joints with local rest transforms relative to their nearest joint ancestor."""
    if rig is None:
        return None
    rest_local = []
    for j, p in enumerate(rig.parents):
        above = rig.rest_world[p] if p >= 0 else None
        if above is not None and abs(np.linalg.det(above)) < 1e-12:
            raise SpatialTwinError(
                "corrupt_file",
                f"joint {rig.names[p]!r} has a singular rest transform",
                {"joint": rig.names[p]},
            )
        rest_local.append(
            rig.rest_world[j] if above is None else np.linalg.inv(above) @ rig.rest_world[j]
        )
    return LodRig(list(rig.names), rig.parents.copy(), np.stack(rest_local))


def _mesh(prim: GltfPrimitive) -> LodMesh:
    name = (prim.mesh_name or prim.node_name or "mesh") + (
        f"_{prim.primitive_index}" if prim.primitive_index else ""
    )
    normals = prim.normals
    if normals is None:
        normals = vertex_normals(prim.positions, prim.faces)
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return LodMesh(
        name,
        _role(prim.extras),
        prim.positions,
        prim.faces,
        normals,
        prim.uvs,
        prim.joints,
        prim.weights,
        prim.material or gltf_material(),
        dict(prim.scalars),
    )


def _role(extras: list[Any]) -> Role:
    for extra in extras:
        st = extra.get("spatialtwin") if isinstance(extra, dict) else None
        role = st.get("role") if isinstance(st, dict) else None
        if role == "body":
            return "body"
        if role == "garment":
            return "garment"
    return "other"


def _extras(asset_extras: dict[str, Any]) -> dict[str, Any]:
    st = asset_extras.get("spatialtwin", {})
    return (
        {k: v for k, v in st.items() if k not in ("version", "lod")} if isinstance(st, dict) else {}
    )
