"""Body triangles a look's garments hide, removed from every level of the look.

A shopper never sees skin under a dress, yet every tool ships it: at the coarse levels those
hidden triangles are a large share of the budget, and at every level they are what pokes
through a simplified garment. A body vertex counts as covered when a garment surface lies
straight out along its normal (within `max_gap_m`) in the bind pose and in every bent pose
(skinned garments follow the body; an unskinned garment is judged in the bind pose only). A
triangle is culled when all its vertices are covered and so are those of every triangle
touching it: that one-ring margin keeps skin under hems and cuffs, where a gap would show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.geometry import vertex_normals
from spatialtwin.lod.deform import bent_poses, posed_positions, skinning_matrices
from spatialtwin.lod.distance import SurfaceDistance
from spatialtwin.lod.scene import LodMesh, LodScene


@dataclass(frozen=True)
class CullOptions:
    max_gap_m: float = 0.04
    min_alignment: float = 0.8  # cosine between the body normal and the way to the garment


def covered_vertices(
    body: LodMesh, garments: list[LodMesh], mats: NDArray[np.float64] | None, opts: CullOptions
) -> NDArray[np.bool_]:
    pos = posed_positions(body, mats)
    normals = vertex_normals(pos, body.faces)
    g_pos = [posed_positions(g, mats) for g in garments]
    offsets = np.cumsum([0] + [len(p) for p in g_pos])
    all_pos = np.concatenate(g_pos)
    all_faces = np.concatenate([g.faces + o for g, o in zip(garments, offsets, strict=False)])
    dist, near, _ = SurfaceDistance(all_pos, all_faces).closest(pos)
    direction = (near - pos) / np.maximum(dist[:, None], 1e-12)
    aligned = np.einsum("ij,ij->i", direction, normals) >= opts.min_alignment
    return (dist <= opts.max_gap_m) & aligned


def hidden_body_faces(
    scene: LodScene, body: LodMesh, opts: CullOptions | None = None
) -> NDArray[np.bool_]:
    """Per-face mask of `body` triangles hidden under the scene's garments in every pose."""
    opts = opts or CullOptions()
    garments = [m for m in scene.meshes if m.role == "garment"]
    if not garments:
        return np.zeros(len(body.faces), dtype=bool)
    covered = covered_vertices(body, garments, None, opts)
    if scene.rig is not None and body.skinned and all(g.skinned for g in garments):
        for rots in bent_poses(scene.rig).values():
            covered &= covered_vertices(body, garments, skinning_matrices(scene.rig, rots), opts)
    face_covered = covered[body.faces].all(axis=1)
    # One-ring margin: a vertex stays safe only if every face around it is covered.
    vertex_safe = np.ones(len(body.positions_m), dtype=bool)
    for k in range(3):
        np.logical_and.at(vertex_safe, body.faces[:, k], face_covered)
    return vertex_safe[body.faces].all(axis=1)
