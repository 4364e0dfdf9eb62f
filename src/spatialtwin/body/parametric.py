"""Twins from tape measurements: a smooth, watertight, skinned human body in metres.

The body is a smooth union of anatomical parts (a lofted torso with elliptical sections, tapered
limbs, head, hands and feet) placed on a skeleton whose proportions come from stature, inseam
and shoulder breadth (segment ratios after Drillis & Contini 1966 / Winter, "Biomechanics and
Motor Control of Human Movement", table 4.1). The implicit surface is meshed with marching cubes,
simplified with meshoptimizer and projected back onto the surface. The torso's sections are then
calibrated until the girths measured back from the mesh, with the same tape-measure code used
for scans (`measure`), match what was asked. Skin weights fall out of the construction: a
vertex follows the parts it is closest to, softly, which is what the smooth union means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import meshoptimizer
import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from spatialtwin.body.implicit import (
    Ellipsoid,
    LoftedTorso,
    Part,
    RoundBox,
    RoundCone,
    evaluate_on_grid,
    part_distances,
    project_to_surface,
    surface_normals,
)
from spatialtwin.body.measure import BodyMeasurements, measure_body
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, Skeleton
from spatialtwin.body.skinning import SkinWeights
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError

Array = NDArray[np.float64]

ARM_DROP_RAD = np.deg2rad(45.0)  # A-pose: upper arms 45° below horizontal
GRID_SPACING_M = 0.005
TARGET_VERTICES = 16_000
SKIN_SOFTNESS_M = 0.012
MERGE_DISTANCE_M = 1e-5


@dataclass(frozen=True)
class Measurements:
    """What a tailor measures, in metres: stature, chest/waist/hip girths, inseam, shoulders."""

    height_m: float
    chest_m: float
    waist_m: float
    hips_m: float
    inseam_m: float
    shoulder_m: float

    # Plausible adult ranges (ISO 8559-2 / ANSUR II extremes, widened): outside these the
    # numbers are almost certainly in the wrong unit or mistyped.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "height_m": (1.30, 2.30),
        "chest_m": (0.60, 1.70),
        "waist_m": (0.50, 1.70),
        "hips_m": (0.65, 1.80),
        "inseam_m": (0.55, 1.10),
        "shoulder_m": (0.28, 0.60),
    }

    def to_json(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: object) -> Measurements:
        if not isinstance(data, dict):
            raise SpatialTwinError("invalid_measurements", "measurements must be a JSON object")
        missing = [k for k in cls.LIMITS if k not in data]
        if missing:
            raise SpatialTwinError(
                "missing_measurements",
                f"missing measurements: {', '.join(missing)}",
                {"missing": missing},
                status=422,
            )
        try:
            values = {k: float(data[k]) for k in cls.LIMITS}
        except (TypeError, ValueError) as exc:
            raise SpatialTwinError(
                "invalid_measurements", "measurements must be numbers in metres", status=422
            ) from exc
        m = cls(**values)
        m.validate()
        return m

    def validate(self) -> None:
        problems = {}
        for key, (lo, hi) in self.LIMITS.items():
            value = getattr(self, key)
            if not np.isfinite(value) or not lo <= value <= hi:
                problems[key] = {"value": value, "allowed_m": [lo, hi]}
        if problems:
            first = next(iter(problems))
            raise SpatialTwinError(
                "measurement_out_of_range",
                f"{first} = {getattr(self, first)} m is outside the human range "
                f"{self.LIMITS[first][0]}–{self.LIMITS[first][1]} m (all values are metres)",
                problems,
                status=422,
            )
        ratio = self.inseam_m / self.height_m
        if not 0.38 <= ratio <= 0.56:
            raise SpatialTwinError(
                "implausible_proportions",
                f"inseam is {ratio:.0%} of height; adults measure 38–56 %",
                {"inseam_m": self.inseam_m, "height_m": self.height_m},
                status=422,
            )
        if self.waist_m > 1.35 * self.hips_m or self.chest_m > 1.6 * self.hips_m:
            raise SpatialTwinError(
                "implausible_proportions",
                "chest/waist/hips girths do not describe one body",
                {"chest_m": self.chest_m, "waist_m": self.waist_m, "hips_m": self.hips_m},
                status=422,
            )


@dataclass(frozen=True)
class BodyLayout:
    """Joint positions and landmark heights derived from the measurements (metres)."""

    joints: Array  # (22, 3)
    leaf_tips: dict[str, Array]
    scale: float
    crotch_y: float
    hips_y: float
    waist_y: float
    chest_y: float
    armpit_y: float
    shoulder_top_y: float
    arm_dir_left: Array


def _ellipse_perimeter(a: float, b: float) -> float:
    h = ((a - b) / (a + b)) ** 2
    return float(np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h))))


def _semi_axes_for_girth(girth_m: float, width_to_depth: float) -> tuple[float, float]:
    a = girth_m / _ellipse_perimeter(1.0, 1.0 / width_to_depth)
    return a, a / width_to_depth


def body_layout(m: Measurements) -> BodyLayout:
    """Place the skeleton's joints from stature, inseam, shoulder breadth and hip girth."""
    H, s = m.height_m, m.height_m / 1.75
    ankle_y = 0.045 * H
    upper_leg_y = m.inseam_m + 0.04 * H
    knee_y = ankle_y + 0.5 * (upper_leg_y - ankle_y) + 0.01 * s
    hip_x = 0.098 * (m.hips_m / 0.98) ** 0.6 * s**0.4
    ua_x = m.shoulder_m / 2 - 0.02
    ua_y = 0.80 * H
    d_left = np.array([np.cos(ARM_DROP_RAD), -np.sin(ARM_DROP_RAD), 0.0])
    upper_arm_len, forearm_len, hand_len = 0.172 * H, 0.150 * H, 0.108 * H

    j = np.zeros((len(JOINT_NAMES), 3))

    def put(name: str, x: float, y: float, z: float) -> None:
        j[JOINT_INDEX[name]] = (x, y, z)

    put("hips", 0.0, upper_leg_y + 0.03 * s, 0.0)
    put("spine", 0.0, 0.60 * H, -0.005 * s)
    put("chest", 0.0, 0.68 * H, 0.0)
    put("upperChest", 0.0, 0.74 * H, 0.0)
    put("neck", 0.0, 0.835 * H, -0.01 * s)
    put("head", 0.0, 0.875 * H, 0.0)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        d = d_left * np.array([sign, 1.0, 1.0])
        shoulder = np.array([sign * 0.025 * s, 0.805 * H, -0.005 * s])
        upper_arm = np.array([sign * ua_x, ua_y, -0.005 * s])
        lower_arm = upper_arm + d * upper_arm_len
        hand = lower_arm + d * forearm_len
        put(f"{side}Shoulder", *shoulder)
        put(f"{side}UpperArm", *upper_arm)
        put(f"{side}LowerArm", *lower_arm)
        put(f"{side}Hand", *hand)
        put(f"{side}UpperLeg", sign * hip_x, upper_leg_y, 0.0)
        put(f"{side}LowerLeg", sign * hip_x * 0.90, knee_y, 0.005 * s)
        put(f"{side}Foot", sign * hip_x * 0.88, ankle_y, -0.01 * s)
        put(f"{side}Toes", sign * hip_x * 0.92, 0.02 * s, 0.135 * s)
    tips = {
        "head": np.array([0.0, H, 0.0]),
        "leftHand": j[JOINT_INDEX["leftHand"]] + d_left * hand_len,
        "rightHand": j[JOINT_INDEX["rightHand"]] + d_left * np.array([-1, 1, 1]) * hand_len,
        "leftToes": np.array([hip_x * 0.92, 0.015 * s, 0.205 * s]),
        "rightToes": np.array([-hip_x * 0.92, 0.015 * s, 0.205 * s]),
    }
    return BodyLayout(
        joints=j,
        leaf_tips=tips,
        scale=s,
        crotch_y=m.inseam_m,
        hips_y=m.inseam_m + 0.085 * s,
        waist_y=0.615 * H,
        chest_y=0.72 * H,
        armpit_y=0.757 * H,
        shoulder_top_y=0.812 * H,
        arm_dir_left=d_left,
    )


@dataclass
class TorsoGirths:
    """Girth targets of the torso loft's control sections (metres)."""

    hips_m: float
    waist_m: float
    chest_m: float


def _torso(m: Measurements, lay: BodyLayout, g: TorsoGirths) -> LoftedTorso:
    s = lay.scale
    a_h, b_h = _semi_axes_for_girth(g.hips_m * 0.96, 1.30)
    a_w, b_w = _semi_axes_for_girth(g.waist_m, 1.38)
    a_c, b_c = _semi_axes_for_girth(g.chest_m, 1.40)
    a_ub, b_ub = 0.5 * (a_w + a_c) * 0.98, 0.5 * (b_w + b_c)
    a_top, b_top = m.shoulder_m / 2 - 0.05 * s, 0.085 * s
    levels = np.array(
        [
            lay.crotch_y,
            lay.crotch_y + 0.035 * s,
            lay.hips_y,
            0.5 * (lay.hips_y + lay.waist_y),
            lay.waist_y,
            0.5 * (lay.waist_y + lay.chest_y),
            lay.chest_y,
            lay.armpit_y,
            lay.shoulder_top_y,
        ]
    )
    a_mid_hw = 0.5 * (a_h + a_w) * 1.02
    b_mid_hw = 0.5 * (b_h + b_w) * 1.02
    half_width = np.array(
        [a_h * 0.62, a_h * 0.90, a_h, a_mid_hw, a_w, a_ub, a_c, a_c * 0.98, a_top]
    )
    half_depth = np.array(
        [b_h * 0.70, b_h * 0.92, b_h, b_mid_hw, b_w, b_ub, b_c, b_c * 0.92, b_top]
    )
    centre_z = s * np.array([-0.012, -0.015, -0.018, -0.008, 0.0, 0.006, 0.012, 0.0, -0.012])
    return LoftedTorso(levels, half_width, half_depth, centre_z, cap_round_m=0.035 * s)


def body_parts(m: Measurements, lay: BodyLayout, girths: TorsoGirths) -> list[Part]:
    """The anatomical parts of the body, each bound to the joint it moves with."""
    s = lay.scale
    J = lay.joints

    def at(name: str) -> Array:
        return J[JOINT_INDEX[name]]

    thigh_r = 0.086 * s * (m.hips_m / 0.98) ** 0.8
    parts = [Part("torso", _torso(m, lay, girths), "torso", 0.03 * s)]
    neck_r = 0.058 * s * (m.chest_m / 0.95) ** 0.3
    parts.append(
        Part(
            "neck",
            RoundCone(
                at("upperChest") + np.array([0, 0.04 * s, -0.01 * s]),
                at("head") + np.array([0, 0.01 * s, 0.0]),
                neck_r * 1.05,
                neck_r,
            ),
            "neck",
            0.03 * s,
        )
    )
    head_c = np.array([0.0, m.height_m - 0.115 * s, 0.012 * s])
    parts.append(
        Part(
            "head",
            Ellipsoid(head_c, np.array([0.076, 0.115, 0.097]) * s, np.eye(3)),
            "head",
            0.02 * s,
        )
    )
    parts.append(
        Part(
            "jaw",
            Ellipsoid(
                head_c + np.array([0, -0.06 * s, 0.035 * s]),
                np.array([0.055, 0.045, 0.06]) * s,
                np.eye(3),
            ),
            "head",
            0.03 * s,
        )
    )
    for side, sign in (("left", 1.0), ("right", -1.0)):
        d = lay.arm_dir_left * np.array([sign, 1.0, 1.0])
        ua, la, hand = at(f"{side}UpperArm"), at(f"{side}LowerArm"), at(f"{side}Hand")
        parts.append(
            Part(
                f"{side}Clavicle",
                RoundCone(
                    at(f"{side}Shoulder") + np.array([0, 0.005 * s, -0.01 * s]),
                    ua,
                    0.045 * s,
                    0.052 * s,
                ),
                f"{side}Shoulder",
                0.035 * s,
            )
        )
        parts.append(
            Part(
                f"{side}UpperArm",
                RoundCone(ua, la, 0.05 * s, 0.038 * s),
                f"{side}UpperArm",
                0.02 * s,
            )
        )
        parts.append(
            Part(
                f"{side}Forearm",
                RoundCone(la, hand, 0.04 * s, 0.027 * s),
                f"{side}LowerArm",
                0.02 * s,
            )
        )
        width_axis = np.array([0.0, 0.0, 1.0])
        thick_axis = np.cross(d, width_axis)
        axes = np.stack([d, width_axis, thick_axis], axis=1)
        parts.append(
            Part(
                f"{side}Hand",
                Ellipsoid(hand + d * 0.075 * s, np.array([0.092, 0.048, 0.022]) * s, axes),
                f"{side}Hand",
                0.015 * s,
            )
        )
        ul, ll, foot = at(f"{side}UpperLeg"), at(f"{side}LowerLeg"), at(f"{side}Foot")
        parts.append(
            Part(
                f"{side}Thigh",
                RoundCone(ul + np.array([0, 0.03 * s, -0.012 * s]), ll, thigh_r, 0.055 * s),
                f"{side}UpperLeg",
                0.03 * s,
            )
        )
        parts.append(
            Part(
                f"{side}Shin", RoundCone(ll, foot, 0.05 * s, 0.033 * s), f"{side}LowerLeg", 0.02 * s
            )
        )
        calf_c = ll + (foot - ll) * 0.28 + np.array([0, 0, -0.018 * s])
        parts.append(
            Part(
                f"{side}Calf",
                Ellipsoid(calf_c, np.array([0.05, 0.10, 0.05]) * s, np.eye(3)),
                f"{side}LowerLeg",
                0.02 * s,
            )
        )
        foot_c = np.array([foot[0], 0.034 * s, 0.07 * s])
        parts.append(
            Part(
                f"{side}Foot",
                RoundBox(foot_c, np.array([0.044, 0.034, 0.128]) * s, 0.028 * s, np.eye(3)),
                f"{side}Foot",
                0.03 * s,
            )
        )
    return parts


def _is_closed_manifold(faces: NDArray[np.int64]) -> bool:
    """Every edge shared by exactly two faces: the surface is closed and has no pinches."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool(np.all(counts == 2))


def _mesh_implicit(
    parts: list[Part], lay: BodyLayout, m: Measurements, spacing_m: float, target_vertices: int
) -> tuple[Array, NDArray[np.int64]]:
    """Mesh the body's zero level set; a rare pinched edge (two sheets meeting at a grid
    corner) is avoided by shifting the grid a fraction of a cell and meshing again."""
    for attempt in range(4):
        verts, faces = _mesh_on_grid(
            parts, lay, m, spacing_m, target_vertices, shift_m=spacing_m * attempt / 4
        )
        if _is_closed_manifold(faces):
            break
    return verts, faces


def _mesh_on_grid(
    parts: list[Part],
    lay: BodyLayout,
    m: Measurements,
    spacing_m: float,
    target_vertices: int,
    shift_m: float,
) -> tuple[Array, NDArray[np.int64]]:
    lo = np.array([-1.0, -0.02, -0.3]) - shift_m
    hi = np.array([1.0, m.height_m + 0.02, 0.35])
    reach = np.max(np.abs(lay.leaf_tips["leftHand"][0])) + 0.06
    lo[0], hi[0] = -reach - shift_m, reach
    shape = tuple(int(np.ceil((hi[k] - lo[k]) / spacing_m)) + 1 for k in range(3))
    field = evaluate_on_grid(parts, lo, spacing_m, shape)  # type: ignore[arg-type]
    verts, faces, _, _ = marching_cubes(field, level=0.0, spacing=(spacing_m,) * 3)
    verts = verts.astype(np.float64) + lo
    faces = faces.astype(np.uint32)
    target_index_count = int(target_vertices * 2 * 3)
    dest = np.zeros(faces.size, dtype=np.uint32)
    count = meshoptimizer.simplify(
        dest,
        faces.ravel(),
        verts.astype(np.float32),
        target_index_count=target_index_count,
        target_error=0.02,
    )
    faces = dest[:count].reshape(-1, 3).astype(np.int64)
    verts, faces = _clean(verts, faces)
    verts = project_to_surface(parts, verts)
    # Orient outward: the enclosed volume must be positive.
    tri = verts[faces]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    if volume < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces


def _clean(verts: Array, faces: NDArray[np.int64]) -> tuple[Array, NDArray[np.int64]]:
    """Merge vertices closer than 10 µm (marching cubes repeats grid corners), then drop
    the faces that collapsed.

    That is an edge collapse of sub-visible edges; slivers with three distinct corners stay,
    because they are part of the closed surface and removing them would open a hole.
    """
    pairs = cKDTree(verts).query_pairs(MERGE_DISTANCE_M, output_type="ndarray")
    n = len(verts)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    _, first = np.unique(label, return_index=True)
    faces = label[faces]
    keep = (
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    )
    faces = faces[keep]
    used, compact = np.unique(faces, return_inverse=True)
    return verts[first][used], compact.reshape(-1, 3)


def _skin_weights(parts: list[Part], vertices: Array, lay: BodyLayout) -> SkinWeights:
    d = part_distances(parts, vertices)
    d -= d.min(axis=1, keepdims=True)
    influence = np.exp(-d / SKIN_SOFTNESS_M)
    influence[d > 6 * SKIN_SOFTNESS_M] = 0.0
    dense = np.zeros((len(vertices), len(JOINT_NAMES)))
    y = vertices[:, 1]
    J = lay.joints
    spine_chain = ["hips", "spine", "chest", "upperChest", "neck"]
    bounds = [J[JOINT_INDEX[n], 1] for n in spine_chain[1:]]
    blend = 0.04 * lay.scale

    def step(t: Array) -> Array:
        x = np.clip((t + blend) / (2 * blend), 0.0, 1.0)
        return x * x * (3 - 2 * x)

    for k, part in enumerate(parts):
        w = influence[:, k]
        if part.joint == "torso":
            cumulative = [np.ones_like(y)] + [step(y - b) for b in bounds] + [np.zeros_like(y)]
            for i, name in enumerate(spine_chain):
                dense[:, JOINT_INDEX[name]] += w * (cumulative[i] - cumulative[i + 1])
        elif part.joint.endswith("Foot"):
            side = part.joint[: -len("Foot")]
            toes_z = J[JOINT_INDEX[f"{side}Toes"], 2]
            t = step(vertices[:, 2] - toes_z)
            dense[:, JOINT_INDEX[part.joint]] += w * (1 - t)
            dense[:, JOINT_INDEX[f"{side}Toes"]] += w * t
        else:
            dense[:, JOINT_INDEX[part.joint]] += w
    return SkinWeights.from_dense(dense)


def cylindrical_uvs(
    vertices: Array, faces: NDArray[np.int64], height_m: float
) -> tuple[Array, NDArray[np.int64], NDArray[np.int64]]:
    """UVs wrapped around the body's axis; vertices on the back seam are duplicated.

    Returns (uvs, faces, vertex_source) where vertex_source maps each output vertex to the
    input vertex it copies.
    """
    u = np.arctan2(vertices[:, 0], vertices[:, 2]) / (2 * np.pi) + 0.5
    v = vertices[:, 1] / height_m
    fu = u[faces]
    wraps = (fu.max(axis=1) - fu.min(axis=1)) > 0.5
    source = np.arange(len(vertices))
    uv = np.stack([u, v], axis=1)
    faces = faces.copy()
    if wraps.any():
        wrap_faces = np.flatnonzero(wraps)
        low = fu[wrap_faces] < 0.5
        needs = np.unique(faces[wrap_faces][low])
        new_index = np.full(len(vertices), -1)
        new_index[needs] = len(vertices) + np.arange(len(needs))
        extra_uv = uv[needs].copy()
        extra_uv[:, 0] += 1.0
        uv = np.concatenate([uv, extra_uv])
        source = np.concatenate([source, needs])
        sub = faces[wrap_faces]
        sub[low] = new_index[sub[low]]
        faces[wrap_faces] = sub
    uv[:, 0] *= 0.5  # keep u in [0, 1] after the seam copies (u spans 0..2 before)
    uv[:, 1] = 1.0 - uv[:, 1]  # glTF's v runs down the image
    np.clip(uv, 0.0, 1.0, out=uv)
    return uv, faces, source


def layout_skeleton(lay: BodyLayout) -> Skeleton:
    return Skeleton(lay.joints.copy(), {k: v.copy() for k, v in lay.leaf_tips.items()})


def create_twin_body(
    measurements: Measurements,
    *,
    spacing_m: float = GRID_SPACING_M,
    target_vertices: int = TARGET_VERTICES,
    calibration_rounds: int = 5,
) -> TwinBody:
    """Generate a rigged body whose measured girths and height match `measurements`."""
    measurements.validate()
    lay = body_layout(measurements)
    girths = TorsoGirths(measurements.hips_m, measurements.waist_m, measurements.chest_m)
    best: tuple[float, Array, NDArray[np.int64], list[Part]] | None = None
    for _ in range(calibration_rounds + 1):
        parts = body_parts(measurements, lay, girths)
        verts, faces = _mesh_implicit(parts, lay, measurements, spacing_m, target_vertices)
        got = measure_body(verts, faces)
        errors = np.array(
            [
                measurements.hips_m - got.hips_m,
                measurements.waist_m - got.waist_m,
                measurements.chest_m - got.chest_m,
            ]
        )
        worst = float(np.abs(errors).max())
        if best is None or worst < best[0]:
            best = (worst, verts, faces, parts)
        if worst < 0.004:
            break
        girths = TorsoGirths(
            girths.hips_m * measurements.hips_m / got.hips_m,
            girths.waist_m * measurements.waist_m / got.waist_m,
            girths.chest_m * measurements.chest_m / got.chest_m,
        )
    assert best is not None
    _, verts, faces, parts = best
    assert verts is not None and faces is not None
    # Stand exactly on the floor with exactly the asked stature (sub-millimetre correction).
    verts[:, 1] -= verts[:, 1].min()
    verts[:, 1] *= measurements.height_m / verts[:, 1].max()
    normals = surface_normals(parts, verts)
    skin = _skin_weights(parts, verts, lay)
    uvs, faces_uv, source = cylindrical_uvs(verts, faces, measurements.height_m)
    return TwinBody(
        vertices_m=verts[source],
        faces=faces_uv,
        normals=normals[source],
        uvs=uvs,
        skin=SkinWeights(skin.joints[source], skin.weights[source]),
        skeleton=layout_skeleton(lay),
        weld_map=source,
    )


def measured(body: TwinBody) -> BodyMeasurements:
    """Measure a twin back from its own mesh."""
    v, f = body.welded()
    return measure_body(v, f, body.skeleton.rest_positions_m)
