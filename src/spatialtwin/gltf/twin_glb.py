"""A twin as a skinned GLB: canonical VRM joint nodes, the body mesh, provenance.

The mesh stays in its bind pose and the pose lives on the joint nodes, which is how glTF
viewers (three.js, model-viewer, Blender) expect a skinned character: a posed download is the
same mesh with rotated joints, so the client can keep animating it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pygltflib as g

from spatialtwin import __version__
from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_NAMES, PARENTS
from spatialtwin.body.twin_body import SKIN_TONE, TwinBody
from spatialtwin.gltf.builder import GlbBuilder


def add_skinned_twin(
    builder: GlbBuilder,
    body: TwinBody,
    *,
    pose: Pose | None = None,
    mesh_name: str = "twin",
) -> tuple[int, int]:
    """Add the twin's skeleton and skinned mesh; returns (mesh node, hips node)."""
    pose = pose or Pose.rest()
    offsets = body.skeleton.rest_local_offsets()
    quats = pose.quaternions()
    joint_nodes = []
    for j, name in enumerate(JOINT_NAMES):
        translation = offsets[j] + (pose.root_m if PARENTS[j] < 0 else 0.0)
        node = builder.node(name=name, translation=[float(x) for x in translation])
        if not np.allclose(quats[j], [0, 0, 0, 1]):
            builder.gltf.nodes[node].rotation = [float(x) for x in quats[j]]
        joint_nodes.append(node)
    for j, parent in enumerate(PARENTS):
        if parent >= 0:
            builder.gltf.nodes[joint_nodes[parent]].children.append(joint_nodes[j])

    ibm = body.skeleton.inverse_bind_matrices().transpose(0, 2, 1)  # column-major
    ibm_acc = builder.accessor(ibm.reshape(-1, 16).astype(np.float32), target=None, matrix=True)
    builder.gltf.skins.append(
        g.Skin(
            name="canonical",
            joints=joint_nodes,
            inverseBindMatrices=ibm_acc,
            skeleton=joint_nodes[0],
        )
    )
    skin_index = len(builder.gltf.skins) - 1

    attrs = g.Attributes(
        POSITION=builder.accessor(body.vertices_m.astype(np.float32), with_bounds=True),
        NORMAL=builder.accessor(body.normals.astype(np.float32)),
        TEXCOORD_0=builder.accessor(body.uvs.astype(np.float32)),
        JOINTS_0=builder.accessor(body.skin.joints.astype(np.uint8)),
        WEIGHTS_0=builder.accessor(body.skin.weights.astype(np.float32)),
    )
    material = builder.material("skin", SKIN_TONE, roughness=0.65)
    mesh = builder.mesh(
        mesh_name,
        [
            g.Primitive(
                attributes=attrs,
                indices=builder.indices(body.faces, body.vertex_count),
                material=material,
                mode=g.TRIANGLES,
            )
        ],
    )
    mesh_node = builder.node(name=mesh_name, mesh=mesh, skin=skin_index)
    return mesh_node, joint_nodes[0]


def provenance_extras(provenance: dict[str, Any] | None) -> dict[str, Any]:
    extras: dict[str, Any] = {"spatialtwin": {"version": __version__}}
    if provenance:
        extras["spatialtwin"].update(provenance)
    return extras


def twin_to_glb(
    body: TwinBody,
    *,
    pose: Pose | None = None,
    provenance: dict[str, Any] | None = None,
    name: str = "twin",
) -> bytes:
    """Serialise a twin (optionally posed) as a GLB with provenance in `asset.extras`."""
    builder = GlbBuilder(generator=f"SpatialTwin {__version__}")
    mesh_node, hips = add_skinned_twin(builder, body, pose=pose, mesh_name="twin")
    builder.scene([mesh_node, hips], name=name)
    builder.set_extras(provenance_extras(provenance))
    return builder.to_bytes()
