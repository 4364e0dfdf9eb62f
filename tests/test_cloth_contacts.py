"""Contacts are each garment's own state: one collider serves several garments, a live sim
carries its contacts from frame to frame, and contacts are never mixed up between garments."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from spatialtwin.cloth.collider import WALK_TRUST_M, BodyCollider, DrapeLayer, LayeredCollider
from spatialtwin.cloth.contacts import Contacts
from spatialtwin.cloth.fabric_params import DENIM, SILK_CHARMEUSE
from spatialtwin.cloth.model import build_cloth_model
from spatialtwin.cloth.solver import ClothControl, ClothSim, ClothState, SolverSettings, step
from spatialtwin.errors import SpatialTwinError
from tests.cloth_scenes import flared_skirt
from tests.conftest import shared

DT = 1.0 / 30.0
SETTINGS = SolverSettings(substeps=6)


@pytest.fixture(scope="module")
def body() -> tuple[np.ndarray, np.ndarray]:
    m = trimesh.load(shared("bodies", "mean_all.obj"), process=False)
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)


def _turn(frame: int) -> tuple[np.ndarray, np.ndarray]:
    """The body's rigid motion at a frame: 1.5° a frame about +Y, 8 mm a frame forwards."""
    a = np.radians(1.5 * frame)
    rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    return rot, np.array([0.0, 0.0, 0.008 * frame])


def _garments(bv: np.ndarray, flare_deg: float = 8.0, ease_m: float = 0.004) -> list:
    """Two different skirts (vertex counts, lengths, fabrics, ease) hung on the same hips."""
    cuts = ((500, 0.55, ease_m, DENIM), (800, 0.4, 2.0 * ease_m, SILK_CHARMEUSE))
    out = []
    for n, length_m, ease, fabric in cuts:
        sk = flared_skirt(bv, n, length_m=length_m, flare_deg=flare_deg, ease_m=ease)
        model = build_cloth_model(
            sk.positions_m,
            sk.faces,
            fabric,
            pinned=sk.waistband,
            seams=sk.seams,
            rest_positions_m=sk.rest_positions_m,
        )
        out.append((sk, model))
    return out


def _walk(garments, colliders, frames: int, *, move: bool = True):
    """Step every garment `frames` frames, garment after garment within a frame, each against
    `colliders[k]` (the same object for all, or one each); pins ride the body's motion."""
    states = [ClothState.at_rest(sk.positions_m) for sk, _ in garments]
    contacts = [Contacts() for _ in garments]
    for f in range(1, frames + 1):
        rot0, t0 = _turn(f - 1) if move else (np.eye(3), np.zeros(3))
        rot1, t1 = _turn(f) if move else (np.eye(3), np.zeros(3))
        if move:
            for c in {id(c): c for c in colliders}.values():  # each collider once
                c.update(c.rest_m @ rot1.T + t1)
        for k, (sk, model) in enumerate(garments):
            pins = sk.positions_m[model.pinned]
            control = ClothControl(pins @ rot0.T + t0, pins @ rot1.T + t1)
            step(model, states[k], states[k], control, colliders[k], contacts[k], DT, SETTINGS)
    return states, contacts


class _MovingBody(BodyCollider):
    """A body collider that remembers its rest pose, for the test's rigid motion."""

    def __init__(self, vertices_m, faces) -> None:
        super().__init__(vertices_m, faces)
        self.rest_m = self.current_m.copy()


def test_two_garments_stepped_alternately_on_one_collider_match_each_on_its_own(body):
    bv, bf = body
    garments = _garments(bv)
    one = _MovingBody(bv, bf)
    shared_states, shared_contacts = _walk(garments, [one, one], 12)
    own_states, own_contacts = _walk(garments, [_MovingBody(bv, bf), _MovingBody(bv, bf)], 12)
    for k in range(2):
        np.testing.assert_array_equal(shared_states[k].positions_m, own_states[k].positions_m)
        np.testing.assert_array_equal(shared_states[k].velocities_m_s, own_states[k].velocities_m_s)
        np.testing.assert_array_equal(shared_contacts[k].triangle, own_contacts[k].triangle)
        # the warm start was in play: many vertices rest on the hips and walk next frame
        assert np.sum(shared_contacts[k].walk_vertex >= 0) > 20
        assert np.sum(shared_contacts[k].triangle >= 0) > 40
    # the skirts went along with the turning body (their hems moved ~10 cm forwards)
    for (sk, _), st in zip(garments, shared_states, strict=True):
        assert st.positions_m[sk.hem, 2].mean() - sk.positions_m[sk.hem, 2].mean() > 0.05


def test_two_outer_garments_on_one_layered_collider_match_each_on_its_own(body):
    bv, bf = body
    inner = flared_skirt(bv, 600, length_m=0.45, flare_deg=14.0, ease_m=0.004)
    layers = [DrapeLayer(inner.positions_m, inner.faces.astype(np.int64), 0.0008)]
    garments = _garments(bv, flare_deg=14.0, ease_m=0.012)  # outside the inner skirt
    one = LayeredCollider(bv, bf, layers)
    shared_states, shared_contacts = _walk(garments, [one, one], 8, move=False)
    own = [LayeredCollider(bv, bf, layers), LayeredCollider(bv, bf, layers)]
    own_states, own_contacts = _walk(garments, own, 8, move=False)
    for k in range(2):
        np.testing.assert_array_equal(shared_states[k].positions_m, own_states[k].positions_m)
        np.testing.assert_array_equal(shared_contacts[k].triangle, own_contacts[k].triangle)
        # one row of walk seeds per surface, and garments touch the inner skirt's shell
        assert shared_contacts[k].walk_vertex.shape == (2, garments[k][1].vertex_count)
        assert np.sum(shared_contacts[k].triangle >= one.body_face_count) > 20


def test_live_sim_carries_its_contacts_from_frame_to_frame(body):
    bv, bf = body
    sk, model = _garments(bv)[0]
    sim = ClothSim(model, bv, bf, sk.positions_m, SETTINGS)
    contacts = sim.contacts
    assert contacts.is_empty
    radius = DENIM.thickness_m + SETTINGS.contact_margin_m + SETTINGS.detection_margin_m
    for f in range(1, 11):
        rot, shift = _turn(f)
        x, v = sim.state.positions_m.copy(), sim.state.velocities_m_s.copy()
        sim.step(bv @ rot.T + shift, DT)
        assert sim.contacts is contacts and contacts.frame == f
        assert contacts.walk_vertex.shape == (1, model.vertex_count)
        # this frame's contacts were searched from the start-of-frame state against the
        # previous pose, starting from last frame's; a search from scratch finds the same
        fresh, _ = sim.collider.detect_contacts(x, radius, velocities_m_s=v, dt=DT)
        assert np.mean(fresh == contacts.triangle) > 0.99
    # the vertices that walk next frame are those the last search found on the skin: by
    # trimesh (not the collider), every one within half the walk's trust of the pose searched
    # walks, none farther than twice it does
    mesh = trimesh.Trimesh(sim.collider.previous_m, bf, process=False)
    _, dist, _ = trimesh.proximity.closest_point(mesh, x)
    walking = contacts.walk_vertex[0] >= 0
    assert np.sum(walking) > 20
    assert np.all(walking[dist < 0.5 * WALK_TRUST_M])
    assert not np.any(walking[dist > 2.0 * WALK_TRUST_M])


def test_contacts_are_refused_for_another_garment_or_collider(body):
    bv, bf = body
    (_, small), (_, large) = _garments(bv)
    collider = BodyCollider(bv, bf)
    contacts = Contacts()
    collider.detect_contacts(small.rest_positions_m, 0.01, contacts=contacts)
    with pytest.raises(SpatialTwinError) as e:
        collider.detect_contacts(large.rest_positions_m, 0.01, contacts=contacts)
    assert e.value.code == "contacts_mismatch"
    assert e.value.detail["contacts_vertices"] == small.vertex_count
    inner = flared_skirt(bv, 300, length_m=0.3, ease_m=0.004)
    layered = LayeredCollider(bv, bf, [DrapeLayer(inner.positions_m, inner.faces, 0.001)])
    with pytest.raises(SpatialTwinError) as e:
        layered.detect_contacts(small.rest_positions_m, 0.01, contacts=contacts)
    assert e.value.detail["collider_surfaces"] == [len(bv), len(inner.positions_m)]
    # and the old positional call, dt where the contacts go, is a clear error
    state = ClothState.at_rest(small.rest_positions_m)
    with pytest.raises(TypeError):
        step(small, state, state, None, collider, DT, SETTINGS)  # type: ignore[arg-type]
