"""One cloth step, Newton style:
`step(model, state_in, state_out, control, collider, contacts, dt, settings)`.

`ClothModel` holds what does not change, `ClothState` what does (positions, velocities),
`ClothControl` the inputs of a frame (pin targets), a `BodyCollider` the posed body at the
previous and current frame, and `Contacts` what contact detection found for this garment last
frame (its warm start). Nothing that changes during simulation is hidden in the collider, so one
collider serves several garments, each with its own state and contacts. `ClothSim` wraps these
for live use: feed it the posed body vertices every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.contacts import Contacts
from spatialtwin.cloth.kernels import apply_air_drag, simulate_frame
from spatialtwin.cloth.model import ClothModel
from spatialtwin.cloth.self_collision import separate_self_contacts
from spatialtwin.errors import SpatialTwinError

GRAVITY_M_S2 = np.array([0.0, -9.81, 0.0])
AIR_DENSITY_KG_M3 = 1.2


@dataclass(frozen=True)
class SolverSettings:
    """Accuracy/cost knobs. Defaults are the live budget (see bench/cloth.py).

    - ``substeps``: XPBD substeps per frame, one Gauss–Seidel sweep each (``iterations``).
    - ``contact_margin_m``: added to the fabric thickness for the body contact offset; the body
      mesh is piecewise flat and garment triangles span between vertices, so vertices keep this
      extra distance from the skin.
    - ``max_contact_depth_m``: a vertex deeper than this behind its contact triangle is taken to
      belong to another part of the body and is left alone rather than pushed the wrong way.
    - ``detection_margin_m``: contact search radius beyond the contact offset; each vertex's
      search also widens by how far the body moves relative to it within the frame.
    - ``max_contacts``: body contacts per garment vertex: the closest triangle, and up to
      ``max_contacts`` − 1 more on other sides of the body (`BodyCollider.detect_contact_sets`)
      so cloth in a crease (hip flexed against the belly, a bent knee, an armpit) is kept out
      of both sides; 1 is the single closest contact.
    - ``max_body_step_m``: how far (metres per frame) the body's motion relative to a vertex
      may widen its contact search; a body part faster than that can pass through the cloth
      (a flung hand moves 20–30 cm a frame at 30 fps; live sessions raise it).
    - ``self_collision``: vertex–vertex self-collision once per frame (static drape).
    - ``strain_limit``: edges stretched beyond this fraction are pulled back by
      ``strain_limit_sweeps`` Gauss–Seidel sweeps of unilateral limits, then contacts are
      re-projected without friction (position only, no velocity change, so no energy); 0
      disables. Runs every ``strain_limit_every`` substeps (0: once, after the last). Impact
      stretch that static friction would otherwise lock in (a sheet caught on a sphere, a
      skirt on the hips) is what it removes; a few sweeps cost about one edge sweep each.
    - ``extra_damping_per_s``: added to the fabric's damping; a static drape wants the
      equilibrium, not the swing, so it settles with more.
    """

    substeps: int = 15
    iterations: int = 1
    contact_margin_m: float = 0.002
    max_contact_depth_m: float = 0.04
    detection_margin_m: float = 0.01
    max_contacts: int = 3
    max_body_step_m: float = 0.15
    self_collision: bool = False
    over_relaxation: float = 1.0
    strain_limit: float = 0.05
    strain_limit_every: int = 0
    strain_limit_sweeps: int = 4
    extra_damping_per_s: float = 0.0
    gravity_m_s2: tuple[float, float, float] = (0.0, -9.81, 0.0)

    def __post_init__(self) -> None:
        if not (1 <= self.substeps <= 200 and 1 <= self.iterations <= 50):
            raise SpatialTwinError(
                "bad_solver_settings",
                "substeps must be 1..200, iterations 1..50",
                {"substeps": self.substeps, "iterations": self.iterations},
            )
        if self.strain_limit < 0 or self.strain_limit_every < 0 or self.strain_limit_sweeps < 1:
            raise SpatialTwinError(
                "bad_solver_settings",
                "strain_limit and strain_limit_every must be ≥ 0, strain_limit_sweeps ≥ 1",
                {
                    "strain_limit": self.strain_limit,
                    "strain_limit_every": self.strain_limit_every,
                    "strain_limit_sweeps": self.strain_limit_sweeps,
                },
            )
        if not 0.0 < self.max_body_step_m <= 1.0:
            raise SpatialTwinError(
                "bad_solver_settings",
                "max_body_step_m must be in (0, 1] metres",
                {"max_body_step_m": self.max_body_step_m},
            )
        if not 1 <= self.max_contacts <= 4:
            raise SpatialTwinError(
                "bad_solver_settings",
                "max_contacts must be 1..4",
                {"max_contacts": self.max_contacts},
            )
        if not 0.5 <= self.over_relaxation < 2.0:
            raise SpatialTwinError(
                "bad_solver_settings",
                "over_relaxation must be in [0.5, 2)",
                {"over_relaxation": self.over_relaxation},
            )


@dataclass
class ClothState:
    """Positions (N, 3) m and velocities (N, 3) m/s of the garment's vertices."""

    positions_m: NDArray[np.float64]
    velocities_m_s: NDArray[np.float64]

    @classmethod
    def at_rest(cls, positions_m: NDArray[np.floating]) -> ClothState:
        x = np.ascontiguousarray(positions_m, dtype=np.float64).copy()
        return cls(x, np.zeros_like(x))

    def copy(self) -> ClothState:
        return ClothState(self.positions_m.copy(), self.velocities_m_s.copy())

    def kinetic_energy_j(self, model: ClothModel) -> float:
        v2 = np.einsum("ij,ij->i", self.velocities_m_s, self.velocities_m_s)
        return float(0.5 * np.sum(model.vertex_mass_kg * v2))


@dataclass
class ClothControl:
    """Frame inputs: where the pinned vertices are at the start and at the end of the frame."""

    pin_from_m: NDArray[np.float64]  # (P, 3)
    pin_to_m: NDArray[np.float64]  # (P, 3)

    @classmethod
    def hold(cls, model: ClothModel, state: ClothState) -> ClothControl:
        p = state.positions_m[model.pinned]
        return cls(p.copy(), p.copy())


@dataclass
class SphereColliders:
    """Static spheres (S, 4): centre xyz and radius in metres (test scenes, props)."""

    spheres: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 4)))


_NO_FACES = np.zeros((0, 3), dtype=np.int32)
_NO_EXTRA = np.zeros((0, 0), dtype=np.int32)
_NO_VERTS = np.zeros((0, 3))


def step(
    model: ClothModel,
    state_in: ClothState,
    state_out: ClothState,
    control: ClothControl | None,
    collider: BodyCollider | None,
    contacts: Contacts | None,
    dt: float,
    settings: SolverSettings = SolverSettings(),
    spheres: SphereColliders | None = None,
) -> None:
    """Advance the garment by dt seconds from state_in into state_out (may be the same object).

    The collider must already hold this frame's body pose (`BodyCollider.update`); the body
    moves from its previous to its current pose across the frame's substeps. `contacts` are
    this garment's own (`Contacts()` before the first step, then the same object every frame):
    detection starts from last frame's and leaves this frame's in them. With None every vertex
    is searched from scratch each step (same physics, slower).
    """
    if contacts is not None and not isinstance(contacts, Contacts):
        raise TypeError(f"contacts must be Contacts or None, not {type(contacts).__name__}")
    if not (0.0 < dt <= 0.1):
        raise SpatialTwinError("bad_time_step", "dt must be in (0, 0.1] seconds", {"dt": dt})
    fabric = model.fabric
    x = state_out.positions_m
    v = state_out.velocities_m_s
    if state_out is not state_in:
        x[:] = state_in.positions_m
        v[:] = state_in.velocities_m_s
    if control is None:
        control = ClothControl.hold(model, state_in)
    offset = fabric.thickness_m + settings.contact_margin_m
    if fabric.drag_coefficient > 0:
        apply_air_drag(
            x,
            v,
            model.faces,
            model.inv_mass,
            model.vertex_mass_kg,
            AIR_DENSITY_KG_M3,
            fabric.drag_coefficient,
            dt,
        )
    if collider is not None:
        # each vertex also searches as far as the body near it moves relative to it
        radius = offset + settings.detection_margin_m
        contact_tri, _, contact_extra = collider.detect_contact_sets(
            x,
            radius,
            contacts=contacts,
            velocities_m_s=v,
            dt=dt,
            max_contacts=settings.max_contacts,
            max_body_step_m=settings.max_body_step_m,
        )
        body_prev, body_cur, body_faces = collider.previous_m, collider.current_m, collider.faces
        normal_prev, normal_cur = collider.normals_previous, collider.normals_current
    else:
        contact_tri = np.full(len(x), -1, dtype=np.int32)
        contact_extra = _NO_EXTRA
        body_prev, body_cur, body_faces = _NO_VERTS, _NO_VERTS, _NO_FACES
        normal_prev, normal_cur = _NO_VERTS, _NO_VERTS
    sph = spheres.spheres if spheres is not None else np.zeros((0, 4))
    simulate_frame(
        x,
        v,
        np.empty_like(x),
        model.inv_mass,
        model.edges,
        model.edge_rest_m,
        model.edge_compliance,
        model.tethers,
        model.tether_max_m,
        model.hinges,
        model.hinge_k,
        model.hinge_compliance,
        model.pinned,
        control.pin_from_m,
        control.pin_to_m,
        np.asarray(settings.gravity_m_s2, dtype=np.float64),
        float(dt),
        settings.substeps,
        settings.iterations,
        fabric.damping_per_s + settings.extra_damping_per_s,
        settings.over_relaxation,
        contact_tri,
        contact_extra,
        body_prev,
        body_cur,
        normal_prev,
        normal_cur,
        body_faces,
        sph,
        offset,
        fabric.friction,
        settings.max_contact_depth_m,
        settings.strain_limit,
        settings.strain_limit_every if settings.strain_limit_every > 0 else settings.substeps,
        settings.strain_limit_sweeps,
    )
    if settings.self_collision:
        separate_self_contacts(
            model, x, min_distance_m=max(2.0 * fabric.thickness_m, 0.004), velocities_m_s=v
        )


def edge_stretch(model: ClothModel, positions_m: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per mesh edge: length / rest length − 1 (0.01 = stretched by 1 %)."""
    e = model.mesh_edges
    length = np.linalg.norm(positions_m[e[:, 0]] - positions_m[e[:, 1]], axis=1)
    return length / model.mesh_edge_rest_m - 1.0


class ClothSim:
    """A garment following a moving body, one `step` per rendered frame.

    ``attach_pins_to_body`` binds each pinned vertex to its closest body triangle, so a
    waistband rides on the hips as the twin moves; otherwise pins stay where they are. With
    ``pin_attachment="rigid"`` (the default) all pins move together with the best rigid fit
    (Kabsch) of their skin points, like a belt: skin stretching and folding under a bending
    waist cannot tear the pinned row apart. ``"surface"`` moves each pin with its own
    triangle (barycentric point plus normal offset) instead, for pins on one rigid-ish spot.

    The sim owns its state and its contacts (carried from frame to frame). It owns its collider
    too unless one is passed in (`collider=`): then several sims (the garments of one live
    session) share the posed body, the caller moves it once per frame (`BodyCollider.update`)
    and advances each sim with `advance`; the body arrays are then not needed (None).
    """

    def __init__(
        self,
        model: ClothModel,
        body_vertices_m: NDArray[np.floating] | None,
        body_faces: NDArray[np.integer] | None,
        positions_m: NDArray[np.floating] | None = None,
        settings: SolverSettings = SolverSettings(),
        attach_pins_to_body: bool = True,
        pin_attachment: str = "rigid",
        *,
        collider: BodyCollider | None = None,
    ) -> None:
        if pin_attachment not in ("rigid", "surface"):
            raise SpatialTwinError(
                "bad_pin_attachment",
                "pin_attachment must be 'rigid' or 'surface'",
                {"pin_attachment": pin_attachment},
            )
        self.pin_attachment = pin_attachment
        self.model = model
        self.settings = settings
        if collider is None:
            if body_vertices_m is None or body_faces is None:
                raise SpatialTwinError(
                    "bad_body_mesh", "a sim needs the body's vertices and faces, or a collider"
                )
            collider = BodyCollider(body_vertices_m, body_faces)
        self.collider = collider
        x0 = model.rest_positions_m if positions_m is None else positions_m
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.shape != model.rest_positions_m.shape:
            raise SpatialTwinError(
                "bad_garment_mesh",
                "positions must be (N, 3) for the model",
                {"expected": list(model.rest_positions_m.shape), "got": list(x0.shape)},
            )
        self.state = ClothState.at_rest(x0)
        self.contacts = Contacts()
        self._pin_binding = None
        if attach_pins_to_body and len(model.pinned):
            self._pin_binding = _bind_to_body(self.collider, x0[model.pinned])
            self._pin_rest_m = x0[model.pinned].copy()
            self._skin_rest_m = self._skin_points(self.collider.current_m)
        self.frame = 0

    def _skin_points(self, body_m: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._pin_binding is not None
        tri, bary, _ = self._pin_binding
        return np.einsum("pk,pkj->pj", bary, body_m[self.collider.faces[tri]])

    def _pin_targets(self, body_m: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._pin_binding is not None
        if self.pin_attachment == "rigid":
            rot, shift = rigid_fit(self._skin_rest_m, self._skin_points(body_m))
            return self._pin_rest_m @ rot.T + shift
        tri, bary, offset = self._pin_binding
        f = self.collider.faces[tri]
        p = np.einsum("pk,pkj->pj", bary, body_m[f])
        n = np.cross(body_m[f[:, 1]] - body_m[f[:, 0]], body_m[f[:, 2]] - body_m[f[:, 0]])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        return p + offset[:, None] * n

    def step(self, body_vertices_m: NDArray[np.floating], dt: float) -> ClothState:
        """Move the body to its new pose and advance the garment by dt seconds."""
        self.collider.update(body_vertices_m)
        return self.advance(dt)

    def advance(self, dt: float) -> ClothState:
        """Advance the garment by dt seconds as the collider moves from its previous to its
        current pose (the caller has updated a shared collider this frame)."""
        if self._pin_binding is not None:
            control = ClothControl(
                self._pin_targets(self.collider.previous_m),
                self._pin_targets(self.collider.current_m),
            )
        else:
            control = ClothControl.hold(self.model, self.state)
        step(
            self.model,
            self.state,
            self.state,
            control,
            self.collider,
            self.contacts,
            dt,
            self.settings,
        )
        self.frame += 1
        return self.state


def rigid_fit(
    source_m: NDArray[np.float64], target_m: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Rotation R (3, 3) and translation t (3,) minimising Σ|R·source + t − target|² (Kabsch)."""
    cs = source_m.mean(axis=0)
    ct = target_m.mean(axis=0)
    h = (source_m - cs).T @ (target_m - ct)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, ct - rot @ cs


def _bind_to_body(
    collider: BodyCollider, points_m: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    tri, _ = collider.detect_contacts(points_m, 0.1, at_current=True)
    if np.any(tri < 0):
        raise SpatialTwinError(
            "pin_far_from_body",
            "pinned vertices must be within 10 cm of the body to attach to it",
            {"count": int(np.sum(tri < 0))},
        )
    body = collider.current_m
    f = collider.faces[tri]
    a, b, c = body[f[:, 0]], body[f[:, 1]], body[f[:, 2]]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    offset = np.einsum("ij,ij->i", points_m - a, n)
    q = points_m - offset[:, None] * n
    # barycentric coordinates of the projection on the triangle's plane
    v0, v1, v2 = b - a, c - a, q - a
    d00 = np.einsum("ij,ij->i", v0, v0)
    d01 = np.einsum("ij,ij->i", v0, v1)
    d11 = np.einsum("ij,ij->i", v1, v1)
    d20 = np.einsum("ij,ij->i", v2, v0)
    d21 = np.einsum("ij,ij->i", v2, v1)
    den = d00 * d11 - d01 * d01
    bv = (d11 * d20 - d01 * d21) / den
    bw = (d00 * d21 - d01 * d20) / den
    bary = np.stack([1.0 - bv - bw, bv, bw], axis=1)
    return tri.astype(np.int64), bary, offset
