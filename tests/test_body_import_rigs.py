"""Importing rigs from other tools (renamed joints), the joint-map override, and bad input."""

from __future__ import annotations

import numpy as np
import pygltflib
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from spatialtwin.body.joint_mapping import split_joint_name
from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.twin_glb import twin_to_glb
from spatialtwin.services.twins import import_body
from tests.conftest import shared
from tests.test_body_import_checks import STANDARD_POSES

MIXAMO = {
    "hips": "mixamorig:Hips",
    "spine": "mixamorig:Spine",
    "chest": "mixamorig:Spine1",
    "upperChest": "mixamorig:Spine2",
    "neck": "mixamorig:Neck",
    "head": "mixamorig:Head",
}
BLENDER = {
    "hips": "hips",
    "spine": "spine",
    "chest": "chest",
    "upperChest": "upper_chest",
    "neck": "neck",
    "head": "head",
}
UNREAL = {
    "hips": "pelvis",
    "spine": "spine_01",
    "chest": "spine_02",
    "upperChest": "spine_03",
    "neck": "neck_01",
    "head": "head",
}
_LIMBS = {
    "mixamo": (
        "mixamorig:{S}Shoulder",
        "mixamorig:{S}Arm",
        "mixamorig:{S}ForeArm",
        "mixamorig:{S}Hand",
        "mixamorig:{S}UpLeg",
        "mixamorig:{S}Leg",
        "mixamorig:{S}Foot",
        "mixamorig:{S}ToeBase",
    ),
    "blender": (
        "shoulder.{s}",
        "upper_arm.{s}",
        "forearm.{s}",
        "hand.{s}",
        "thigh_{s}",
        "shin_{s}",
        "foot_{s}",
        "toe_{s}",
    ),
    "unreal": (
        "clavicle_{l}",
        "upperarm_{l}",
        "lowerarm_{l}",
        "hand_{l}",
        "thigh_{l}",
        "calf_{l}",
        "foot_{l}",
        "ball_{l}",
    ),
}
_CANON_LIMBS = ("Shoulder", "UpperArm", "LowerArm", "Hand", "UpperLeg", "LowerLeg", "Foot", "Toes")


def _names(family: str) -> dict[str, str]:
    names = dict({"mixamo": MIXAMO, "blender": BLENDER, "unreal": UNREAL}[family])
    for side, S, s, lo in (("left", "Left", "L", "l"), ("right", "Right", "R", "r")):
        for canon, pattern in zip(_CANON_LIMBS, _LIMBS[family], strict=True):
            names[side + canon] = pattern.format(S=S, s=s, l=lo)
    return names


def _renamed_glb(body, names: dict[str, str], root_rotation=None, root_scale=None) -> bytes:
    doc = pygltflib.GLTF2.load_from_bytes(twin_to_glb(body, provenance=None))
    for node in doc.nodes:
        if node.name in names:
            node.name = names[node.name]
    if root_rotation is not None or root_scale is not None:
        doc.nodes.append(
            pygltflib.Node(
                name="export_root",
                children=list(doc.scenes[0].nodes),
                rotation=root_rotation,
                scale=root_scale,
            )
        )
        doc.scenes[0].nodes = [len(doc.nodes) - 1]
    return b"".join(doc.save_to_bytes())


@pytest.fixture(scope="module")
def generated(request):
    return request.getfixturevalue("average_body")


@pytest.mark.parametrize("family", ["mixamo", "blender", "unreal"])
def test_renamed_rigs_map_back_onto_the_canonical_skeleton(generated, family):
    names = _names(family)
    twin = import_body(_renamed_glb(generated, names), filename=f"{family}.glb")
    assert twin.report.joint_mapping == names
    assert twin.report.interpolated_joints == []
    assert np.allclose(
        twin.body.skeleton.rest_positions_m, generated.skeleton.rest_positions_m, atol=2e-6
    )
    # Same weights on the same canonical joints, vertex for vertex (an unused vertex of the
    # source is dropped on import, so vertices are matched by position).
    _, src = cKDTree(generated.vertices_m).query(twin.body.vertices_m)
    assert np.allclose(twin.body.skin.to_dense(22), generated.skin.to_dense(22)[src], atol=2e-3)
    # So it poses as the source does, vertex for vertex: the left arm raised 80°.
    joint, axis, angle = STANDARD_POSES[0]
    pose = Pose(
        rotations={joint: Rotation.from_rotvec(np.deg2rad(angle) * np.array(axis)).as_quat()}
    )
    np.testing.assert_allclose(
        twin.body.posed_vertices(pose), generated.posed_vertices(pose)[src], atol=2e-3
    )


def test_a_rig_facing_backwards_in_centimetres_is_turned_and_scaled(generated):
    glb = _renamed_glb(
        generated,
        _names("mixamo"),
        root_rotation=[0.0, 1.0, 0.0, 0.0],
        root_scale=[100.0, 100.0, 100.0],
    )
    twin = import_body(glb, filename="turned.glb")
    assert twin.report.units == "cm"
    assert "180" in twin.report.facing
    assert np.allclose(
        twin.body.skeleton.rest_positions_m, generated.skeleton.rest_positions_m, atol=1e-4
    )


def test_explicit_joint_map_overrides_the_names(generated):
    names = {n: f"bone{i:02d}" for i, n in enumerate(JOINT_NAMES)}
    glb = _renamed_glb(generated, names)
    with pytest.raises(SpatialTwinError) as err:
        import_body(glb, filename="bones.glb", joint_map={"hips": "bone00"})
    assert err.value.code == "incomplete_joint_map" and err.value.status == 422
    twin = import_body(glb, filename="bones.glb", joint_map={n: names[n] for n in JOINT_NAMES})
    assert set(twin.report.mapping_method.values()) == {"override"}
    assert np.allclose(
        twin.body.skeleton.rest_positions_m, generated.skeleton.rest_positions_m, atol=2e-6
    )
    with pytest.raises(SpatialTwinError) as err:
        import_body(glb, filename="bones.glb", joint_map={"hips": "nope"})
    assert err.value.code == "invalid_joint_map"


@pytest.mark.parametrize(
    ("name", "side", "key"),
    [
        ("mixamorig:LeftUpLeg", "left", "upleg"),
        ("DEF-upper_arm.L", "left", "upperarm"),
        ("thigh_r", "right", "thigh"),
        ("upperarm01.R", "right", "upperarm01"),
        ("J_Bip_L_LowerArm", "left", "lowerarm"),
        ("leftToes", "left", "toes"),
        ("Skeleton_arm_joint_L__4_", "left", "arm4"),
        ("spine_01", None, "spine01"),
    ],
)
def test_joint_names_split_into_side_and_key(name, side, key):
    parts = split_joint_name(name)
    assert (parts.side, parts.key) == (side, key)


# ---------------------------------------------------------------- bad input


def _obj(vertices, faces=()) -> bytes:
    lines = [f"v {x} {y} {z}" for x, y, z in vertices]
    lines += ["f " + " ".join(str(i + 1) for i in f) for f in faces]
    return "\n".join(lines).encode()


def _scaled_mean_all(height_m: float) -> bytes:
    text = shared("bodies", "mean_all.obj").read_text()
    factor = height_m / 1.7199
    out = []
    for line in text.splitlines():
        if line.startswith("v "):
            x, y, z = (float(t) * factor for t in line.split()[1:4])
            line = f"v {x:.6f} {y:.6f} {z:.6f}"
        out.append(line)
    return "\n".join(out).encode()


@pytest.mark.parametrize(
    ("data", "filename", "code", "status"),
    [
        (b"glTF\x02\x00\x00\x00garbage-garbage-garbage", "body.glb", "corrupt_file", 400),
        (b"not a glb at all", "body.glb", "corrupt_file", 400),
        (b"solid x", "body.stl", "unsupported_format", 415),
        (_obj([(0, 0, 0), (1, 0, 0), (0, 1, 0)]), "points.obj", "no_triangles", 422),
        (
            _obj([(0, 0, 0), (float("nan"), 0, 0), (0, 1, 0)], [(0, 1, 2)]),
            "nan.obj",
            "non_finite_vertices",
            422,
        ),
    ],
)
def test_bad_files_are_refused_with_a_code(data, filename, code, status):
    with pytest.raises(SpatialTwinError) as err:
        import_body(data, filename=filename)
    assert err.value.code == code and err.value.status == status


@pytest.mark.parametrize("height_m", [4.0, 0.2])
def test_implausible_heights_in_metres_are_refused(height_m):
    with pytest.raises(SpatialTwinError) as err:
        import_body(_scaled_mean_all(height_m), filename="giant.obj", units="m")
    assert err.value.code == "implausible_size" and err.value.status == 422
    assert err.value.detail["height_m"] == pytest.approx(height_m, rel=1e-3)
    with pytest.raises(SpatialTwinError) as err:
        import_body(_scaled_mean_all(height_m), filename="giant.obj")
    assert err.value.code == "implausible_size"
