"""Every twin GLB the project writes passes the Khronos validator with zero errors."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from spatialtwin.body.pose import Pose
from spatialtwin.gltf.twin_glb import twin_to_glb
from tests.gltf_validation import validate_glbs


def test_rest_and_posed_twin_glbs_are_valid(average_body):
    q = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_quat()
    posed = Pose(np.array([0.05, -0.1, 0.3]), {"leftUpperArm": q, "head": q, "rightFoot": q})
    glbs = [
        twin_to_glb(average_body),
        twin_to_glb(average_body, pose=posed, provenance={"twinId": "t", "digitalTwin": True}),
    ]
    reports = validate_glbs(glbs)
    for report in reports:
        assert report["numErrors"] == 0, report["messages"]
        assert report["numWarnings"] == 0, report["messages"]
    info = reports[0]["info"]
    assert info["totalTriangleCount"] == len(average_body.faces)
    assert info["totalVertexCount"] == average_body.vertex_count
    assert info["hasSkins"] is True
    assert info["maxInfluences"] == 4


def test_imported_twin_glbs_are_valid():
    from spatialtwin.services.twins import import_body
    from tests.conftest import shared

    glbs = []
    for name in ("CesiumMan.glb", "base.obj", "mean_all.obj"):
        path = shared("bodies", name)
        imported = import_body(path.read_bytes(), filename=name)
        glbs.append(twin_to_glb(imported.body, provenance={"twinId": name, "digitalTwin": True}))
    for report in validate_glbs(glbs):
        assert report["numErrors"] == 0, report["messages"]
        assert report["info"]["hasSkins"] is True
