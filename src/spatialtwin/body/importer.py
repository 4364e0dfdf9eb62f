"""Importing a body file as a twin rigged to the canonical skeleton.

The pipeline is a list of small steps over one body, in the order a careful person would take
them: (1) read the file (in `gltf.read_scene`, before this module: the body stage takes a
`SceneMesh` of arrays, never bytes), (2) keep the skin (drop helper geometry), (3) decide up and
facing, (4) decide units from stature, (5) stand it on y = 0 with the hips over the origin,
(6) rig it (map a source rig's joints and move its weights onto the canonical joints, or
auto-rig a scan), (7) normals and UVs, (8) measure. Every decision lands in the `ImportReport`.

Example (`services.twins.import_body` reads the file and calls `import_scene`):
    twin = import_scene(read_scene(data, "CesiumMan.glb"), "CesiumMan.glb")
    twin.report.to_json()["units"]          # "m"
    twin.body.posed_vertices(pose)          # skinned on the canonical skeleton
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.autorig import UP, autorig
from spatialtwin.body.joint_mapping import JointMapping, map_joints, missing_required
from spatialtwin.body.measure import measure_body
from spatialtwin.body.normalise import (
    AxisDecision,
    resolve_units,
    rig_facing,
    rig_up_axis,
    scan_facing,
    scan_up_axis,
)
from spatialtwin.body.parametric import cylindrical_uvs
from spatialtwin.body.rig_transfer import transfer_template_skin
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, Skeleton
from spatialtwin.body.skinning import SkinWeights
from spatialtwin.body.source_mesh import SceneMesh
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.geometry import vertex_normals, weld_map

Array = NDArray[np.float64]

# Groups that are never skin: MakeHuman's helper geometry and joint-locator cubes.
HELPER_GROUP_PREFIXES = ("helper", "joint-")
SKIN_GROUP_NAMES = ("body",)
# UV-seam copies are welded when they agree to 1 µm (source files are float32 metres at best).
WELD_DECIMALS = 6

# Trunk joints' heights as fractions of stature on the generated bodies (parametric.py).
_TRUNK = ("hips", "spine", "chest", "upperChest", "neck", "head")
_TRUNK_FRACTION = {
    "hips": 0.545,
    "spine": 0.60,
    "chest": 0.68,
    "upperChest": 0.74,
    "neck": 0.835,
    "head": 0.875,
}
_SIDE_PAIRS = ("Shoulder", "UpperArm", "LowerArm", "Hand", "UpperLeg", "LowerLeg", "Foot")


@dataclass
class ImportReport:
    """What the importer decided, in terms a person can check."""

    filename: str
    format: str
    units: str
    metres_per_unit: float
    up_axis: str
    facing: str
    rig: str  # "source" (the file's rig, remapped) or "autorig"
    joint_mapping: dict[str, str] = field(default_factory=dict)  # canonical -> source joint
    mapping_method: dict[str, str] = field(default_factory=dict)  # canonical -> how
    source_weights_to: dict[str, str] = field(default_factory=dict)  # source joint -> canonical
    interpolated_joints: list[str] = field(default_factory=list)
    groups_used: list[str] = field(default_factory=list)
    groups_dropped: list[str] = field(default_factory=list)
    uvs: str = "source"
    normals: str = "source"
    vertex_count: int = 0
    triangle_count: int = 0
    height_m: float = 0.0
    measurements: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImportedTwin:
    body: TwinBody
    report: ImportReport
    # Source coordinates → twin metres: twin = source @ transform[:3, :3].T + transform[:3, 3].
    transform: NDArray[np.float64] = field(default_factory=lambda: np.eye(4))
    # Per twin vertex, its vertex index in the source file where the reader knew it.
    source_index: NDArray[np.int64] | None = None


def import_scene(
    scene: SceneMesh,
    filename: str,
    *,
    units: str = "auto",
    joint_map: dict[str, str] | None = None,
    template: TwinBody | None = None,
) -> ImportedTwin:
    """Steps (2)–(8) over a scene already read (a file, or arrays assembled by a caller)."""
    report = ImportReport(
        filename=filename,
        format=scene.format,
        units=units,
        metres_per_unit=0.0,
        up_axis="",
        facing="",
        rig="",
    )

    # (2) Keep the skin.
    scene = _keep_skin(scene, report)

    # (3) Up and facing, from the rig when there is a usable one, else from the geometry.
    mapping = None
    if scene.rig is not None:
        mapping = map_joints(scene.rig.joint_names, scene.rig.parents, joint_map)
        missing = missing_required(mapping)
        if missing and joint_map:
            raise SpatialTwinError(
                "incomplete_joint_map",
                f"the rig still lacks {', '.join(missing)} after the joint map; map them too",
                {"missing": missing, "source_joints": scene.rig.joint_names},
                status=422,
            )
        if missing:
            report.notes.append(
                f"the file's rig was not recognised (no {', '.join(missing)}); "
                "auto-rigged from the geometry instead"
            )
            mapping = None
    elif joint_map:
        raise SpatialTwinError(
            "no_rig",
            "a joint map was given but the file has no rig",
            {"filename": filename},
            status=422,
        )
    if mapping is not None:
        assert scene.rig is not None
        joints = scene.rig.rest_positions
        up = rig_up_axis(joints[mapping.source_of["hips"]], joints[_top_joint(mapping)])
        facing = rig_facing(_left_minus_right(mapping, joints @ up.rotation.T))
    else:
        up = (
            scan_up_axis(scene.vertices)
            if scene.format != "gltf"
            else AxisDecision(np.eye(3), "+Y (glTF)")
        )
        facing = scan_facing(scene.vertices @ up.rotation.T)
    rotation = facing.rotation @ up.rotation
    report.up_axis, report.facing = up.reason, facing.reason

    # (4) Units, from stature.
    rotated = scene.vertices @ rotation.T
    height_units = float(np.ptp(rotated[:, 1]))
    report.units, report.metres_per_unit = resolve_units(height_units, units)
    scale = report.metres_per_unit

    # (5) Feet on y = 0; x/z centred on the hips (provisionally on the body's midline).
    v = rotated * scale
    shift = np.array([-0.5 * (v[:, 0].min() + v[:, 0].max()), -v[:, 1].min(), 0.0])
    v = v + shift
    weld = weld_map(v, WELD_DECIMALS)
    keep, welded_index = np.unique(weld, return_inverse=True)
    wv, wf = v[keep], welded_index[scene.faces]

    # (6) Rig.
    if mapping is not None:
        assert scene.rig is not None and scene.skin_joints is not None
        assert scene.skin_weights is not None
        src_joints = (scene.rig.rest_positions @ rotation.T) * scale + shift
        skeleton, interpolated = _canonical_skeleton(mapping, src_joints, wv)
        canon = mapping.canonical_of_source(scene.rig.parents)
        dense = np.zeros((len(v), len(JOINT_NAMES)))
        rows = np.repeat(np.arange(len(v)), scene.skin_joints.shape[1])
        np.add.at(dense, (rows, canon[scene.skin_joints.ravel()]), scene.skin_weights.ravel())
        skin = SkinWeights.from_dense(_ensure_influence(dense))
        report.rig = "source"
        report.joint_mapping = {c: scene.rig.joint_names[j] for c, j in mapping.source_of.items()}
        report.mapping_method = dict(mapping.method)
        report.source_weights_to = {
            n: JOINT_NAMES[c] for n, c in zip(scene.rig.joint_names, canon, strict=True)
        }
        report.interpolated_joints = interpolated
    else:
        skeleton, wskin = autorig(wv, wf)
        skin = SkinWeights(wskin.joints[welded_index], wskin.weights[welded_index])
        report.rig = "autorig"
        if template is not None:
            skin, note = _template_skin(template, v, scene.faces, weld, skeleton, skin)
            report.rig = "autorig" if note else "autorig (template weights)"
            if note:
                report.notes.append(note)
    hips = skeleton.position("hips")
    recentre = np.array([-hips[0], 0.0, -hips[2]])
    v = v + recentre
    skeleton = Skeleton(
        skeleton.rest_positions_m + recentre,
        {k: t + recentre for k, t in skeleton.leaf_tips_m.items()},
    )

    # (7) Normals and UVs.
    faces = scene.faces
    if scene.normals is not None:
        normals = scene.normals @ rotation.T
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        report.normals = "source"
    else:
        normals = vertex_normals(v[keep], wf, fallback=UP)[welded_index]
        report.normals = "computed (smooth)"
    if scene.uvs is not None:
        uvs = scene.uvs
        report.uvs = "source"
    else:
        height = float(v[:, 1].max())
        uvs, faces, source = cylindrical_uvs(v[keep], wf, height)
        source = keep[source]
        v, normals = v[source], normals[source]
        skin = SkinWeights(skin.joints[source], skin.weights[source])
        if scene.source_index is not None:
            scene.source_index = scene.source_index[source]
        weld = weld_map(v, WELD_DECIMALS)
        report.uvs = "generated (cylindrical)"

    body = TwinBody(
        vertices_m=v,
        faces=np.asarray(faces, dtype=np.int64),
        normals=normals,
        uvs=np.asarray(uvs, dtype=np.float64),
        skin=skin,
        skeleton=skeleton,
        weld_map=weld,
    )

    # (8) Measure.
    report.vertex_count = body.vertex_count
    report.triangle_count = len(body.faces)
    report.height_m = round(float(v[:, 1].max()), 4)
    mv, mf = body.welded()
    try:
        report.measurements = measure_body(mv, mf, skeleton.rest_positions_m).to_json()
    except ValueError as exc:
        report.notes.append(f"measurements unavailable: {exc}")
    transform = np.eye(4)
    transform[:3, :3] = rotation * scale
    transform[:3, 3] = shift + recentre
    return ImportedTwin(body, report, transform, scene.source_index)


# ---------------------------------------------------------------- steps


def _template_skin(
    template: TwinBody,
    v: Array,
    faces: NDArray[np.integer],
    weld: NDArray[np.int64],
    skeleton: Skeleton,
    skin: SkinWeights,
) -> tuple[SkinWeights, str]:
    """The template's weights on the scan, or its own bone-heat weights and why not.

    The scan is passed whole (seam duplicates and all) so that a scan of the template's own
    surface (base.obj) is recognised as such and takes the weights vertex for vertex.
    """
    keep = np.unique(weld)
    scan = TwinBody(
        vertices_m=v,
        faces=np.asarray(faces, dtype=np.int64),
        normals=vertex_normals(v, np.asarray(faces, dtype=np.int64), fallback=UP),
        uvs=np.zeros((len(v), 2)),
        skin=skin,
        skeleton=skeleton,
        weld_map=weld if len(keep) < len(v) else None,
    )
    try:
        return transfer_template_skin(template, scan), ""
    except (SpatialTwinError, ValueError, np.linalg.LinAlgError) as exc:
        return skin, f"template weights could not be carried over ({exc}); bone-heat weights kept"


def _keep_skin(scene: SceneMesh, report: ImportReport) -> SceneMesh:
    """Only the skin's faces and the vertices they use."""
    names = scene.group_names
    face_mask = np.ones(len(scene.faces), dtype=bool)
    if scene.face_groups is not None and names:
        used = set(np.unique(scene.face_groups).tolist())
        lower = [n.lower() for n in names]
        skin = [k for k in used if lower[k] in SKIN_GROUP_NAMES]
        if not skin:
            skin = [k for k in used if not lower[k].startswith(HELPER_GROUP_PREFIXES)] or list(used)
        face_mask = np.isin(scene.face_groups, skin)
        report.groups_used = [names[k] for k in sorted(skin)]
        report.groups_dropped = [names[k] for k in sorted(used - set(skin))]
    faces = scene.faces[face_mask]
    faces = faces[
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    ]
    if len(faces) == 0:
        raise SpatialTwinError(
            "no_triangles",
            f"{report.filename!r} has no skin triangles",
            {"groups": names},
            status=422,
        )
    used_vertices, inverse = np.unique(faces, return_inverse=True)

    def pick(a: NDArray[Any] | None) -> NDArray[Any] | None:
        return None if a is None else a[used_vertices]

    return SceneMesh(
        format=scene.format,
        source_index=pick(scene.source_index),
        vertices=scene.vertices[used_vertices],
        faces=inverse.reshape(-1, 3),
        normals=pick(scene.normals),
        uvs=pick(scene.uvs),
        skin_joints=pick(scene.skin_joints),
        skin_weights=pick(scene.skin_weights),
        rig=scene.rig,
    )


def _top_joint(mapping: JointMapping) -> int:
    for name in ("head", "neck", "upperChest", "chest"):
        if name in mapping.source_of:
            return mapping.source_of[name]
    return mapping.source_of["hips"]


def _left_minus_right(mapping: JointMapping, joints: Array) -> Array:
    diffs = [
        joints[mapping.source_of["left" + p]] - joints[mapping.source_of["right" + p]]
        for p in _SIDE_PAIRS
        if "left" + p in mapping.source_of and "right" + p in mapping.source_of
    ]
    return np.mean(diffs, axis=0)


def _ensure_influence(dense: Array) -> Array:
    """Vertices the file left unweighted follow the hips rather than vanish."""
    empty = dense.sum(axis=1) <= 0
    dense[empty, JOINT_INDEX["hips"]] = 1.0
    return dense


def _canonical_skeleton(
    mapping: JointMapping, src_joints_m: Array, vertices_m: Array
) -> tuple[Skeleton, list[str]]:
    """Canonical rest positions: mapped joints where the rig has them, the rest interpolated."""
    known: dict[str, Array] = {c: src_joints_m[j].copy() for c, j in mapping.source_of.items()}
    H = float(vertices_m[:, 1].max())
    interpolated: list[str] = []

    def fill(name: str, p: Array) -> None:
        known[name] = p
        interpolated.append(name)

    # (1) The trunk, interpolating at the generated bodies' relative heights.
    if "head" not in known:
        neck = known["neck"]
        fill("head", neck + np.array([0.0, 0.24 * (H - neck[1]), 0.0]))
    for k, name in enumerate(_TRUNK):
        if name in known:
            continue
        below = next(_TRUNK[i] for i in range(k - 1, -1, -1) if _TRUNK[i] in known)
        above = next(_TRUNK[i] for i in range(k + 1, len(_TRUNK)) if _TRUNK[i] in known)
        fb, fa, fk = _TRUNK_FRACTION[below], _TRUNK_FRACTION[above], _TRUNK_FRACTION[name]
        t = (fk - fb) / (fa - fb)
        fill(name, known[below] + t * (known[above] - known[below]))
    # (2) Limbs.
    uc = known["upperChest"]
    for side in ("left", "right"):
        ua, la = known[f"{side}UpperArm"], known[f"{side}LowerArm"]
        if f"{side}Shoulder" not in known:
            fill(
                f"{side}Shoulder",
                np.array([uc[0] + 0.15 * (ua[0] - uc[0]), ua[1] + 0.005 * H, ua[2]]),
            )
        if f"{side}Hand" not in known:
            fill(f"{side}Hand", la + (la - ua) * (0.150 / 0.172))
        ul, ll = known[f"{side}UpperLeg"], known[f"{side}LowerLeg"]
        if f"{side}Foot" not in known:
            fill(f"{side}Foot", ll + (ll - ul))
        if f"{side}Toes" not in known:
            foot = known[f"{side}Foot"]
            tip = _toe_tip(vertices_m, foot, H)
            fill(f"{side}Toes", np.array([foot[0], 0.011 * H, foot[2] + 0.67 * (tip[2] - foot[2])]))
    positions = np.array([known[n] for n in JOINT_NAMES])
    # (3) Leaf tips, from the mesh: crown of the head, fingertips, toe tips.
    head = known["head"]
    tips = {"head": np.array([head[0], H, head[2]])}
    for side in ("left", "right"):
        hand, la = known[f"{side}Hand"], known[f"{side}LowerArm"]
        d = (hand - la) / max(np.linalg.norm(hand - la), 1e-9)
        near = vertices_m[np.linalg.norm(vertices_m - hand, axis=1) < 0.15 * H]
        reach = float(np.max((near - hand) @ d, initial=0.0))
        tips[f"{side}Hand"] = hand + d * max(reach, 0.02 * H)
        toes = known[f"{side}Toes"]
        tip = _toe_tip(vertices_m, known[f"{side}Foot"], H)
        tips[f"{side}Toes"] = np.array([toes[0], 0.0086 * H, max(tip[2], toes[2] + 0.01 * H)])
    return Skeleton(positions, tips), interpolated


def _toe_tip(vertices_m: Array, foot: Array, H: float) -> Array:
    """The most forward surface point near the floor on the foot's side."""
    near = vertices_m[
        (vertices_m[:, 1] < 0.06 * H) & (np.abs(vertices_m[:, 0] - foot[0]) < 0.06 * H)
    ]
    if len(near) == 0:
        return foot + np.array([0.0, 0.0, 0.08 * H])
    return near[np.argmax(near[:, 2])]
