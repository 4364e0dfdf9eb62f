"""The project's own sample garments, cut around the sample twin Ava: T-shirt, skirt, trousers.

A garment here is what a pattern maker would drape on a dress form: a surface a set distance
(the ease) outside the body, cut open at the hem, neck, sleeve and leg ends. Each sample is
built in small steps over plain arrays:

1. signed distance to the twin's body on a grid (metres, negative inside),
2. the garment's solid: that distance minus its ease (or, for the A-line skirt, a flared shell
   around the tape-measure sections of the hips), meshed with marching cubes,
3. rough cuts a few centimetres beyond the final openings, keeping the piece around the body,
4. isotropic remeshing (Botsch & Kobbelt 2004, via gpytoolbox) to a ~1.5 cm edge,
5. clean cuts: vertices within 0.3 edge of a cut are snapped onto it before clipping, and the
   short boundary edges left behind are collapsed, so the openings are straight hems,
6. a second remeshing pass with the openings fixed, outward normals and front-projected UVs.

The result is a single-layer open surface (not a solid) with near-equilateral triangles, which
is what the cloth solver's stretch and bending constraints assume. The UVs are a front
projection in metres (1 UV unit = 1 m of fabric), seamless, so the mesh stays one connected
sheet with no UV-seam duplicates for a solver to weld.

    python -m spatialtwin.cli.samples --out assets/garments

writes `<name>.glb` (`gltf.sample_glb`) plus a `<name>.json` sidecar (sku, name, category,
size_label, fabric, fitted_to) for each sample. The run is deterministic: the twin is
regenerated from `assets/twins/ava.json` on the shipped hm08 template, and nothing random is
involved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gpytoolbox
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, cKDTree
from skimage.measure import marching_cubes

from spatialtwin.body.measure import BodyMeasurements, measure_body, torso_loop
from spatialtwin.body.skeleton import JOINT_INDEX
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.geometry import boundary_edges, coincident_groups, unique_edges, vertex_normals

Array = NDArray[np.float64]
Faces = NDArray[np.int64]
CutField = Callable[[Array], Array]  # metres-like signed value, > 0 on the side cut away

TARGET_EDGE_M = 0.015
GRID_SPACING_M = 0.006
DISTANCE_BAND_M = 0.045  # exact distances are computed only this close to the skin
ROUGH_CUT_MARGIN_M = 0.03
SNAP_FRACTION = 0.3  # of the target edge: closer vertices are moved onto a cut
SHORT_BOUNDARY_FRACTION = 0.6  # of the target edge: shorter hem edges are collapsed
# A sleeve is cut within this distance of the arm's axis: the sleeve's radius (arm + ease,
# ~7 cm) with room to spare, but short of the shirt's side under the arm (hm08's armpit is
# ~10 cm from the upper arm's axis where the sleeve ends), which a wider cut would open.
SLEEVE_REACH_M = 0.095


@dataclass(frozen=True)
class SampleSpec:
    """Catalogue facts of one sample garment (what the sidecar JSON carries)."""

    file_stem: str
    sku: str
    name: str
    category: str
    size_label: str
    fabric: str
    colour_rgba: tuple[float, float, float, float]


SPECS: dict[str, SampleSpec] = {
    "tshirt": SampleSpec(
        "tshirt", "ST-SAMPLE-TEE-S", "Crew-neck T-shirt", "top", "S", "cotton-jersey",
        (0.16, 0.33, 0.55, 1.0),
    ),
    "skirt": SampleSpec(
        "skirt_a_line", "ST-SAMPLE-SKIRT-S", "A-line skirt", "skirt", "S", "cotton-poplin",
        (0.62, 0.19, 0.22, 1.0),
    ),
    "trousers": SampleSpec(
        "trousers", "ST-SAMPLE-TROUSERS-28", "Straight-leg trousers", "trousers", "W28 L31",
        "denim", (0.13, 0.20, 0.33, 1.0),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class SampleMesh:
    """A garment surface in metres, +Y up, facing +Z: one connected open sheet."""

    vertices_m: Array
    faces: Faces
    normals: Array
    uvs: Array


# ---------------------------------------------------------------------------------------------
# The twin the samples are fitted to.


@dataclass(frozen=True)
class FittingBody:
    """The twin as a dress form: its mesh, tape measurements and a signed distance to its skin."""

    body: TwinBody
    vertices_m: Array
    faces: Faces
    measurements: BodyMeasurements
    _samples_m: Array
    _sample_normals: Array
    _tree: cKDTree

    @classmethod
    def from_body(cls, body: TwinBody) -> FittingBody:
        v, f = body.welded()
        v = np.asarray(v, dtype=np.float64)
        f = np.asarray(f, dtype=np.int64)
        # Edge midpoints as well as vertices: ~5 mm apart, so the tangent-plane distance below
        # is exact to a tenth of a millimetre at the ease distances used here.
        edges = unique_edges(f)
        normals = vertex_normals(v, f)
        mid_n = normals[edges[:, 0]] + normals[edges[:, 1]]
        samples = np.concatenate([v, 0.5 * (v[edges[:, 0]] + v[edges[:, 1]])])
        sample_normals = np.concatenate([normals, mid_n])
        sample_normals /= np.linalg.norm(sample_normals, axis=1, keepdims=True)
        measured = measure_body(v, f, body.skeleton.rest_positions_m)
        return cls(body, v, f, measured, samples, sample_normals, cKDTree(samples))

    def joint(self, name: str) -> Array:
        return np.asarray(self.body.skeleton.rest_positions_m[JOINT_INDEX[name]], dtype=np.float64)

    def signed_distance_near(self, points_m: Array, band_m: float) -> Array:
        """Signed distance (metres, negative inside) within `band_m` of the skin, NaN beyond."""
        d, i = self._tree.query(points_m, distance_upper_bound=band_m, workers=-1)
        out = np.full(len(points_m), np.nan)
        ok = np.isfinite(d)
        nearest = i[ok]
        out[ok] = np.einsum(
            "ij,ij->i", points_m[ok] - self._samples_m[nearest], self._sample_normals[nearest]
        )
        return out

    def distance_grid(self, lo_m: Array, hi_m: Array, spacing_m: float) -> tuple[Array, Array]:
        """Signed distance on a grid (values clamped to ±band far from the skin) and its origin."""
        shape = tuple(int(np.ceil((hi_m[k] - lo_m[k]) / spacing_m)) + 1 for k in range(3))
        axes = [lo_m[k] + spacing_m * np.arange(shape[k]) for k in range(3)]
        points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        sd = self.signed_distance_near(points, DISTANCE_BAND_M).reshape(shape)
        unknown = np.isnan(sd)
        if unknown.all():
            raise ValueError("the grid does not reach the body")
        # Far from the skin only the side matters: take it from the nearest known grid point.
        _, nearest = ndimage.distance_transform_edt(unknown, return_indices=True)
        sign = np.sign(sd[tuple(nearest)])
        return np.where(unknown, sign * DISTANCE_BAND_M, sd), np.asarray(lo_m, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Mesh steps: plain functions over (vertices, faces).


def drop_unused_vertices(v: Array, f: Faces) -> tuple[Array, Faces]:
    used, inverse = np.unique(f, return_inverse=True)
    return v[used], inverse.reshape(-1, 3).astype(np.int64)


def weld_coincident(v: Array, f: Faces, decimals: int = 7) -> tuple[Array, Faces]:
    """Merge vertices equal to `decimals` places of a metre and drop the triangles that collapse."""
    first, group = coincident_groups(v, decimals)
    f = group[f]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return drop_unused_vertices(v[first], f[ok])


def largest_piece(v: Array, f: Faces) -> tuple[Array, Faces]:
    """The connected piece with the most triangles (a cut-off head or hand is discarded)."""
    n = len(v)
    graph = coo_matrix((np.ones(f.size), (np.repeat(f[:, 0], 3), f.ravel())), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    face_label = label[f[:, 0]]
    keep = np.argmax(np.bincount(face_label))
    return drop_unused_vertices(v, f[face_label == keep])


def clip_by_field(v: Array, f: Faces, value: Array) -> tuple[Array, Faces]:
    """Keep the part of the surface where `value` ≤ 0, splitting triangles along value = 0."""
    inside = value <= 0
    fi = inside[f]
    count = fi.sum(axis=1)
    kept = f[count == 3]
    mixed = (count == 1) | (count == 2)
    fm, im = f[mixed], fi[mixed]
    lone_inside = count[mixed] == 1
    # (1) rotate each cut triangle so that its odd vertex (alone on its side) comes first.
    odd = np.where(lone_inside[:, None], im, ~im)
    k = np.argmax(odd, axis=1)
    r = np.arange(len(fm))
    fm = np.stack([fm[r, k], fm[r, (k + 1) % 3], fm[r, (k + 2) % 3]], axis=1)
    # (2) one new vertex per cut edge, shared by the two triangles beside it.
    cut_edges = np.concatenate([np.sort(fm[:, [0, 1]], 1), np.sort(fm[:, [2, 0]], 1)])
    edges, inverse = np.unique(cut_edges, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    va, vb = value[edges[:, 0]], value[edges[:, 1]]
    t = va / (va - vb)
    new_points = v[edges[:, 0]] + t[:, None] * (v[edges[:, 1]] - v[edges[:, 0]])
    p01 = len(v) + inverse[: len(fm)]
    p20 = len(v) + inverse[len(fm) :]
    # (3) a lone inside vertex keeps a triangle; two inside vertices keep a quad (2 triangles).
    a, b = lone_inside, ~lone_inside
    new_faces = [
        kept,
        np.stack([fm[a, 0], p01[a], p20[a]], axis=1),
        np.stack([fm[b, 1], fm[b, 2], p20[b]], axis=1),
        np.stack([fm[b, 1], p20[b], p01[b]], axis=1),
    ]
    return drop_unused_vertices(np.concatenate([v, new_points]), np.concatenate(new_faces))


def collapse_short_boundary_edges(v: Array, f: Faces, min_length_m: float) -> tuple[Array, Faces]:
    """Merge neighbouring hem vertices closer than `min_length_m` into their midpoint."""
    v = v.copy()
    for _ in range(20):
        be = boundary_edges(f)
        length = np.linalg.norm(v[be[:, 0]] - v[be[:, 1]], axis=1)
        order = np.argsort(length, kind="stable")
        order = order[length[order] < min_length_m]
        if len(order) == 0:
            break
        touched = np.zeros(len(v), dtype=bool)
        remap = np.arange(len(v))
        for e in order:  # an independent set of edges per round keeps every collapse local
            i, j = be[e]
            if touched[i] or touched[j]:
                continue
            touched[i] = touched[j] = True
            v[i] = 0.5 * (v[i] + v[j])
            remap[j] = i
        f = remap[f]
        ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
        f = f[ok]
        _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
        v, f = drop_unused_vertices(v, f[np.sort(first)])
    return v, f


def remesh_isotropic(
    v: Array, f: Faces, edge_m: float, iterations: int, fixed_boundary: bool
) -> tuple[Array, Faces]:
    """Botsch–Kobbelt remeshing to `edge_m`, projected onto the input surface.

    gpytoolbox never moves boundary vertices; with `fixed_boundary=False` the openings are
    declared feature edges as well so that they survive as they are.
    """
    features = None if fixed_boundary else boundary_edges(f).astype(np.int32)
    u, g_ = gpytoolbox.remesh_botsch(
        np.ascontiguousarray(v, dtype=np.float64),
        np.ascontiguousarray(f, dtype=np.int32),
        i=iterations,
        h=edge_m,
        project=True,
        feature_edges=features,
    )
    return np.asarray(u, dtype=np.float64), np.asarray(g_, dtype=np.int64)


def _numeric_gradient(cut: CutField, points: Array, step_m: float = 1e-5) -> Array:
    base = cut(points)
    return np.stack(
        [(cut(points + step_m * np.eye(3)[k]) - base) / step_m for k in range(3)], axis=1
    )


def cut_cleanly(v: Array, f: Faces, cut: CutField, edge_m: float) -> tuple[Array, Faces]:
    """Open the surface along cut = 0 without slivers: snap close vertices onto it, then clip."""
    value = cut(v)
    grad = _numeric_gradient(cut, v)
    grad2 = np.maximum((grad**2).sum(axis=1), 1e-12)
    near = np.abs(value) / np.sqrt(grad2) < SNAP_FRACTION * edge_m
    v = v.copy()
    v[near] -= (value[near] / grad2[near])[:, None] * grad[near]
    value = cut(v)
    value[near] = -1e-12  # on the cut: kept, and never split again
    v, f = clip_by_field(v, f, value)
    return weld_coincident(v, f)


def mesh_solid(field: Array, origin_m: Array, spacing_m: float) -> tuple[Array, Faces]:
    """The zero level set of a grid field (negative inside) as a triangle mesh in metres."""
    verts, faces, _, _ = marching_cubes(field, level=0.0, spacing=(spacing_m,) * 3)
    return verts.astype(np.float64) + origin_m, faces.astype(np.int64)


def build_garment_surface(
    v: Array, f: Faces, cuts: list[CutField], edge_m: float = TARGET_EDGE_M
) -> tuple[Array, Faces]:
    """Steps 3–6: rough cuts, remesh, clean cuts, remesh again with the openings fixed."""
    for cut in cuts:
        v, f = clip_by_field(v, f, cut(v) - ROUGH_CUT_MARGIN_M)
    v, f = largest_piece(v, f)
    v, f = remesh_isotropic(v, f, edge_m, iterations=10, fixed_boundary=False)
    for cut in cuts:
        v, f = cut_cleanly(v, f, cut, edge_m)
    v, f = largest_piece(v, f)
    v, f = collapse_short_boundary_edges(v, f, SHORT_BOUNDARY_FRACTION * edge_m)
    return remesh_isotropic(v, f, edge_m, iterations=5, fixed_boundary=True)


def finish_garment(v: Array, f: Faces, body: FittingBody) -> SampleMesh:
    """Wind the triangles so that normals face away from the skin; add normals and UVs."""
    normals = vertex_normals(v, f)
    _, nearest = body._tree.query(v)
    outward = v - body._samples_m[nearest]
    if np.nanmean(np.einsum("ij,ij->i", normals, outward)) < 0:
        f = f[:, ::-1].copy()
        normals = -normals
    # Front projection in metres; v grows downwards as glTF's texture space does.
    uvs = np.stack([v[:, 0] + 0.5, body.measurements.height_m - v[:, 1]], axis=1)
    return SampleMesh(v, f, normals, uvs)


# ---------------------------------------------------------------------------------------------
# Cuts: signed values in metres (or close to it), positive on the side that is cut away.


def plane_cut(point_m: Array, normal: Array) -> CutField:
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    p0 = np.asarray(point_m, dtype=np.float64)
    return lambda p: (p - p0) @ n


def within_cylinder(cut: CutField, axis_point_m: Array, axis: Array, radius_m: float) -> CutField:
    """`cut` restricted to a cylinder around an axis, so that it opens one limb only."""
    d = np.asarray(axis, dtype=np.float64)
    d = d / np.linalg.norm(d)
    a = np.asarray(axis_point_m, dtype=np.float64)

    def value(p: Array) -> Array:
        rel = p - a
        radial = np.linalg.norm(rel - np.outer(rel @ d, d), axis=1)
        return np.minimum(cut(p), radius_m - radial)

    return value


# ---------------------------------------------------------------------------------------------
# The three samples.


def tshirt(body: FittingBody) -> SampleMesh:
    """Crew-neck T-shirt: 2 cm ease, hem 2 cm above hip level, sleeves to mid upper arm."""
    m = body.measurements
    ease_m = 0.02
    lo = np.array([-0.48, m.hips_level_m - 0.06, -0.25])
    hi = np.array([0.48, body.joint("head")[1] + 0.06, 0.28])
    sd, origin = body.distance_grid(lo, hi, GRID_SPACING_M)
    v, f = mesh_solid(sd - ease_m, origin, GRID_SPACING_M)
    hem_y = m.hips_level_m + 0.02
    cuts = [plane_cut(np.array([0.0, hem_y, 0.0]), np.array([0.0, -1.0, 0.0]))]
    for side in ("left", "right"):
        upper, lower = body.joint(f"{side}UpperArm"), body.joint(f"{side}LowerArm")
        direction = lower - upper
        sleeve_end = upper + 0.5 * direction
        cuts.append(
            within_cylinder(plane_cut(sleeve_end, direction), upper, direction, SLEEVE_REACH_M)
        )
    # Crew neckline: a plane 4.5 cm below the neck joint in front, rising towards the back,
    # applied only inside an ellipse around the neck so that it never touches the shoulders.
    neck = body.joint("neck")
    neck_plane = plane_cut(np.array([0.0, neck[1] - 0.045, neck[2]]), np.array([0.0, 1.0, 0.35]))

    def neckline(p: Array) -> Array:
        inside_ellipse = 1.0 - ((p[:, 0] / 0.095) ** 2 + ((p[:, 2] - neck[2] - 0.01) / 0.085) ** 2)
        return np.minimum(neck_plane(p), 0.1 * inside_ellipse)

    cuts.append(neckline)
    v, f = build_garment_surface(v, f, cuts)
    return finish_garment(v, f, body)


def trousers(body: FittingBody) -> SampleMesh:
    """Straight-leg trousers: waistband at the measured waist, 1.2 cm ease growing to 2.5 cm
    at the ankle, hems 2 cm above the ankle joints."""
    m = body.measurements
    ankle_y = 0.5 * (body.joint("leftFoot")[1] + body.joint("rightFoot")[1])
    knee_y = 0.5 * (body.joint("leftLowerLeg")[1] + body.joint("rightLowerLeg")[1])
    lo = np.array([-0.32, ankle_y - 0.04, -0.22])
    hi = np.array([0.32, m.waist_level_m + 0.06, 0.25])
    sd, origin = body.distance_grid(lo, hi, GRID_SPACING_M)
    y = origin[1] + GRID_SPACING_M * np.arange(sd.shape[1])
    ease = np.interp(y, [ankle_y, knee_y, m.inseam_m, m.hips_level_m], [0.025, 0.02, 0.015, 0.012])
    v, f = mesh_solid(sd - ease[None, :, None], origin, GRID_SPACING_M)
    cuts = [
        plane_cut(np.array([0.0, m.waist_level_m, 0.0]), np.array([0.0, 1.0, 0.0])),
        plane_cut(np.array([0.0, ankle_y + 0.02, 0.0]), np.array([0.0, -1.0, 0.0])),
    ]
    v, f = build_garment_surface(v, f, cuts)
    return finish_garment(v, f, body)


def _hull_radius_by_angle(loop_xz: Array, centre_xz: Array, angles: Array) -> Array:
    """Radius (metres) of the convex hull of a cross-section, as a taut tape sees it."""
    hull = loop_xz[ConvexHull(loop_xz).vertices]
    closed = np.concatenate([hull, hull[:1]])
    # Resample the hull densely, then read its radius at each angle.
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], 2048, endpoint=False)
    pts = np.stack([np.interp(t, s, closed[:, 0]), np.interp(t, s, closed[:, 1])], axis=1)
    rel = pts - centre_xz
    theta = np.arctan2(rel[:, 0], rel[:, 1])
    radius = np.linalg.norm(rel, axis=1)
    order = np.argsort(theta)
    return np.interp(angles, theta[order], radius[order], period=2 * np.pi)


def a_line_skirt(body: FittingBody) -> SampleMesh:
    """A-line skirt: fitted from the waist over the hips (1.2 cm ease over a taut tape), then
    flaring at 14° to a hem 4 cm above the knees."""
    m = body.measurements
    knee_y = 0.5 * (body.joint("leftLowerLeg")[1] + body.joint("rightLowerLeg")[1])
    hem_y = knee_y + 0.04
    ease_m, flare = 0.012, np.tan(np.deg2rad(14.0))
    v_body, f_body = body.vertices_m, body.faces
    band = v_body[(v_body[:, 1] > m.hips_level_m) & (v_body[:, 1] < m.waist_level_m)]
    centre = np.array([0.5 * (band[:, 0].min() + band[:, 0].max()), band[:, 2].mean()])
    angles = np.linspace(-np.pi, np.pi, 181)
    levels = np.arange(m.hips_level_m, m.waist_level_m + 0.05, 0.01)
    radius = np.empty((len(levels), len(angles)))
    for i, level in enumerate(levels):
        loop = torso_loop(v_body, f_body, float(level), centre)
        if loop is None:
            raise ValueError(f"no torso section at {level:.3f} m")
        radius[i] = _hull_radius_by_angle(loop, centre, angles)
    # The ease is a distance from the skin, not only across it: where the body slopes (the
    # seat, the belly) the widest section within one ease above or below sets the radius,
    # so that every point of the shell is at least the ease from the body.
    reach = 2 * int(np.ceil(ease_m / 0.01)) + 1
    radius = ndimage.maximum_filter1d(radius, size=reach, axis=0, mode="nearest")
    # Below the hips the hull of the hips flares out linearly: the shell of an A-line.
    lo = np.array([centre[0] - 0.45, hem_y - 0.05, centre[1] - 0.45])
    hi = np.array([centre[0] + 0.45, m.waist_level_m + 0.05, centre[1] + 0.45])
    shape = tuple(int(np.ceil((hi[k] - lo[k]) / GRID_SPACING_M)) + 1 for k in range(3))
    xs, ys, zs = (lo[k] + GRID_SPACING_M * np.arange(shape[k]) for k in range(3))
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    theta = np.arctan2(X - centre[0], Z - centre[1])
    r = np.hypot(X - centre[0], Z - centre[1])
    level_idx = np.clip((Y - levels[0]) / 0.01, 0.0, len(levels) - 1.001)
    i0 = np.floor(level_idx).astype(np.int64)
    w = level_idx - i0
    a_idx = (theta + np.pi) / (2 * np.pi) * (len(angles) - 1)
    a0 = np.clip(np.floor(a_idx).astype(np.int64), 0, len(angles) - 2)
    wa = a_idx - a0
    r_body = (1 - w) * ((1 - wa) * radius[i0, a0] + wa * radius[i0, a0 + 1]) + w * (
        (1 - wa) * radius[i0 + 1, a0] + wa * radius[i0 + 1, a0 + 1]
    )
    r_shell = r_body + ease_m + flare * np.maximum(m.hips_level_m - Y, 0.0)
    v, f = mesh_solid(r - r_shell, lo, GRID_SPACING_M)
    cuts = [
        plane_cut(np.array([0.0, m.waist_level_m, 0.0]), np.array([0.0, 1.0, 0.0])),
        plane_cut(np.array([0.0, hem_y, 0.0]), np.array([0.0, -1.0, 0.0])),
    ]
    v, f = build_garment_surface(v, f, cuts)
    return finish_garment(v, f, body)


BUILDERS: dict[str, Callable[[FittingBody], SampleMesh]] = {
    "tshirt": tshirt,
    "skirt": a_line_skirt,
    "trousers": trousers,
}


# ---------------------------------------------------------------------------------------------
# Catalogue facts.


def sidecar(spec: SampleSpec, mesh: SampleMesh, fitted_to: str) -> dict[str, Any]:
    lo, hi = mesh.vertices_m.min(axis=0), mesh.vertices_m.max(axis=0)
    return {
        "sku": spec.sku,
        "name": spec.name,
        "category": spec.category,
        "size_label": spec.size_label,
        "fabric": spec.fabric,
        "units": "m",
        "fitted_to": fitted_to,
        "file": f"{spec.file_stem}.glb",
        "vertices": len(mesh.vertices_m),
        "triangles": len(mesh.faces),
        "bounds_m": {
            "min": [round(float(x), 4) for x in lo],
            "max": [round(float(x), 4) for x in hi],
        },
        "generated_by": "python -m spatialtwin.cli.samples",
    }


def build_samples(body: TwinBody) -> dict[str, SampleMesh]:
    fitting = FittingBody.from_body(body)
    return {key: build(fitting) for key, build in BUILDERS.items()}
