"""The shared mesh helpers (`spatialtwin.geometry`) against shapes whose answers are known.

Expected values come from geometry worked out by hand (a cube's face normals, a grid's
perimeter) or from trimesh, an independent implementation, on the real hm08 template body.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from spatialtwin.geometry import (
    boundary_edges,
    boundary_loops,
    boundary_vertices,
    coincident_groups,
    face_normals,
    unique_edges,
    vertex_normals,
    weld_map,
    welded,
)
from tests.conftest import shared


def grid(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """A flat (nx × ny)-cell sheet in the xy plane, 1 cm cells, counter-clockwise seen from +z."""
    xs, ys = np.meshgrid(np.arange(nx + 1) * 0.01, np.arange(ny + 1) * 0.01, indexing="ij")
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1)
    idx = np.arange((nx + 1) * (ny + 1)).reshape(nx + 1, ny + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    f = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    return v, f


def open_cylinder(segments: int = 24, rings: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A tube of radius 0.1 m, open at both ends: two openings of `segments` vertices each."""
    t = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    v = np.array([[0.1 * np.cos(a), 0.05 * r, 0.1 * np.sin(a)] for r in range(rings) for a in t])
    f = []
    for r in range(rings - 1):
        for k in range(segments):
            a, b = r * segments + k, r * segments + (k + 1) % segments
            f += [[a, a + segments, b], [b, a + segments, b + segments]]
    return v, np.asarray(f)


def test_face_normals_of_a_cube_point_out_of_its_faces():
    box = trimesh.creation.box()
    n = face_normals(box.vertices, box.faces)
    centres = box.triangles_center
    # Every normal is a unit axis vector pointing the way its face lies from the centre.
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0)
    assert np.allclose(np.abs(n).max(axis=1), 1.0)
    assert np.all(np.einsum("ij,ij->i", n, centres) > 0.49)


def test_vertex_normals_match_trimesh_area_weighting_on_the_template_body():
    from spatialtwin.gltf.template_npz import shipped_template

    body = shipped_template().body
    v, f = body.welded()
    ours = vertex_normals(v, f)
    mesh = trimesh.Trimesh(v, f, process=False)
    # trimesh's area-weighted normals, computed independently from its face normals and areas.
    expected = np.zeros_like(v)
    for k in range(3):
        np.add.at(expected, f[:, k], mesh.face_normals * mesh.area_faces[:, None])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(ours - expected).max() < 1e-9


def test_vertex_normals_of_a_flat_sheet_are_its_plane_normal():
    v, f = grid(4, 3)
    n = vertex_normals(v, f)
    assert np.allclose(n, [0.0, 0.0, 1.0])
    assert np.allclose(vertex_normals(v, f[:, ::-1]), [0.0, 0.0, -1.0])


def test_a_vertex_without_area_gets_zero_or_the_fallback():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]])
    f = np.array([[0, 1, 2]])
    assert np.allclose(vertex_normals(v, f)[3], 0.0)
    assert np.allclose(vertex_normals(v, f, fallback=(0, 1, 0))[3], [0.0, 1.0, 0.0])
    assert np.allclose(vertex_normals(v, f, fallback=(0, 1, 0))[:3], [0.0, 0.0, 1.0])


def test_unique_edges_of_a_grid_follow_eulers_count():
    nx, ny = 5, 3
    v, f = grid(nx, ny)
    e = unique_edges(f)
    # V − E + F = 1 for a disc: E = V + F − 1.
    assert len(e) == len(v) + len(f) - 1
    assert np.all(e[:, 0] < e[:, 1])
    assert len(np.unique(e, axis=0)) == len(e)


def test_boundary_of_a_grid_is_its_perimeter():
    nx, ny = 5, 3
    v, f = grid(nx, ny)
    assert len(boundary_edges(f)) == 2 * (nx + ny)
    on = boundary_vertices(f, len(v))
    xy = v[:, :2]
    perimeter = np.isclose(xy, 0).any(axis=1) | np.isclose(xy, [0.05, 0.03]).any(axis=1)
    assert np.array_equal(on, perimeter)


def test_a_closed_surface_has_no_boundary():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    assert len(boundary_edges(sphere.faces)) == 0
    assert boundary_loops(sphere.faces) == []
    assert not boundary_vertices(sphere.faces, len(sphere.vertices)).any()


def test_boundary_loops_of_a_tube_are_its_two_rims_in_order():
    segments = 24
    v, f = open_cylinder(segments)
    loops = boundary_loops(f)
    assert [len(loop) for loop in loops] == [segments, segments]
    heights = sorted(float(v[loop, 1].mean()) for loop in loops)
    assert heights == pytest.approx([0.0, 0.2])
    for loop in loops:
        # Consecutive loop vertices (and last → first) are neighbours on the rim: one segment
        # of a regular 24-gon of radius 0.1 m apart.
        steps = np.linalg.norm(v[loop] - v[np.roll(loop, -1)], axis=1)
        assert steps == pytest.approx(np.full(segments, 2 * 0.1 * np.sin(np.pi / segments)))


def test_boundary_loop_runs_the_way_its_faces_do():
    v, f = grid(2, 2)
    (loop,) = boundary_loops(f)
    # Counter-clockwise faces seen from +z walk their outer rim counter-clockwise: the signed
    # area of the loop polygon is positive.
    x, y = v[loop, 0], v[loop, 1]
    assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) == pytest.approx(0.02 * 0.02)


def test_weld_map_points_seam_copies_at_their_first_vertex():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 0, 4e-7], [1, 0, 0]])
    assert weld_map(v).tolist() == [0, 1, 0, 1, 1]  # 0.4 µm is within 1 µm
    assert weld_map(v, decimals=7).tolist() == [0, 1, 0, 3, 1]
    first, group = coincident_groups(v)
    assert np.array_equal(first[group], weld_map(v))


def test_welding_a_split_sheet_closes_its_seam():
    v, f = grid(4, 2)
    # Split the sheet along x = 0.02 m: the right half gets its own copies of the seam.
    seam = np.isclose(v[:, 0], 0.02)
    copies = np.flatnonzero(seam)
    v2 = np.concatenate([v, v[copies]])
    remap = np.arange(len(v))
    remap[copies] = len(v) + np.arange(len(copies))
    right = v[f].mean(axis=1)[:, 0] > 0.02
    f2 = f.copy()
    f2[right] = remap[f[right]]
    assert len(boundary_edges(f2)) == len(boundary_edges(f)) + 2 * 2  # the seam opened
    wv, wf = welded(v2, f2, weld_map(v2))
    assert len(wv) == len(v)
    assert len(boundary_edges(wf)) == len(boundary_edges(f))
    assert np.allclose(np.sort(wv, axis=0), np.sort(v, axis=0))


def test_welded_body_of_the_cesium_man_matches_trimesh_merge():
    """The weld map of a real file (UV seams) against trimesh's own vertex merging."""
    from spatialtwin.gltf.read_scene import read_scene

    scene = read_scene(shared("bodies", "CesiumMan.glb").read_bytes(), "CesiumMan.glb")
    wv, _ = welded(scene.vertices, scene.faces, weld_map(scene.vertices))
    merged = trimesh.Trimesh(scene.vertices, scene.faces, process=False)
    merged.merge_vertices(merge_tex=True, merge_norm=True, digits_vertex=6)
    assert len(wv) == len(merged.vertices)
    assert len(wv) < len(scene.vertices)
