"""`ClothModel`: everything about a garment that does not change while it is simulated.

Built once by `build_cloth_model` from a garment mesh and a `Fabric` (Newton's Model/builder
split): topology, rest lengths, vertex masses, constraint lists in Gauss–Seidel colour order,
and XPBD compliances derived from the fabric's physical stiffnesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components

from spatialtwin.cloth.fabric import Fabric
from spatialtwin.cloth.topology import (
    colour_order,
    hinge_stencils,
    isometric_bending_weights,
    long_range_tethers,
    pin_attachments,
    two_ring_csr,
)
from spatialtwin.errors import SpatialTwinError
from spatialtwin.geometry import unique_edges

# Discrete isometric bending energy ½·B/A·|ΣK x|² matches the continuum ½·B·κ² per unit area
# (checked on a sheet rolled onto a cylinder), so hinge stiffness is B / A.
_BENDING_SCALE = 1.0


@dataclass(frozen=True)
class ClothModel:
    """Static garment data in SI units; index arrays are int32, reals float64."""

    fabric: Fabric
    faces: NDArray[np.int32]  # (F, 3)
    rest_positions_m: NDArray[np.float64]  # (N, 3) stress-free shape (sewing pattern or mesh)
    vertex_mass_kg: NDArray[np.float64]  # (N,)
    inv_mass: NDArray[np.float64]  # (N,) 0 for pinned vertices
    pinned: NDArray[np.int64]  # (P,) pinned vertex indices
    edges: NDArray[np.int32]  # (E, 2) mesh edges then seam stitches, colour-ordered
    edge_rest_m: NDArray[np.float64]  # (E,)
    edge_compliance: NDArray[np.float64]  # (E,) m/N
    mesh_edge_count: int  # edges that are mesh edges (strain is measured on these)
    mesh_edges: NDArray[np.int32]  # (M, 2) mesh edges in original order
    mesh_edge_rest_m: NDArray[np.float64]  # (M,)
    tethers: NDArray[np.int32]  # (T, 2) unilateral long-range stretch limits
    tether_max_m: NDArray[np.float64]  # (T,)
    hinges: NDArray[np.int32]  # (B, 4)
    hinge_k: NDArray[np.float64]  # (B, 4) cotangent weights
    hinge_compliance: NDArray[np.float64]  # (B,) 1/(N·m)
    seams: NDArray[np.int32]  # (S, 2) stitched vertex pairs
    ring_offsets: NDArray[np.int64]  # CSR of each vertex's 2-ring on the sewn mesh
    ring_indices: NDArray[np.int32]
    # Sewn panel set of each vertex: an outfit's shirt and trousers are separate components.
    vertex_component: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def vertex_count(self) -> int:
        return len(self.rest_positions_m)


def _check_mesh(vertices: NDArray[np.floating], faces: NDArray[np.integer]) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
        raise SpatialTwinError(
            "bad_garment_mesh",
            "garment vertices must be (N, 3) metres",
            {"shape": list(vertices.shape)},
        )
    if not np.all(np.isfinite(vertices)):
        raise SpatialTwinError("bad_garment_mesh", "garment vertices contain NaN or inf", None)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise SpatialTwinError(
            "bad_garment_mesh",
            "garment faces must be (F, 3) triangles",
            {"shape": list(faces.shape)},
        )
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise SpatialTwinError(
            "bad_garment_mesh",
            "garment face index out of range",
            {"max_index": int(faces.max()), "vertices": len(vertices)},
        )


def _indices(values: object, n: int, what: str, width: int | None = None) -> NDArray[np.int64]:
    arr = np.asarray(values if values is not None else [], dtype=np.int64)
    if width is not None:
        arr = arr.reshape(-1, width)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise SpatialTwinError(
            f"bad_{what}",
            f"{what} index out of range",
            {"max_index": int(arr.max()), "vertices": n},
        )
    return arr


def build_cloth_model(
    vertices_m: NDArray[np.floating],
    faces: NDArray[np.integer],
    fabric: Fabric,
    *,
    pinned: NDArray[np.integer] | list[int] | None = None,
    seams: NDArray[np.integer] | list[tuple[int, int]] | None = None,
    rest_positions_m: NDArray[np.floating] | None = None,
    warp_direction: tuple[float, float, float] = (1.0, 0.0, 0.0),
    tethers: bool = True,
) -> ClothModel:
    """Build the constraint model of a garment.

    `rest_positions_m` is the stress-free shape, e.g. the flat sewing-pattern panels laid out
    in metres; without it the given vertices are taken as stress-free. `seams` are vertex pairs
    stitched together (zero-length constraints), `pinned` vertices are moved only by the caller
    (waistband attachments). `warp_direction` is the fabric grain in rest coordinates: edges
    along it or across it get the tensile stiffness, bias edges the shear stiffness.
    Bending is rest-flat (woven panels are flat when relaxed), by the isometric model.
    """
    v = np.asarray(vertices_m, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    _check_mesh(v, f)
    rest = v if rest_positions_m is None else np.asarray(rest_positions_m, dtype=np.float64)
    if rest.shape != v.shape:
        raise SpatialTwinError(
            "bad_garment_mesh",
            "rest positions must match vertices",
            {"rest": list(rest.shape), "vertices": list(v.shape)},
        )
    n = len(v)
    pins = np.unique(_indices(pinned, n, "pin"))
    seam_pairs = _indices(seams, n, "seam", width=2)

    tri = rest[f]
    tri_area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if np.any(tri_area <= 1e-12):
        raise SpatialTwinError(
            "bad_garment_mesh",
            "garment has degenerate (zero-area) triangles",
            {"count": int(np.sum(tri_area <= 1e-12))},
        )
    mass = np.zeros(n)
    np.add.at(mass, f.ravel(), np.repeat(tri_area / 3.0, 3))
    mass *= fabric.areal_density_kg_m2
    if np.any(mass <= 0):
        raise SpatialTwinError(
            "bad_garment_mesh",
            "garment has vertices in no triangle",
            {"count": int(np.sum(mass <= 0))},
        )
    inv_mass = 1.0 / mass
    inv_mass[pins] = 0.0

    mesh_edges = unique_edges(f).astype(np.int32)
    d = rest[mesh_edges[:, 1]] - rest[mesh_edges[:, 0]]
    rest_len = np.linalg.norm(d, axis=1)
    # area of the triangles beside each edge
    fe = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    key = fe[:, 0] * n + fe[:, 1]
    ekey = mesh_edges[:, 0].astype(np.int64) * n + mesh_edges[:, 1]
    adj_area = np.zeros(len(mesh_edges))
    np.add.at(adj_area, np.searchsorted(ekey, key), np.tile(tri_area, 3))
    warp = np.asarray(warp_direction, dtype=np.float64)
    warp = warp / np.linalg.norm(warp)
    cos_phi = np.abs(d @ warp) / np.maximum(rest_len, 1e-12)
    bias = np.clip(4.0 * cos_phi**2 * (1.0 - cos_phi**2), 0.0, 1.0)  # sin²(2φ)
    modulus = (1.0 - bias) * fabric.stretch_stiffness_n_m + bias * 4.0 * fabric.shear_stiffness_n_m
    edge_k = modulus * adj_area / np.maximum(rest_len**2, 1e-12)
    edge_compliance = 1.0 / edge_k

    all_edges = np.concatenate([mesh_edges, seam_pairs.astype(np.int32)])
    all_rest = np.concatenate([rest_len, np.zeros(len(seam_pairs))])
    all_comp = np.concatenate([edge_compliance, np.zeros(len(seam_pairs))])
    perm, _ = colour_order(all_edges, n)

    weld = np.arange(n)
    if len(seam_pairs):
        g = sp.coo_matrix(
            (np.ones(len(seam_pairs)), (seam_pairs[:, 0], seam_pairs[:, 1])), shape=(n, n)
        )
        _, label = connected_components(g, directed=False)
        first_of = np.full(label.max() + 1, n)
        np.minimum.at(first_of, label, np.arange(n))
        weld = first_of[label]
    hinges, corners = hinge_stencils(f, weld)
    hinge_k, hinge_area = isometric_bending_weights(rest, corners)
    if fabric.bending_stiffness_n_m > 0:
        hinge_compliance = hinge_area / (_BENDING_SCALE * fabric.bending_stiffness_n_m)
        hperm, _ = colour_order(hinges, n)
    else:
        hinges = np.zeros((0, 4), dtype=np.int32)
        hinge_k = np.zeros((0, 4))
        hinge_compliance = np.zeros(0)
        hperm = np.zeros(0, dtype=np.int64)

    if tethers:
        t_pairs, t_len = long_range_tethers(rest, all_edges, all_rest)
        a_pairs, a_len = pin_attachments(all_edges, all_rest, n, pins)
        t_pairs = np.concatenate([t_pairs, a_pairs])
        t_len = np.concatenate([t_len, a_len])
        tperm, _ = colour_order(t_pairs, n)
        t_pairs, t_len = t_pairs[tperm], t_len[tperm]
    else:
        t_pairs, t_len = np.zeros((0, 2), dtype=np.int32), np.zeros(0)

    ring_offsets, ring_indices = two_ring_csr(all_edges, n)
    graph = sp.coo_matrix((np.ones(len(all_edges)), (all_edges[:, 0], all_edges[:, 1])), (n, n))
    _, component = connected_components(graph, directed=False)
    return ClothModel(
        fabric=fabric,
        faces=np.ascontiguousarray(f, dtype=np.int32),
        rest_positions_m=rest.copy(),
        vertex_mass_kg=mass,
        inv_mass=inv_mass,
        pinned=pins,
        edges=np.ascontiguousarray(all_edges[perm], dtype=np.int32),
        edge_rest_m=np.ascontiguousarray(all_rest[perm]),
        edge_compliance=np.ascontiguousarray(all_comp[perm]),
        mesh_edge_count=len(mesh_edges),
        mesh_edges=mesh_edges,
        mesh_edge_rest_m=rest_len,
        tethers=np.ascontiguousarray(t_pairs, dtype=np.int32),
        tether_max_m=np.ascontiguousarray(t_len),
        hinges=np.ascontiguousarray(hinges[hperm], dtype=np.int32),
        hinge_k=np.ascontiguousarray(hinge_k[hperm]),
        hinge_compliance=np.ascontiguousarray(hinge_compliance[hperm]),
        seams=seam_pairs.astype(np.int32),
        ring_offsets=ring_offsets,
        ring_indices=ring_indices,
        vertex_component=component.astype(np.int32),
    )
