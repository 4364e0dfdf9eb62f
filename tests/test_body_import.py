"""Importing the real bodies: a rigged glTF (CesiumMan) and two unrigged scans."""

from __future__ import annotations

import numpy as np
import pytest

from spatialtwin.body.importer import ImportedTwin
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES
from spatialtwin.services.twins import import_body
from tests.conftest import shared
from tests.test_body_import_checks import STANDARD_POSES, assert_poses_without_tearing


@pytest.fixture(scope="module")
def cesium() -> ImportedTwin:
    return import_body(shared("bodies", "CesiumMan.glb"))


@pytest.fixture(scope="module")
def makehuman() -> ImportedTwin:
    return import_body(shared("bodies", "base.obj"))


@pytest.fixture(scope="module")
def garmentcode() -> ImportedTwin:
    return import_body(shared("bodies", "mean_all.obj"))


def _check_canonical_frame(twin: ImportedTwin) -> None:
    v = twin.body.vertices_m
    sk = twin.body.skeleton
    assert abs(v[:, 1].min()) < 1e-9  # feet on the floor
    assert np.allclose(sk.position("hips")[[0, 2]], 0.0, atol=1e-9)  # hips over the origin
    assert sk.position("leftHand")[0] > 0.2 > -0.2 > sk.position("rightHand")[0]  # left = +X
    for side in ("left", "right"):  # toes in front of the ankles: facing +Z
        assert sk.position(f"{side}Toes")[2] > sk.position(f"{side}Foot")[2] + 0.02
    ys = [sk.position(n)[1] for n in ("hips", "spine", "chest", "upperChest", "neck", "head")]
    assert np.all(np.diff(ys) > 0)
    skin = twin.body.skin
    assert skin.joints.shape == (len(v), 4) and skin.joints.max() < len(JOINT_NAMES)
    assert np.allclose(skin.weights.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(twin.body.normals, axis=1), 1.0, atol=1e-5)
    assert twin.body.uvs.shape == (len(v), 2) and np.isfinite(twin.body.uvs).all()


# ---------------------------------------------------------------- CesiumMan (rigged glTF)


def test_cesium_man_keeps_its_metres_and_stands_on_the_floor(cesium):
    r = cesium.report
    assert r.units == "m" and r.metres_per_unit == 1.0 and r.rig == "source"
    assert cesium.body.vertices_m[:, 1].max() == pytest.approx(1.507, abs=0.002)
    assert r.vertex_count == 3273 and r.triangle_count == 4672
    _check_canonical_frame(cesium)


def test_cesium_man_joints_map_by_chain_order_not_by_number(cesium):
    m = cesium.report.joint_mapping
    # The left arm is numbered 4 -> 3 -> 2 from the shoulder, the right arm 1 -> 2 -> 3.
    assert m["leftUpperArm"] == "Skeleton_arm_joint_L__4_"
    assert m["leftLowerArm"] == "Skeleton_arm_joint_L__3_"
    assert m["leftHand"] == "Skeleton_arm_joint_L__2_"
    assert m["rightUpperArm"] == "Skeleton_arm_joint_R"
    assert m["rightHand"] == "Skeleton_arm_joint_R__3_"
    assert m["hips"] == "Skeleton_torso_joint_1"
    assert m["leftUpperLeg"] == "leg_joint_L_1" and m["rightToes"] == "leg_joint_R_5"
    assert m["head"] == "Skeleton_neck_joint_2"
    assert set(cesium.report.interpolated_joints) == {"upperChest", "leftShoulder", "rightShoulder"}
    sk = cesium.body.skeleton
    # The left wrist of the file is at x = +0.455 m, 0.875 m up (before centring on the hips).
    assert sk.position("leftHand")[1] == pytest.approx(0.875, abs=0.005)
    assert sk.position("leftHand")[0] == pytest.approx(0.455 - 0.005, abs=0.01)


def test_cesium_man_weights_land_on_the_mapped_canonical_joints(cesium):
    body = cesium.body
    dominant = body.skin.joints[np.arange(body.vertex_count), np.argmax(body.skin.weights, axis=1)]
    v = body.vertices_m
    hand_region = v[:, 0] > 0.45  # beyond the left wrist
    assert np.mean(np.isin(dominant[hand_region], [JOINT_INDEX["leftHand"]])) > 0.9
    foot_region = (v[:, 1] < 0.05) & (v[:, 0] < 0)
    assert (
        np.mean(
            np.isin(dominant[foot_region], [JOINT_INDEX["rightFoot"], JOINT_INDEX["rightToes"]])
        )
        > 0.9
    )
    # Interpolated joints carry no weight from the file.
    assert not np.isin(body.skin.joints[body.skin.weights > 0], [JOINT_INDEX["upperChest"]]).any()


@pytest.mark.parametrize(("joint", "axis", "angle"), STANDARD_POSES)
def test_cesium_man_poses_without_tearing(cesium, joint, axis, angle):
    # CesiumMan's own skin has a hard seam in each armpit (a vertex 82 % on the arm beside one
    # wholly on the chest, 8 mm apart); raising the arm stretches that edge ~8x in the source
    # rig as well, so only that far is tolerated.
    assert_poses_without_tearing(cesium.body, joint, axis, angle, max_stretch=10.0)


# ---------------------------------------------------------------- MakeHuman base.obj (dm)


def test_makehuman_base_mesh_is_read_in_decimetres(makehuman):
    r = makehuman.report
    assert r.units == "dm" and r.metres_per_unit == pytest.approx(0.1)
    assert makehuman.body.vertices_m[:, 1].max() == pytest.approx(1.6657, abs=0.005)
    assert r.rig == "autorig"
    _check_canonical_frame(makehuman)


def test_makehuman_twin_is_only_the_body_group(makehuman):
    r = makehuman.report
    assert r.groups_used == ["body"]
    assert "helper-tights" in r.groups_dropped and "joint-l-elbow" in r.groups_dropped
    v, f = makehuman.body.welded()
    assert len(v) == 13380  # the skin's vertices; helpers and joint cubes are gone
    assert len(f) == 2 * 13378
    # Joint cubes float inside the body; helper hair/tights would widen it: neither is here.
    assert v[:, 0].max() == pytest.approx(0.4973, abs=0.003)
    assert r.uvs == "source"


def test_makehuman_autorig_matches_makehumans_own_joints(makehuman):
    """base.obj's joint cubes mark MakeHuman's joints; the auto-rig lands near them."""
    from spatialtwin.gltf.read_scene import read_scene

    scene = read_scene(shared("bodies", "base.obj").read_bytes(), "base.obj")
    skin = np.unique(scene.faces[scene.face_groups == scene.group_names.index("body")])
    bv = scene.vertices[skin]
    offset = np.array([-0.5 * (bv[:, 0].min() + bv[:, 0].max()), -bv[:, 1].min(), 0.0])
    pairs = {
        "joint-pelvis": "hips",
        "joint-l-upper-leg": "leftUpperLeg",
        "joint-l-knee": "leftLowerLeg",
        "joint-l-ankle": "leftFoot",
        "joint-r-knee": "rightLowerLeg",
        "joint-l-elbow": "leftLowerArm",
        "joint-r-elbow": "rightLowerArm",
        "joint-l-hand": "leftHand",
        "joint-l-shoulder": "leftUpperArm",
        "joint-neck": "neck",
    }
    sk = makehuman.body.skeleton
    for group, canon in pairs.items():
        faces = scene.faces[scene.face_groups == scene.group_names.index(group)]
        cube = (scene.vertices[np.unique(faces)].mean(axis=0) + offset) * 0.1
        ours = sk.position(canon)
        assert np.linalg.norm(ours[[0, 1]] - cube[[0, 1]]) < 0.07, (canon, ours, cube)


@pytest.mark.parametrize(("joint", "axis", "angle"), STANDARD_POSES)
def test_makehuman_poses_without_tearing(makehuman, joint, axis, angle):
    assert_poses_without_tearing(makehuman.body, joint, axis, angle)


# ---------------------------------------------------------------- GarmentCode mean_all.obj (m)


def test_garmentcode_body_measures_like_its_yaml(garmentcode):
    # mean_all.yaml is flat `name: number` lines under `body:` (no YAML library needed).
    truth = {}
    for line in shared("bodies", "mean_all.yaml").read_text().splitlines():
        key, _, value = line.strip().partition(":")
        if value.strip():
            truth[key] = float(value)
    m = garmentcode.report.measurements
    assert garmentcode.report.units == "m"
    assert m["height_m"] * 100 == pytest.approx(truth["height"], abs=2.0)
    assert m["chest_m"] * 100 == pytest.approx(truth["bust"], abs=2.0)
    assert m["waist_m"] * 100 == pytest.approx(truth["waist"], abs=2.0)
    assert m["hips_m"] * 100 == pytest.approx(truth["hips"], abs=2.0)


def test_garmentcode_scan_gets_cylindrical_uvs_and_smooth_normals(garmentcode):
    r = garmentcode.report
    assert r.uvs == "generated (cylindrical)" and r.normals == "computed (smooth)"
    body = garmentcode.body
    assert body.uvs.min() >= 0.0 and body.uvs.max() <= 1.0
    v, f = body.welded()
    assert 23700 < len(v) <= 23752 and len(f) == 47500  # seam copies weld back to the scan
    # Normals point outwards: away from the body's axis at the waist.
    waist = (np.abs(body.vertices_m[:, 1] - 1.05) < 0.02) & (np.abs(body.vertices_m[:, 0]) < 0.2)
    radial = body.vertices_m[waist][:, [0, 2]]
    assert np.mean((body.normals[waist][:, [0, 2]] * radial).sum(axis=1) > 0) > 0.95
    _check_canonical_frame(garmentcode)


def test_garmentcode_autorig_places_joints_inside_the_limbs(garmentcode):
    sk = garmentcode.body.skeleton
    assert sk.position("leftUpperLeg")[1] == pytest.approx(0.74, abs=0.05)
    assert sk.position("leftLowerLeg")[1] == pytest.approx(0.45, abs=0.05)
    # A-pose arms 45° down: the elbow is below and outside the shoulder by similar amounts.
    d = sk.position("leftLowerArm") - sk.position("leftUpperArm")
    assert np.degrees(np.arctan2(-d[1], d[0])) == pytest.approx(45.5, abs=8.0)
    assert sk.leaf_tips_m["leftHand"][0] == pytest.approx(0.652 + 0.002, abs=0.01)


@pytest.mark.parametrize(("joint", "axis", "angle"), STANDARD_POSES)
def test_garmentcode_poses_without_tearing(garmentcode, joint, axis, angle):
    assert_poses_without_tearing(garmentcode.body, joint, axis, angle)
