"""`garment.embedding`: points bound to a driving mesh come back exactly on its rest shape,
move rigidly with it, keep their normal offset when it bends, and refuse bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.embedding import embed_points
from spatialtwin.services.ingest import prepare_garment

REPO = Path(__file__).resolve().parents[1]


def grid_sheet(n: int, size_m: float) -> tuple[np.ndarray, np.ndarray]:
    """An n × n vertex sheet in the XZ plane (normal +Y), `size_m` wide."""
    xs = np.linspace(0.0, size_m, n)
    x, z = np.meshgrid(xs, xs, indexing="ij")
    v = np.column_stack([x.ravel(), np.zeros(n * n), z.ravel()])
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    upper = np.stack([a, d, c], axis=-1).reshape(-1, 3)
    lower = np.stack([a, c, b], axis=-1).reshape(-1, 3)
    f = np.concatenate([upper, lower])
    return v, f


@pytest.fixture(scope="module")
def tshirt():
    path = REPO / "assets" / "garments" / "tshirt.glb"
    return prepare_garment(path.read_bytes(), path.name, "top", "m")


def test_rest_shape_returns_the_points_exactly(tshirt):
    render, sim = tshirt.render, tshirt.simulation
    emb = embed_points(render.vertices_m, sim.vertices_m, sim.faces)
    assert emb.point_count == render.vertex_count
    back = emb.apply(sim.vertices_m)
    assert np.abs(back - render.vertices_m).max() < 1e-9
    # The render mesh lies on the remeshed cloth: offsets are at most millimetres.
    assert emb.distance_m.max() < 0.005
    np.testing.assert_allclose(emb.barycentric.sum(axis=1), 1.0, atol=1e-12)


def test_rigid_motion_moves_the_points_rigidly(tshirt):
    render, sim = tshirt.render, tshirt.simulation
    rng = np.random.default_rng(3)
    # Points up to 3 cm off the shirt, as a garment off a body would be.
    points = render.vertices_m + rng.normal(0.0, 0.01, render.vertices_m.shape)
    emb = embed_points(points, sim.vertices_m, sim.faces)
    turn = Rotation.from_euler("xyz", [20, -35, 50], degrees=True)
    shift = np.array([0.3, -0.2, 1.1])
    moved = emb.apply(turn.apply(sim.vertices_m) + shift)
    np.testing.assert_allclose(moved, turn.apply(points) + shift, atol=1e-9)


def test_bending_keeps_the_normal_offset_along_the_new_normal():
    v, f = grid_sheet(21, 1.0)
    above = np.array([[0.5, 0.02, 0.5], [0.25, -0.01, 0.6]])  # 2 cm above, 1 cm below
    emb = embed_points(above, v, f)
    np.testing.assert_allclose(emb.normal_offset_m, [0.02, -0.01], atol=1e-12)
    # Roll the sheet onto a cylinder of radius 1 m about the Z axis through (0.5, -1, ·):
    # a point d above the sheet lands at radius 1 + d.
    radius = 1.0
    angle = (v[:, 0] - 0.5) / radius
    rolled = np.column_stack(
        [0.5 + radius * np.sin(angle), -radius + radius * np.cos(angle), v[:, 2]]
    )
    out = emb.apply(rolled)
    centre = np.array([0.5, -radius])
    got_radius = np.linalg.norm(out[:, :2] - centre, axis=1)
    # Flat triangles approximate the cylinder: within 0.2 mm at 5 cm edges.
    np.testing.assert_allclose(got_radius, [1.02, 0.99], atol=2e-4)
    np.testing.assert_allclose(out[:, 2], above[:, 2], atol=1e-9)


def test_interpolate_blends_vertex_values():
    v, f = grid_sheet(3, 1.0)
    emb = embed_points(np.array([[0.25, 0.0, 0.25], [1.0, 0.0, 1.0]]), v, f)
    np.testing.assert_allclose(emb.interpolate(v[:, 0]), [0.25, 1.0], atol=1e-12)
    np.testing.assert_allclose(emb.interpolate(v)[:, 2], [0.25, 1.0], atol=1e-12)


@pytest.mark.parametrize(
    "case", ["faces-out-of-range", "points-not-3d", "nan-point", "no-faces", "apply-wrong-count"]
)
def test_bad_input_is_refused(case):
    v, f = grid_sheet(3, 1.0)
    points = np.array([[0.5, 0.1, 0.5]])
    if case == "apply-wrong-count":
        emb = embed_points(points, v, f)
        with pytest.raises(SpatialTwinError) as err:
            emb.apply(v[:-1])
        assert err.value.code == "embedding_mismatch"
        return
    if case == "faces-out-of-range":
        f = f + 100
    elif case == "points-not-3d":
        points = points[:, :2]
    elif case == "nan-point":
        points = np.array([[np.nan, 0.0, 0.0]])
    elif case == "no-faces":
        f = np.zeros((0, 3), dtype=np.int64)
    with pytest.raises(SpatialTwinError) as err:
        embed_points(points, v, f)
    assert err.value.code == "invalid_embedding_input"
