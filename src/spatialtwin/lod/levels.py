"""Levels of a scene as steps: cull hidden skin → simplify (pose-aware) → clear garments → measure.

    levels = build_levels(scene, LevelOptions(ratios=(1.0, 0.25, 0.0625, 0.015625)))

Every level is simplified from the culled full-resolution scene (never from the previous level,
so errors do not compound), and its geometric error is the sampled symmetric Hausdorff distance
to that full-resolution scene, the worst over the bind pose and the rig's bent poses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError
from spatialtwin.lod.clearance import push_out
from spatialtwin.lod.cull import CullOptions, hidden_body_faces
from spatialtwin.lod.deform import bent_poses, posed_positions, skinning_matrices
from spatialtwin.lod.distance import symmetric_hausdorff
from spatialtwin.lod.scene import LodMesh, LodScene
from spatialtwin.lod.simplifier import SimplifyJob, simplify_batch
from spatialtwin.lod.topology import border_vertices


@dataclass(frozen=True)
class LevelOptions:
    """How levels are made; `ratios` are fractions of the visible full-resolution triangles."""

    ratios: tuple[float, ...] = (1.0, 0.25, 0.0625, 0.015625)
    normal_weight: float = 0.5
    uv_weight: float = 1.0
    pose_weight: float = 0.5  # per bent pose, on positions divided by the mesh extent
    pose_aware: bool = True
    cull_hidden_body: bool = True
    lock_garment_borders: bool = True
    # Hems are locked vertex for vertex while they take at most this share of a level's vertex
    # budget (~ target triangles / 2). Past it (a T-shirt's 175 hem vertices in a 95-triangle
    # 1.5 % level) locking leaves nothing for the rest of the garment, which collapses; there
    # the hem vertices may only slide along the hem, so a hem stays a hem, with fewer vertices.
    hem_lock_max_share: float = 1.0
    # Locking the culled body's rim (~400 vertices under a shirt) starves coarse levels: at
    # 1.5 % the body kept its rim and lost its legs (0.5 m error). Unlocked, meshoptimizer
    # still only slides rim vertices along the rim, and the rim stays under the garment.
    lock_body_rim: bool = False
    regularize: bool | Literal["light"] = True  # well-shaped triangles bend better: bench/lod.py
    min_clearance_m: float = 0.001
    error_samples: int = 6000
    measure_poses: bool = True
    # Per level, each (regularize, pose_weight) pair is simplified and the one with the lowest
    # worst-pose error (sampled with `selection_samples`) is kept. No single setting wins every
    # level: on twin Ava RegularizeLight halves the 25 % bind-pose error, on her look full
    # Regularize with heavy pose attributes keeps the seated pose, and a light pose weight
    # wins at 1.5 % (bench/lod.py). Empty: use `regularize` and `pose_weight` only.
    candidates: tuple[tuple[bool | Literal["light"], float], ...] = (
        ("light", 0.5),
        (True, 2.0),
        ("light", 0.1),
    )
    selection_samples: int = 2000


DEFAULTS = LevelOptions()


@dataclass
class Level:
    index: int
    ratio: float
    scene: LodScene
    error_m: float  # worst over the poses below
    error_by_pose_m: dict[str, float]
    garment_vertices_pushed: int = 0
    skin_through_cloth_m: float = 0.0  # bind pose, after clearance; 0 when none pokes through

    @property
    def triangles(self) -> int:
        return self.scene.triangle_count


def validate_ratios(ratios: tuple[float, ...]) -> None:
    if (
        not ratios
        or ratios[0] != 1.0
        or any(not (0 < r <= 1) for r in ratios)
        or list(ratios) != sorted(ratios, reverse=True)
    ):
        raise SpatialTwinError(
            "invalid_lod_ratios",
            "level ratios must start at 1.0 and fall strictly within (0, 1]",
            {"ratios": list(ratios)},
            status=422,
        )


def cull_hidden(scene: LodScene, opts: LevelOptions = DEFAULTS) -> tuple[LodScene, int]:
    """The scene without body triangles hidden under its garments; returns (scene, culled)."""
    if not opts.cull_hidden_body:
        return scene, 0
    meshes, culled = [], 0
    for m in scene.meshes:
        if m.role == "body":
            hidden = hidden_body_faces(scene, m, CullOptions())
            culled += int(hidden.sum())
            if hidden.all():
                continue
            m = m.with_faces(m.faces[~hidden]) if hidden.any() else m
        meshes.append(m)
    return replace(scene, meshes=meshes), culled


def _attributes(
    mesh: LodMesh, scene: LodScene, opts: LevelOptions
) -> tuple[NDArray[np.float64], list[float]]:
    cols = [mesh.normals]
    weights = [opts.normal_weight] * 3
    if mesh.uvs is not None:
        cols.append(mesh.uvs)
        weights += [opts.uv_weight] * 2
    if opts.pose_aware and scene.rig is not None and mesh.skinned:
        extent = float(np.ptp(mesh.positions_m, axis=0).max()) or 1.0
        for rots in bent_poses(scene.rig).values():
            posed = posed_positions(mesh, skinning_matrices(scene.rig, rots))
            cols.append(posed / extent)
            weights += [opts.pose_weight] * 3
    return np.concatenate(cols, axis=1), weights


def simplify_scene(
    full: LodScene, ratios: list[float], opts: LevelOptions = DEFAULTS
) -> list[LodScene]:
    """One simplified scene per ratio, every mesh reduced by the same ratio."""
    jobs, owners = [], []
    prepared = []
    for m in full.meshes:
        attrs, weights = _attributes(m, full, opts)
        border = None
        if (m.role == "garment" and opts.lock_garment_borders) or (
            m.role == "body" and opts.lock_body_rim  # the culled region's rim
        ):
            border = border_vertices(m.positions_m, m.faces)
        # The vertices that set the bounding box stay, so every level keeps the true size.
        extreme = np.zeros(len(m.positions_m), dtype=bool)
        extreme[np.argmin(m.positions_m, axis=0)] = True
        extreme[np.argmax(m.positions_m, axis=0)] = True
        prepared.append((attrs, weights, border, extreme))
    for li, ratio in enumerate(ratios):
        for mi, m in enumerate(full.meshes):
            attrs, weights, border, extreme = prepared[mi]
            target = max(1, math.ceil(m.triangle_count * ratio))
            lock = extreme
            if border is not None and border.sum() <= opts.hem_lock_max_share * target / 2:
                lock = extreme | border
            jobs.append(
                SimplifyJob(
                    m.faces,
                    m.positions_m,
                    target,
                    attrs,
                    weights,
                    lock,
                    target_error=1.0,
                    regularize=opts.regularize,
                )
            )
            owners.append((li, mi))
    results = simplify_batch(jobs)
    out: list[list[LodMesh]] = [[] for _ in ratios]
    for (li, mi), res in zip(owners, results, strict=True):
        if len(res.faces):
            m = full.meshes[mi]
            faces = np.asarray(res.faces)
            if m.role == "body":
                faces = _keep_extremes(m.faces, faces, prepared[mi][3])
            out[li].append(m.with_faces(faces))
    return [replace(full, meshes=meshes) for meshes in out]


def _keep_extremes(
    full_faces: NDArray[np.int64], faces: NDArray[np.int64], extreme: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """`faces` plus one original triangle of each bounding-box vertex no face uses any more.

    meshoptimizer keeps a locked vertex where it is but may still leave it with no triangle
    (a toe tip among tiny triangles); a level must keep the twin's true size all the same.
    """
    used = np.zeros(len(extreme), dtype=bool)
    used[faces.ravel()] = True
    missing = np.flatnonzero(extreme & ~used)
    if len(missing) == 0:
        return faces
    owner = np.full(len(extreme), -1, dtype=np.int64)
    for k in range(3):
        owner[full_faces[::-1, k]] = np.arange(len(full_faces))[::-1]
    extra = np.unique(owner[missing][owner[missing] >= 0])
    return np.vstack([faces, full_faces[extra]])


def clear_garments(scene: LodScene, min_clearance_m: float) -> tuple[LodScene, int, float]:
    """(scene with garments pushed out of the body, vertices moved, deepest skin left showing
    through cloth in metres)."""
    bodies = [m for m in scene.meshes if m.role == "body"]
    if not bodies or not any(m.role == "garment" for m in scene.meshes):
        return scene, 0, 0.0
    b_pos, b_faces = _merged(bodies)
    meshes, moved, residual = [], 0, 0.0
    for m in scene.meshes:
        if m.role == "garment":
            pos, n, left = push_out(m.positions_m, m.faces, b_pos, b_faces, min_clearance_m)
            m = replace(m, positions_m=pos)
            moved += n
            residual = max(residual, left)
        meshes.append(m)
    return replace(scene, meshes=meshes), moved, residual


def _merged(
    meshes: list[LodMesh], mats: NDArray[np.float64] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    pos = [posed_positions(m, mats) for m in meshes]
    offsets = np.cumsum([0] + [len(p) for p in pos])
    faces = np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=False)])
    return np.concatenate(pos), faces


def error_poses(
    scene: LodScene, opts: LevelOptions = DEFAULTS
) -> dict[str, NDArray[np.float64] | None]:
    poses: dict[str, NDArray[np.float64] | None] = {"bind": None}
    if opts.measure_poses and scene.rig is not None and any(m.skinned for m in scene.meshes):
        for name, rots in bent_poses(scene.rig).items():
            poses[name] = skinning_matrices(scene.rig, rots)
    return poses


def geometric_error(
    full: LodScene, level: LodScene, opts: LevelOptions = DEFAULTS
) -> dict[str, float]:
    """Sampled symmetric Hausdorff distance (metres) per pose between two scenes."""
    out = {}
    for name, mats in error_poses(full, opts).items():
        a_pos, a_faces = _merged(full.meshes, mats)
        b_pos, b_faces = _merged(level.meshes, mats)
        out[name] = symmetric_hausdorff(a_pos, a_faces, b_pos, b_faces, opts.error_samples)
    return out


def build_levels(scene: LodScene, opts: LevelOptions = DEFAULTS) -> list[Level]:
    """(1) cull hidden skin, (2) simplify every level with each candidate setting, (3) clear
    garments, (4) keep the candidate with the lowest worst-pose error, (5) measure it."""
    validate_ratios(opts.ratios)
    if not scene.meshes or scene.triangle_count == 0:
        raise SpatialTwinError("empty_scene", "the scene has no triangles to simplify", status=422)
    full, _ = cull_hidden(scene, opts)
    ratios = list(opts.ratios[1:])
    variants = [
        replace(opts, regularize=reg, pose_weight=weight) for reg, weight in opts.candidates
    ] or [opts]
    per_variant = [simplify_scene(full, ratios, v) for v in variants]
    levels = [Level(0, 1.0, full, 0.0, {name: 0.0 for name in error_poses(full, opts)})]
    for i, ratio in enumerate(ratios, start=1):
        tried = [clear_garments(found[i - 1], opts.min_clearance_m) for found in per_variant]
        if len(tried) > 1:
            quick = replace(opts, error_samples=opts.selection_samples)
            worst = [max(geometric_error(full, t[0], quick).values()) for t in tried]
            best = tried[int(np.argmin(worst))]
        else:
            best = tried[0]
        lvl, moved, poke = best
        errors = geometric_error(full, lvl, opts)
        levels.append(Level(i, ratio, lvl, max(errors.values()), errors, moved, poke))
    return levels
