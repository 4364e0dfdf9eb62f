"""Twins from measurements are the hm08 template human, fitted: true size, human, rigged.

Three sizes (S, M, L) are generated on the shipped template and checked against the request
with a tape that shares nothing with the generator's: trimesh cuts the mesh with a plane at
the level `measure` reports, and the convex-hull perimeter of the loop around the body's axis
is the girth. Then what makes the twin a person and not a mannequin: hm08's vertices, UVs and
weights kept, a face and hands carried over undistorted (a similarity of the template's),
five separate fingertips per hand, the canonical A-pose, a rig that poses, a valid GLB.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, Delaunay
from scipy.spatial.transform import Rotation

from spatialtwin.body.parametric import Measurements, measured
from spatialtwin.body.pose import Pose, forward_kinematics
from spatialtwin.body.skeleton import JOINT_INDEX
from spatialtwin.body.template_fit import a_pose
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.gltf.twin_glb import twin_to_glb
from tests.conftest import generated_twin
from tests.gltf_validation import assert_valid_glbs
from tests.test_body_import_checks import STANDARD_POSES, assert_poses_without_tearing

SIZES = {
    "S": Measurements(1.62, 0.84, 0.68, 0.92, 0.74, 0.36),
    "M": Measurements(1.76, 0.92, 0.74, 0.98, 0.81, 0.40),
    "L": Measurements(1.88, 1.04, 0.90, 1.06, 0.86, 0.44),
}


@pytest.fixture(scope="module")
def twins() -> dict[str, TwinBody]:
    return {name: generated_twin(m) for name, m in SIZES.items()}


@pytest.fixture(scope="module")
def template() -> TwinBody:
    return shipped_template().body


def _welded_mesh(body: TwinBody) -> trimesh.Trimesh:
    v, f = body.welded()
    return trimesh.Trimesh(v, f, process=False)


def trimesh_girth(mesh: trimesh.Trimesh, height_m: float) -> float:
    """Taut-tape girth at a height: hull perimeter of the section loop around the body axis.

    The body's axis is the vertical through the hips joint, which generated twins put on the
    origin; arms and hands cut by the same plane are separate loops and are left out.
    """
    segments = trimesh.intersections.mesh_plane(mesh, [0.0, 1.0, 0.0], [0.0, height_m, 0.0])
    ends = np.round(segments.reshape(-1, 3)[:, [0, 2]], 7)
    points, ids = np.unique(ends, axis=0, return_inverse=True)
    ids = ids.reshape(-1, 2)
    n = len(points)
    graph = coo_matrix((np.ones(len(ids)), (ids[:, 0], ids[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    for c in np.unique(label):
        loop = points[label == c]
        if len(loop) >= 3 and Delaunay(loop).find_simplex(np.zeros((1, 2)))[0] >= 0:
            return float(ConvexHull(loop).area)  # a 2-D hull's "area" is its perimeter
    raise AssertionError(f"no section loop around the body axis at {height_m:.3f} m")


@pytest.mark.parametrize("size", list(SIZES))
def test_height_and_girths_measure_back_to_the_request_with_an_independent_tape(twins, size):
    body, m = twins[size], SIZES[size]
    v, _ = body.welded()
    assert v[:, 1].min() == pytest.approx(0.0, abs=1e-9)
    assert v[:, 1].max() - v[:, 1].min() == pytest.approx(m.height_m, abs=0.005)
    levels = measured(body)
    mesh = _welded_mesh(body)
    for name, level, asked in (
        ("chest", levels.chest_level_m, m.chest_m),
        ("waist", levels.waist_level_m, m.waist_m),
        ("hips", levels.hips_level_m, m.hips_m),
    ):
        got = trimesh_girth(mesh, level)
        assert got == pytest.approx(asked, abs=0.015), f"{size} {name}: {got:.4f} m"


@pytest.mark.parametrize("size", list(SIZES))
def test_inseam_and_shoulder_breadth_are_honoured(twins, size):
    got, m = measured(twins[size]), SIZES[size]
    assert got.inseam_m == pytest.approx(m.inseam_m, abs=0.005)
    assert got.shoulder_m == pytest.approx(m.shoulder_m, abs=0.005)
    # The levels a tailor uses stay in anatomical order.
    assert got.inseam_m < got.hips_level_m < got.waist_level_m < got.chest_level_m


def test_sizes_are_ordered_like_the_people_they_describe(twins):
    volume = {k: _welded_mesh(b).volume for k, b in twins.items()}
    assert volume["S"] < volume["M"] < volume["L"]
    # 1.62–1.88 m adults displace roughly 50–100 litres.
    assert volume["S"] > 0.045 and volume["L"] < 0.11


def test_twins_are_closed_surfaces_like_the_template(twins, template):
    assert _welded_mesh(template).is_watertight
    for size, body in twins.items():
        mesh = _welded_mesh(body)
        assert mesh.is_watertight, size
        assert mesh.is_winding_consistent and mesh.volume > 0, size
        # UV-seam copies stay on their originals.
        np.testing.assert_array_equal(body.vertices_m, body.vertices_m[body.weld_map])


def test_template_vertex_order_uvs_and_weights_are_kept(twins, template):
    for body in twins.values():
        assert body.vertex_count == template.vertex_count
        np.testing.assert_array_equal(body.faces, template.faces)
        np.testing.assert_array_equal(body.uvs, template.uvs)
        np.testing.assert_array_equal(body.skin.joints, template.skin.joints)
        np.testing.assert_array_equal(body.skin.weights, template.skin.weights)
        w = body.skin.weights.astype(np.float64)
        assert np.allclose(w.sum(axis=1), 1.0, atol=1e-6) and (w >= 0).all()


def _similarity_residual_m(source: np.ndarray, target: np.ndarray) -> float:
    """RMS distance (metres) left after the best rotation + uniform scale + translation."""
    a = source - source.mean(axis=0)
    b = target - target.mean(axis=0)
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    scale = (s * [1.0, 1.0, d]).sum() / (a * a).sum()
    return float(np.sqrt(((scale * a @ r - b) ** 2).sum(axis=1).mean()))


def _owned_by(body: TwinBody, joint: str, weight: float = 0.99) -> np.ndarray:
    j, w = body.skin.joints, body.skin.weights
    return np.flatnonzero((j[:, 0] == JOINT_INDEX[joint]) & (w[:, 0] >= weight))


def test_face_and_hands_are_the_templates_only_scaled(twins, template):
    """No distortion where a person is recognised: the head and the hands of every size are
    the template's (in the A-pose) up to rotation, scale and position."""
    posed = a_pose(template)
    for size, body in twins.items():
        for joint in ("head", "leftHand", "rightHand"):
            idx = _owned_by(template, joint)
            assert len(idx) > 800, joint
            residual = _similarity_residual_m(posed.vertices_m[idx], body.vertices_m[idx])
            assert residual < 0.0005, f"{size} {joint}: {residual * 1000:.2f} mm"


def _fingertips(body: TwinBody, side: str) -> np.ndarray:
    """Points of the hand that reach furthest along it within their own neighbourhood."""
    v, f = body.welded()
    keep, inverse = np.unique(body.weld_map, return_inverse=True)
    owner = np.zeros(len(keep), dtype=bool)
    owner[inverse[_owned_by(body, f"{side}Hand", 0.5)]] = True
    wrist = body.skeleton.position(f"{side}Hand")
    direction = body.skeleton.leaf_tips_m[f"{side}Hand"] - wrist
    direction /= np.linalg.norm(direction)
    reach = np.where(owner, (v - wrist) @ direction, -np.inf)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    best = reach.copy()
    for _ in range(8):  # eight rings ≈ 2 cm of hm08's hand: wider than a finger
        np.maximum.at(best, edges[:, 0], best[edges[:, 1]])
    tips = owner & (reach >= best) & (reach > 0.04)
    return v[tips]


@pytest.mark.parametrize("side", ["left", "right"])
def test_each_hand_has_five_separate_fingertips(twins, side):
    body = twins["M"]
    owned = _owned_by(body, f"{side}Hand", 0.5)
    assert len(owned) > 1500  # a mitten would need a few hundred
    tips = _fingertips(body, side)
    # Merge points of one fingertip (a flat nail can tie), then count the fingers.
    groups: list[np.ndarray] = []
    for p in tips:
        if all(np.linalg.norm(p - g) > 0.008 for g in groups):
            groups.append(p)
    assert len(groups) == 5, f"{len(groups)} fingertips"


def test_twins_stand_in_the_canonical_a_pose_facing_plus_z(twins):
    for size, body in twins.items():
        sk = body.skeleton
        for side, sign in (("left", 1.0), ("right", -1.0)):
            for bone, child in (("UpperArm", "LowerArm"), ("LowerArm", "Hand")):
                d = sk.position(f"{side}{child}") - sk.position(f"{side}{bone}")
                d /= np.linalg.norm(d)
                # 45° below horizontal, in the frontal plane, towards the body's own side.
                np.testing.assert_allclose(d, [sign * np.sqrt(0.5), -np.sqrt(0.5), 0.0], atol=0.01)
            ankle, hip = sk.position(f"{side}Foot"), sk.position(f"{side}UpperLeg")
            spread = np.degrees(np.arctan2(sign * (ankle[0] - hip[0]), hip[1] - ankle[1]))
            assert 0.0 < spread < 6.0, f"{size} {side} leg spread {spread:.1f}°"
            assert sk.leaf_tips_m[f"{side}Toes"][2] > ankle[2] + 0.1, "toes point forward (+Z)"
        hips = sk.position("hips")
        assert hips[0] == pytest.approx(0.0, abs=1e-9) and hips[2] == pytest.approx(0.0, abs=1e-9)
        assert sk.position("rightHand") == pytest.approx(sk.position("leftHand") * [-1, 1, 1])


def test_the_rig_carries_a_raised_hand_with_its_bone(twins):
    """An arm raised above the head, the other lifted, a knee bent: the hand moves rigidly
    with its bone, as forward kinematics carries it, and ends up above the head."""
    body = twins["M"]
    pose = Pose(
        np.zeros(3),
        {
            "leftUpperArm": Rotation.from_euler("z", 110, degrees=True).as_quat(),
            "rightUpperArm": Rotation.from_euler("z", -30, degrees=True).as_quat(),
            "leftLowerLeg": Rotation.from_euler("x", 60, degrees=True).as_quat(),
        },
    )
    posed = body.posed_vertices(pose)
    assert np.isfinite(posed).all()
    rot, pos = forward_kinematics(body.skeleton, pose)
    j = JOINT_INDEX["leftHand"]
    hand = _owned_by(body, "leftHand")
    carried = (body.vertices_m[hand] - body.skeleton.position("leftHand")) @ rot[j].T + pos[j]
    np.testing.assert_allclose(posed[hand], carried, atol=1e-4)
    assert posed[hand, 1].min() > body.skeleton.position("head")[1], "the hand is above the head"


@pytest.mark.parametrize(("joint", "axis", "angle_deg"), STANDARD_POSES)
def test_every_size_poses_without_tearing(twins, joint, axis, angle_deg):
    """The standard poses of the import tests. MakeHuman's weights, carried over unchanged,
    stretch hm08's 5 mm armpit and groin edges about 5× in the 80° arm raise and the 70° hip
    flexion (the template itself: 4.7× and 4.0×), more than the 4× the import tests allow an
    auto-rigged scan, so the per-edge limit here is 6× (a body keeping its source rig, like
    CesiumMan, is allowed 10×); the rest of the check is unchanged: a vertex moves only with
    its bones, nothing collapses, 99.5 % of edges stay within 0.5–2×."""
    for body in twins.values():
        assert_poses_without_tearing(body, joint, axis, angle_deg, max_stretch=6.0)


def test_twin_glbs_pass_the_validator(twins):
    glbs = [twin_to_glb(body, provenance={"twinId": f"size-{k}"}) for k, body in twins.items()]
    for report in assert_valid_glbs(glbs):
        assert report["numErrors"] == 0
        assert report["info"]["totalVertexCount"] == 14517
