"""The USDZ writer on its own: a twin at rest, UVs per corner, an atomic write, and a checker
that fails on the packages it should refuse (so the looks' 0 errors mean something)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from spatialtwin.gltf.usdz_writer import scene_to_usdz, write_usdz
from spatialtwin.lod.scene import LodMaterial, LodMesh, LodScene, scene_from_twin_body
from spatialtwin.services.twins import import_twin
from tests.conftest import shared
from tests.textured_garment import checkerboard_png, skirt_mesh
from tests.usd_validation import assert_valid_usdz, validate_usdz


@pytest.fixture(scope="module")
def base_twin():
    return import_twin(shared("bodies", "base.obj").read_bytes(), "base.obj")


def test_a_twin_at_rest_is_its_own_height_in_metres(base_twin, tmp_path):
    from pxr import Usd, UsdGeom

    body = base_twin.body
    path = tmp_path / "twin.usdz"
    size = write_usdz(scene_from_twin_body(body, name="twin"), path)
    assert path.stat().st_size == size and not list(tmp_path.glob(".*.tmp"))
    assert_valid_usdz(path)
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_])
    box = cache.ComputeWorldBound(stage.GetDefaultPrim()).ComputeAlignedRange()
    height_m = box.GetMax()[1] - box.GetMin()[1]
    assert height_m == pytest.approx(np.ptp(body.vertices_m[:, 1]), abs=0.001)
    assert 1.6 < height_m < 2.0  # the MakeHuman base body, in metres (not cm, not dm)
    assert box.GetMin()[1] == pytest.approx(0.0, abs=0.001)  # feet on the floor
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Look/twin"))
    # Untextured skin: no UVs, and the glTF seam copies welded back into one point each.
    assert not UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
    assert len(mesh.GetPointsAttr().Get()) < len(body.vertices_m)
    assert len(mesh.GetFaceVertexIndicesAttr().Get()) == 3 * len(body.faces)


def test_uvs_per_corner_are_face_varying_and_indexed(tmp_path):
    from pxr import Usd, UsdGeom

    v, f, uv = skirt_mesh()
    normals = np.zeros_like(v)
    normals[:, [0, 2]] = v[:, [0, 2]]  # outward, radial
    mesh = LodMesh(
        "garment:skirt",
        "garment",
        v,
        f,
        normals / np.linalg.norm(normals, axis=1, keepdims=True),
        uv,
        material=LodMaterial("checker", base_color_image=checkerboard_png()),
    )
    corners = uv[f]
    path = tmp_path / "skirt.usdz"
    path.write_bytes(scene_to_usdz(LodScene([mesh]), corner_uvs={0: corners}))
    assert_valid_usdz(path)
    stage = Usd.Stage.Open(str(path))
    usd_mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Look/garment_skirt"))
    st = UsdGeom.PrimvarsAPI(usd_mesh).GetPrimvar("st")
    assert st.GetInterpolation() == UsdGeom.Tokens.faceVarying and st.IsIndexed()
    flat = np.asarray(st.ComputeFlattened(), dtype=np.float64)
    assert np.abs(flat - (corners.reshape(-1, 2) * [1, -1] + [0, 1])).max() < 1e-6
    # The back seam's duplicated column is one column of points again.
    assert len(usd_mesh.GetPointsAttr().Get()) == len(v) - len(np.unique(v[:, 1]))


def _bad_package(tmp_path: Path, z_up: bool) -> Path:
    """A package as a careless exporter makes it: a .usda root, no defaultPrim, no
    metersPerUnit, optionally Z up, and a text file beside it."""
    from pxr import Sdf, Usd, UsdGeom, UsdUtils

    root = tmp_path / "bad.usda"
    stage = Usd.Stage.CreateNew(str(root))
    if z_up:
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.Mesh.Define(stage, "/Thing")
    stage.GetRootLayer().Save()
    package = tmp_path / "bad.usdz"
    assert UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(root)), str(package))
    with zipfile.ZipFile(package, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("notes.txt", "not allowed in a USDZ")
    return package


def test_the_checker_refuses_what_ar_quick_look_would(tmp_path):
    report = validate_usdz(_bad_package(tmp_path, z_up=True))
    text = "\n".join(report.errors)
    for expected in (
        "MissingDefaultPrim",
        "MissingMetersPerUnitMetadata",
        "first file must be a .usdc",
        "notes.txt",
        "Y-up",
    ):
        assert expected in text, (expected, text)
    with pytest.raises(AssertionError):
        assert_valid_usdz(_bad_package(tmp_path / "again", z_up=False))
