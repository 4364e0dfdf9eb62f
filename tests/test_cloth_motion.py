"""Motion for live cloth: BVH parsing, retargeting onto a twin, contact search reuse, pins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from spatialtwin.body.parametric import Measurements
from spatialtwin.body.pose import forward_kinematics
from spatialtwin.body.skeleton import BONE_CHILD, JOINT_INDEX
from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.contacts import Contacts
from spatialtwin.cloth.fabric_params import DENIM
from spatialtwin.cloth.model import build_cloth_model
from spatialtwin.cloth.solver import ClothSim
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.bvh import parse_bvh, read_bvh
from spatialtwin.tracking.motion import (
    CMU_BONES,
    SkinnedMotion,
    from_rest,
    retarget_bvh,
    with_turns_and_arm_raises,
)
from tests.cloth_scenes import flared_skirt
from tests.conftest import generated_twin

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WALK = DATA / "motion" / "scaled_131_01.bvh"

TWO_JOINTS = """HIERARCHY
ROOT A
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT B
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 2 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
0 0 0 0 0 0 0 0 0
1 2 3 90 0 0 0 0 90
"""


@pytest.fixture(scope="module")
def walk():
    return read_bvh(WALK)


@pytest.fixture(scope="module")
def twin():
    return generated_twin(Measurements(1.70, 0.95, 0.80, 1.00, 0.78, 0.42))


def test_bvh_reads_the_cmu_walk_in_metres(walk):
    assert walk.frame_count == 995
    assert walk.frame_time_s == pytest.approx(0.008333)
    assert walk.names[0] == "Hips" and "LeftKnee" in walk.names and "Head_end" in walk.names
    rot, pos = walk.world_transforms()
    # the root's first frame is the file's first three values (metres)
    np.testing.assert_allclose(pos[0, 0], [0.295202, 0.953915, -1.913373], atol=1e-6)
    # rigid bones: the knee–ankle distance is the ankle's offset length in every frame
    knee, ankle = walk.index("LeftKnee"), walk.index("LeftAnkle")
    bone = np.linalg.norm(pos[:, ankle] - pos[:, knee], axis=1)
    np.testing.assert_allclose(bone, np.linalg.norm(walk.offsets[ankle]), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rot[:, 5]), 1.0, atol=1e-9)


def test_bvh_euler_channels_apply_in_listed_order():
    clip = parse_bvh(TWO_JOINTS)
    _, pos = clip.world_transforms()
    np.testing.assert_allclose(pos[0, 1], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pos[0, 2], [1.0, 2.0, 0.0], atol=1e-12)
    # frame 1: root at (1, 2, 3) turned 90° about Z: B's offset (1, 0, 0) → (0, 1, 0);
    # B turned a further 90° about its Y: the end's (0, 2, 0) stays along the world's −X
    np.testing.assert_allclose(pos[1, 1], [1.0, 3.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(pos[1, 2], [-1.0, 3.0, 3.0], atol=1e-12)


def test_bad_bvh_is_refused_with_its_line():
    with pytest.raises(SpatialTwinError) as e:
        parse_bvh(TWO_JOINTS.replace("OFFSET 1 0 0", "OFFSET 1 zero 0"))
    assert e.value.code == "bad_bvh" and e.value.detail["line"] == 8
    with pytest.raises(SpatialTwinError) as e:
        parse_bvh(TWO_JOINTS.rsplit("\n", 2)[0])  # a frame missing
    assert e.value.code == "bad_bvh"


def test_retargeted_bones_point_where_the_captured_bones_point(walk, twin):
    clip = retarget_bvh(walk, twin.skeleton, arm_abduction_rad=0.0)
    assert clip.frame_count == 249  # 120 fps → 30 fps
    _, bvh_pos = walk.world_transforms()
    for frame in (0, 90, 200):
        _, pos = forward_kinematics(twin.skeleton, clip.pose(frame))
        for name in ("leftUpperArm", "rightLowerArm", "leftUpperLeg", "rightLowerLeg"):
            src, tip = CMU_BONES[name]
            want = bvh_pos[4 * frame, walk.index(tip)] - bvh_pos[4 * frame, walk.index(src)]
            got = pos[JOINT_INDEX[BONE_CHILD[name]]] - pos[JOINT_INDEX[name]]
            cos = want @ got / np.linalg.norm(want) / np.linalg.norm(got)
            assert cos > 1.0 - 1e-9, (frame, name)
    # strides are scaled to the twin's legs: the hips travel ~2.6 m forwards in the clip
    assert 2.0 < np.ptp(clip.root_m[:, 2]) < 3.0


def test_turns_and_arm_flings_are_fast_and_complete(walk, twin):
    clip = retarget_bvh(walk, twin.skeleton)
    fast = with_turns_and_arm_raises(clip)
    hips = JOINT_INDEX["hips"]
    # 90° turn on the spot at 3 s, over 0.4 s: heading of the hips' forward axis
    fwd = fast.world_rotations[:, hips, :, 2]
    base = clip.world_rotations[[clip.frame_index(f) for f in range(fast.frame_count)], hips]
    turned = np.degrees(np.arctan2(fwd[:, 0], fwd[:, 2]) - np.arctan2(base[:, 0, 2], base[:, 2, 2]))
    turned = (turned + 180.0) % 360.0 - 180.0
    assert abs(turned[int(2.9 * 30)]) < 1.0
    assert abs(turned[int(3.5 * 30)] - 90.0) < 1.0
    # arms overhead at 1.25 s: hands above the head
    _, pos = forward_kinematics(twin.skeleton, fast.pose(int(1.4 * 30)))
    assert pos[JOINT_INDEX["leftHand"], 1] > pos[JOINT_INDEX["head"], 1]
    assert pos[JOINT_INDEX["rightHand"], 1] > pos[JOINT_INDEX["head"], 1]


def test_skinned_motion_is_one_closed_surface_starting_at_rest(walk, twin):
    motion = SkinnedMotion(twin, from_rest(retarget_bvh(walk, twin.skeleton)))
    v0 = motion.vertices(0)
    mesh = trimesh.Trimesh(v0, motion.faces, process=False)
    assert mesh.is_watertight
    keep = np.unique(twin.weld_map)
    np.testing.assert_allclose(v0, twin.vertices_m[keep], atol=1e-9)  # frame 0 is the rest
    assert np.ptp(motion.vertices(60)[:, 2] - v0[:, 2]) > 0.05  # and then it moves


def test_contact_search_reusing_last_frame_matches_a_fresh_search():
    body = trimesh.load(DATA / "bodies" / "mean_all.obj", process=False)
    bv, bf = np.asarray(body.vertices), np.asarray(body.faces)
    rng = np.random.default_rng(3)
    pick = rng.choice(len(bv), 4000, replace=False)
    normals = body.vertex_normals[pick]
    points = bv[pick] + normals * rng.uniform(-0.004, 0.03, size=(len(pick), 1))
    collider = BodyCollider(bv, bf)
    contacts = Contacts()
    agree = []
    for _ in range(12):
        points = points + rng.normal(scale=0.002, size=points.shape)
        tri_r, dist_r = collider.detect_contacts(points, 0.015, contacts=contacts)
        tri_f, dist_f = collider.detect_contacts(points, 0.015)
        both = (tri_r >= 0) & (tri_f >= 0)
        assert np.sum(both) > 0.5 * len(points)
        agree.append(np.mean(np.abs(dist_r[both] - dist_f[both]) < 1e-6))
        # nobody in contact is missed
        assert np.mean((tri_f >= 0) == (tri_r >= 0)) > 0.995
    assert np.mean(agree) > 0.98


def test_rigid_pins_ride_the_body_without_stretching_the_waistband():
    body = trimesh.load(DATA / "bodies" / "mean_all.obj", process=False)
    bv, bf = np.asarray(body.vertices), np.asarray(body.faces)
    sk = flared_skirt(bv, 500)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        DENIM,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    sim = ClothSim(model, bv, bf, sk.positions_m)
    angle = np.radians(30.0)
    turn = np.array(
        [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    )
    shift = np.array([0.05, 0.0, 0.1])
    state = sim.step(bv @ turn.T + shift, 1 / 30)
    np.testing.assert_allclose(
        state.positions_m[sk.waistband], sk.positions_m[sk.waistband] @ turn.T + shift, atol=1e-9
    )
