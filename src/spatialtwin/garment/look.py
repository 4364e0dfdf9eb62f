"""A look: garments placed on a twin, carried into its pose and draped there, in order.

The same steps serve `spatialtwin drape`, the looks jobs of the server and the tests:

1. place each garment on the twin's bind pose (`placement.place_garment`: translate only,
   never rescale, then push out of the body),
2. carry it into the pose: every garment vertex takes the skin weights of the body surface
   nearest to it (inverse-distance blend of a few body vertices) and is skinned with the
   twin's joint matrices, then what the pose pushed into the body is pushed out again,
3. settle it under gravity on the static posed body (`cloth.drape.drape_garment`),
4. fit map and render mesh: the per-vertex strain the solver reports and the ease (distance
   from the posed body, `cloth.fit_map`), and the upload's own mesh — UVs, materials —
   rebuilt on the settled cloth (`garment.render_mesh`).

Garments drape inner first, in the order of `garment.layers.draping_order` (by category:
trousers and skirts, then dresses, tops, outerwear; or as given). Each garment collides with
the body and with the garments draped before it (`cloth.collider.LayeredCollider`: their
surface offset outward by their thickness), and starts pushed out over them, so an outer
garment lies over the inner one. Every garment's drape is checked against
`garment.quality`'s thresholds; what it misses is in `DrapedGarment.warnings`. The solver's
rest shape stays the garment's own, only translated, so a pose stretches the cloth only where
the body pushes it.

Example:
    look = drape_look(body, [LookGarment("tee", sim_mesh, pieces, fabric)], pose)
    look.garments[0].stats()["max_stretch"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from spatialtwin.body.correspondence import Correspondence
from spatialtwin.body.pose import Pose, skinning_matrices
from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.body.skinning import Skinner, SkinWeights
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cloth.collider import DrapeLayer
from spatialtwin.cloth.drape import SettleOptions, drape_garment
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.cloth.fit_map import FIT_LEGEND, vertex_ease
from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.appearance import Appearance
from spatialtwin.garment.layers import draping_order
from spatialtwin.garment.mesh import GarmentMesh
from spatialtwin.garment.pieces import Piece
from spatialtwin.garment.placement import (
    CLEARANCE_MARGIN_M,
    BodyLandmarks,
    PlacedGarment,
    place_garment,
    push_out_of_body,
)
from spatialtwin.garment.quality import (
    QUALITY_DEFAULTS,
    DrapeQuality,
    QualityThresholds,
    drape_warnings,
)
from spatialtwin.garment.refit import GarmentRefit, correspond_authoring, refit_garment
from spatialtwin.garment.render_mesh import RenderBinding
from spatialtwin.garment.stitches import overlap_stitches

Progress = Callable[[str, float], None]
Colour = tuple[float, float, float, float]
DEFAULT_GARMENT_COLOUR: Colour = (0.55, 0.60, 0.70, 1.0)
MAX_GARMENTS = 6


@dataclass(frozen=True)
class LookOptions:
    """Drape budget and fit-map scale.

    `max_frames` bounds the settling (frames of `dt_s` seconds); tests and previews use a few
    dozen, a finished look a few hundred. `skin_neighbours` body vertices lend their skin
    weights to each garment vertex. Settling
    stops as `cloth.drape.SettleOptions` says (kinetic energy per vertex, time limit); the
    result is checked against `quality`.
    """

    max_frames: int = 240
    min_frames: int = 30
    settle_ke_j_per_vertex: float = 1e-10
    time_limit_s: float = 60.0
    quality: QualityThresholds = QUALITY_DEFAULTS
    dt_s: float = 1.0 / 30.0
    skin_neighbours: int = 8
    rest_frames: int = 20  # posed looks: frames the garment settles at rest before moving
    motion_deg_per_frame: float = 3.0  # posed looks: largest joint turn per frame

    def __post_init__(self) -> None:
        if not 1 <= self.max_frames <= 5000:
            raise SpatialTwinError(
                "invalid_drape_options",
                "max_frames must be 1..5000",
                {"max_frames": self.max_frames},
                status=422,
            )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> LookOptions:
        names = {"look_max_frames": "max_frames", "look_min_frames": "min_frames"}
        values: dict[str, Any] = {
            name: int(settings[key]) for key, name in names.items() if key in settings
        }
        if "look_time_limit_s" in settings:
            values["time_limit_s"] = float(settings["look_time_limit_s"])
        if "max_frames" in values and "min_frames" not in values:
            values["min_frames"] = min(LOOK_DEFAULTS.min_frames, values["max_frames"])
        return cls(**values)


LOOK_DEFAULTS = LookOptions()


def _noop(stage: str, fraction: float) -> None:
    return None


@dataclass
class LookGarment:
    """One garment to wear: its simulation mesh (metres, as prepared), pieces and fabric.

    `key` is the stored garment id or the file stem; it names the GLB node `garment:<key>`.
    `meta` goes into the look's provenance (sku, fabric id, category …).
    """

    key: str
    mesh: GarmentMesh
    pieces: list[Piece]
    fabric: Fabric
    base_color: Colour = DEFAULT_GARMENT_COLOUR
    meta: dict[str, Any] = field(default_factory=dict)
    # With an authoring body: the garment is refitted onto the twin instead of placed.
    refit: GarmentRefit | None = None
    # The upload's own mesh (welded, corner UVs, face materials) and its materials; without
    # them the look shows the simulation mesh in `base_color`.
    render: GarmentMesh | None = None
    appearance: Appearance | None = None


@dataclass
class DrapedGarment:
    """A settled garment in world coordinates of the posed twin (metres, +Y up)."""

    key: str
    positions_m: NDArray[np.float64]  # (N, 3) settled
    start_positions_m: NDArray[np.float64]  # (N, 3) placed and posed, before settling
    faces: NDArray[np.int64]  # (F, 3)
    corner_uvs: NDArray[np.float32] | None  # (F, 3, 2)
    strain: NDArray[np.float64]  # (N,) per-vertex stretch ≥ 0
    base_color: Colour
    mean_stretch: float
    max_stretch: float
    min_body_clearance_m: float
    frames: int
    settled: bool
    drape_s: float  # wall time of the settling, seconds
    placement: dict[str, Any]
    meta: dict[str, Any]
    stop_reason: str = "settled"  # "settled" | "frame_limit" | "time_limit"
    quality: dict[str, Any] = field(default_factory=dict)  # garment.quality.DrapeQuality
    warnings: list[dict[str, Any]] = field(default_factory=list)  # thresholds it missed
    ease_m: NDArray[np.float64] | None = None  # (N,) distance from the posed body, + outside
    render: RenderBinding | None = None  # the upload's mesh riding on this one
    # The render mesh on the settled cloth, kept out of the posed body (see drape_one).
    render_settled_m: NDArray[np.float64] | None = None
    # What the solver was given, so a live session can go on simulating the settled cloth:
    rest_positions_m: NDArray[np.float64] | None = None  # (N, 3) the garment's own shape
    pinned: NDArray[np.int64] | None = None  # pinned vertices (waistbands, support bands)

    @property
    def node_name(self) -> str:
        return f"garment:{self.key}"

    def render_binding(self) -> RenderBinding:
        """The mesh to show: the upload's own, or this simulation mesh in `base_color`."""
        if self.render is not None:
            return self.render
        sim = GarmentMesh(
            vertices_m=self.positions_m,
            faces=self.faces,
            corner_uvs=self.corner_uvs,
            face_material=np.zeros(len(self.faces), dtype=np.int32),
            face_piece=np.zeros(len(self.faces), dtype=np.int32),
        )
        return RenderBinding.of(sim, sim, Appearance.plain(self.base_color))

    def render_positions_m(self) -> NDArray[np.float64]:
        """The render mesh's vertices on the settled cloth (metres, world of the pose)."""
        if self.render_settled_m is not None:
            return self.render_settled_m
        return self.render_binding().positions_m(self.positions_m)

    def fit_shares(self) -> dict[str, dict[str, float]]:
        """Share of the cloth's vertices in each fit-map band (`cloth.fit_map.FIT_LEGEND`)."""
        out = {"strain": FIT_LEGEND["strain"].shares(self.strain)}
        if self.ease_m is not None:
            out["ease"] = FIT_LEGEND["ease"].shares(self.ease_m)
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "mean_stretch": round(self.mean_stretch, 5),
            "max_stretch": round(self.max_stretch, 5),
            "min_body_clearance_m": round(self.min_body_clearance_m, 5),
            "frames": self.frames,
            "settled": self.settled,
            "drape_s": round(self.drape_s, 3),
            "vertices": len(self.positions_m),
            "fit": self.fit_shares(),
            **self.quality,
            "stop_reason": self.stop_reason,
            "warnings": self.warnings,
        }


@dataclass
class Look:
    """The posed twin's surface and the garments settled on it, in draping order."""

    pose: Pose
    body_vertices_m: NDArray[np.float64]  # (V, 3) posed, welded
    body_faces: NDArray[np.int64]
    garments: list[DrapedGarment]

    def stats(self) -> dict[str, dict[str, Any]]:
        return {g.key: g.stats() for g in self.garments}

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """Every garment's warnings, in draping order."""
        return [w for g in self.garments for w in g.warnings]


# The render mesh's least distance from the skin beyond the fabric's thickness (metres): a
# depth buffer resolves 1 mm at a viewing distance of a few metres.
RENDER_CLEARANCE_M = 0.001


def posed_body(body: TwinBody, pose: Pose | None) -> TwinBody:
    """The twin with its vertices skinned into `pose` (the bind pose when None)."""
    if pose is None:
        return body
    return body.with_vertices(body.posed_vertices(pose))


def grounded(body: TwinBody, pose: Pose) -> Pose:
    """`pose` with its root height set so the body's lowest point stands on y = 0.

    Tracked and hand-made poses say how the limbs bend, not where the floor is; a lunge whose
    root keeps the rest height puts the bent leg's foot 10 cm below the floor.
    """
    # The lowest point of the body: a foot standing, a knee kneeling; nothing below the floor.
    lowest = float(body.posed_vertices(pose)[:, 1].min())
    root = np.array(pose.root_m, dtype=np.float64)
    root[1] -= lowest
    return Pose(root, dict(pose.rotations))


def pose_motion(
    body: TwinBody, pose: Pose, options: LookOptions
) -> tuple[NDArray[np.float64], ...]:
    """Welded body positions from the bind pose to `pose`, frame by frame.

    First `options.rest_frames` frames at rest (the refitted garment settles onto the body),
    then a smooth (ease in and out) slerp of every joint, as many frames as the largest joint
    rotation needs at `options.motion_deg_per_frame`.
    """
    quats = pose.quaternions()
    angles = 2 * np.degrees(np.arccos(np.clip(np.abs(quats[:, 3]), 0.0, 1.0)))
    travel = float(np.linalg.norm(pose.root_m)) / 0.01  # a centimetre a frame
    count = int(np.clip(max(angles.max() / options.motion_deg_per_frame, travel), 10, 90))
    rotvec = Rotation.from_quat(quats).as_rotvec()
    frames = []
    keep = None if body.weld_map is None else np.unique(body.weld_map)
    for k in range(count + 1):
        t = k / count
        ease = t * t * (3 - 2 * t)
        rot = Rotation.from_rotvec(rotvec * ease)  # slerp from the identity
        step_pose = Pose(pose.root_m * ease, dict(zip(JOINT_NAMES, rot.as_quat(), strict=True)))
        v = body.posed_vertices(step_pose)
        frames.append(v if keep is None else v[keep])
    rest_v = frames[0]
    return (*(rest_v for _ in range(options.rest_frames)), *frames[:-1])


def transfer_skin_weights(
    body: TwinBody, points_m: NDArray[np.floating], neighbours: int = 8
) -> SkinWeights:
    """Skin weights for points near the body: an inverse-distance blend of the nearest
    `neighbours` body vertices' weights, so cloth between two bones follows both."""
    k = max(1, min(int(neighbours), body.vertex_count))
    dist, idx = cKDTree(body.vertices_m).query(np.asarray(points_m, dtype=np.float64), k=k)
    dist, idx = dist.reshape(len(points_m), k), idx.reshape(len(points_m), k)
    w = 1.0 / np.maximum(dist, 1e-4) ** 2
    w /= w.sum(axis=1, keepdims=True)
    joint_count = body.skeleton.joint_count
    body_w = body.skin.as_sparse(joint_count)
    rows = np.repeat(np.arange(len(points_m)), k)
    blend = sp.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(len(points_m), body_w.shape[0]))
    dense = np.asarray((blend @ body_w).todense())
    return SkinWeights.from_dense(dense)


def pose_placed_garment(
    placed: PlacedGarment,
    body: TwinBody,
    posed: TwinBody,
    pose: Pose | None,
    neighbours: int = 8,
) -> tuple[NDArray[np.float64], float]:
    """Placed cloth carried into `pose` and kept outside the posed body.

    Returns (positions in metres, largest push-out along the posed body's normals).
    """
    if pose is None:
        return placed.positions_m.copy(), 0.0
    skin = transfer_skin_weights(body, placed.positions_m, neighbours)
    skinner = Skinner(placed.positions_m, skin, body.skeleton.joint_count)
    moved = skinner.vertices(skinning_matrices(body.skeleton, pose))
    thickness = placed.fabric.thickness_m if placed.fabric is not None else 0.001
    positions, pushed, _ = push_out_of_body(
        moved, placed.faces, posed, thickness + CLEARANCE_MARGIN_M
    )
    return positions, pushed


def drape_one(
    garment: LookGarment,
    body: TwinBody,
    posed: TwinBody,
    pose: Pose | None,
    landmarks: BodyLandmarks | None,
    options: LookOptions = LOOK_DEFAULTS,
    layers: Sequence[DrapeLayer] = (),
    correspondences: dict[str, Correspondence] | None = None,
) -> DrapedGarment:
    """Place (or refit), pose and settle one garment on the twin, over `layers` (steps 1–4
    of the module doc)."""
    # (1) place on the bind pose: refit through the authoring body when there is one
    if garment.refit is not None:
        correspondence = (correspondences or {}).get(garment.refit.authoring.kind)
        if correspondence is None:
            correspondence = correspond_authoring(garment.refit.authoring, body)
        placed = refit_garment(
            garment.refit.render,
            garment.mesh,
            garment.pieces,
            garment.refit.binding,
            correspondence,
            body,
            garment.fabric,
        )
    else:
        placed = place_garment(garment.mesh, garment.pieces, body, garment.fabric, landmarks)
    # (2) into the pose: the body moves there with the cloth simulated along the way
    motion = pose_motion(body, pose, options) if pose is not None else ()
    start, posed_push = (
        (placed.positions_m, 0.0)
        if motion
        else pose_placed_garment(placed, body, posed, pose, options.skin_neighbours)
    )
    # (3) settle on the posed body, free edges that lie on their own cloth sewn there
    stitches = overlap_stitches(placed.rest_positions_m, placed.faces, placed.vertex_piece)
    body_v, body_f = posed.welded()
    began = time.perf_counter()
    result = drape_garment(
        start,
        placed.faces,
        garment.fabric,
        body_v,
        body_f,
        pinned=placed.pinned,
        seams=stitches,
        rest_positions_m=placed.rest_positions_m,
        dt=options.dt_s,
        settle=SettleOptions(
            max_frames=options.max_frames,
            min_frames=min(options.min_frames, options.max_frames),
            settle_ke_j_per_vertex=options.settle_ke_j_per_vertex,
            time_limit_s=options.time_limit_s,
        ),
        layers=layers,
        motion_m=motion,
    )
    elapsed = time.perf_counter() - began
    warnings = drape_warnings(result, garment.key, options.quality)
    # (4) fit map, and the upload's mesh bound to the cloth (on the undeformed meshes)
    render = None
    render_settled = None
    if garment.render is not None:
        appearance = garment.appearance or Appearance.plain(garment.base_color)
        render = RenderBinding.of(garment.render, garment.mesh, appearance)
        # The upload's mesh rides on the cloth at its authored offset; a tight game mesh that
        # was authored cutting into the skin (leggings: 6 % of it) would show the body through
        # in patches. The cloth itself keeps its clearance; the mesh shown is kept out too.
        render_settled, _, _ = push_out_of_body(
            render.positions_m(result.positions_m),
            render.faces,
            posed,
            garment.fabric.thickness_m + RENDER_CLEARANCE_M,
        )
    return DrapedGarment(
        key=garment.key,
        positions_m=result.positions_m,
        start_positions_m=result.start_positions_m,
        faces=np.asarray(placed.faces, dtype=np.int64),
        corner_uvs=placed.corner_uvs,
        strain=result.strain,
        base_color=garment.base_color,
        mean_stretch=result.mean_stretch,
        max_stretch=result.max_stretch,
        min_body_clearance_m=result.min_body_clearance_m,
        frames=result.frames,
        settled=result.settled,
        drape_s=elapsed,
        placement={
            **placed.report,
            "stitches": len(stitches),
            "pose_push_m": round(posed_push, 4),
            "layer_push_m": round(result.layer_push_m, 4),
        },
        meta=garment.meta,
        stop_reason=result.stop_reason,
        quality=DrapeQuality.of(result, options.quality).to_json(),
        warnings=[w.to_json() for w in warnings],
        ease_m=vertex_ease(result.positions_m, body_v, body_f),
        render=render,
        render_settled_m=render_settled,
        rest_positions_m=placed.rest_positions_m,
        pinned=np.asarray(placed.pinned, dtype=np.int64),
    )


def drape_look(
    body: TwinBody,
    garments: Sequence[LookGarment],
    pose: Pose | None = None,
    options: LookOptions = LOOK_DEFAULTS,
    progress: Progress = _noop,
    landmarks: BodyLandmarks | None = None,
    layer_order: str = "category",
) -> Look:
    """Dress `body` in `garments` in `pose`, layered by `layer_order` ("category": by
    `garment.layers.draping_order`, "as_given": inner first as listed); raises
    `SpatialTwinError` when a garment cannot be draped (inside the body, diverged)."""
    if not garments:
        raise SpatialTwinError("no_garments", "a look needs at least one garment", status=422)
    keys = [g.key for g in garments]
    if len(set(keys)) != len(keys):
        raise SpatialTwinError(
            "duplicate_garment", "each garment can be worn once per look", {"garments": keys}
        )
    progress("posing", 0.05)
    # Placement by landmarks is for garments without an authoring body (measuring takes 0.4 s).
    needs_marks = landmarks is None and any(g.refit is None for g in garments)
    marks = landmarks or (BodyLandmarks.of(body) if needs_marks else None)
    if pose is not None:
        pose = grounded(body, pose)
    posed = posed_body(body, pose)
    correspondences: dict[str, Correspondence] = {}
    for garment in garments:
        kind = garment.refit.authoring.kind if garment.refit is not None else None
        # Every hm08 garment shares one correspondence; an avatar or an estimated body is
        # its garment's own, so it is found in `drape_one`.
        if garment.refit is not None and kind == "hm08" and kind not in correspondences:
            progress("fitting the authoring body", 0.06)
            correspondences[str(kind)] = correspond_authoring(garment.refit.authoring, body)
    order = draping_order([g.meta.get("category") for g in garments], layer_order)
    draped: list[DrapedGarment] = []
    layers: list[DrapeLayer] = []
    share = 0.85 / len(garments)
    for i, garment in enumerate(garments[k] for k in order):
        progress(f"draping {garment.key}", 0.05 + share * i)
        done = drape_one(garment, body, posed, pose, marks, options, tuple(layers), correspondences)
        draped.append(done)
        layers.append(DrapeLayer(done.positions_m, done.faces, garment.fabric.thickness_m))
    progress("draped", 0.9)
    body_v, body_f = posed.welded()
    return Look(pose or Pose.rest(), body_v, body_f, draped)
