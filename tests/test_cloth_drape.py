"""Garments on real bodies (GarmentCode's mean body, a rigged twin): settle above the skin, hang,
pin, differ by fabric, stay stable under real motion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from spatialtwin.body.parametric import Measurements, measured
from spatialtwin.body.pose import Pose
from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.contacts import Contacts
from spatialtwin.cloth.drape import drape_garment
from spatialtwin.cloth.fabric_params import DENIM, SILK_CHARMEUSE
from spatialtwin.cloth.model import build_cloth_model
from spatialtwin.cloth.solver import ClothSim, ClothState, SolverSettings, edge_stretch, step
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.bvh import read_bvh
from spatialtwin.tracking.motion import (
    SkinnedMotion,
    from_rest,
    retarget_bvh,
    with_turns_and_arm_raises,
)
from tests.cloth_scenes import flared_skirt
from tests.conftest import generated_twin

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def body() -> tuple[np.ndarray, np.ndarray]:
    m = trimesh.load(DATA / "bodies" / "mean_all.obj", process=False)
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)


def signed_distance_to_body(points, bv, bf):
    """Independent of the solver's collider: trimesh's exact closest points, the side from
    trimesh's vertex normals blended at the closest point (robust to sliver triangles)."""
    mesh = trimesh.Trimesh(bv, bf, process=False)
    q, dist, tri = trimesh.proximity.closest_point(mesh, points)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], q)
    normal = np.einsum("pk,pkj->pj", bary, mesh.vertex_normals[mesh.faces[tri]])
    side = np.einsum("ij,ij->i", points - q, normal)
    return np.where(side >= 0.0, dist, -dist)


@pytest.fixture(scope="module")
def drapes(body):
    bv, bf = body
    sk = flared_skirt(bv, 2000)
    out = {}
    for fabric in (SILK_CHARMEUSE, DENIM):
        out[fabric.name] = drape_garment(
            sk.positions_m,
            sk.faces,
            fabric,
            bv,
            bf,
            pinned=sk.waistband,
            seams=sk.seams,
            rest_positions_m=sk.rest_positions_m,
        )
    return sk, out


def test_settled_skirt_is_above_the_body_surface(body, drapes):
    bv, bf = body
    _, res = drapes
    for r in res.values():
        sd = signed_distance_to_body(r.positions_m, bv, bf)
        assert sd.min() > -0.001  # no vertex deeper than 1 mm
        assert r.min_body_clearance_m > 0.0
        # it rests on the hips: some vertices within 5 mm of the skin
        assert np.sum(sd < 0.005) > 20


def test_settled_skirt_has_settled_and_is_barely_stretched(drapes):
    _, res = drapes
    for r in res.values():
        assert r.settled
        assert abs(r.mean_stretch) < 0.005
        assert r.max_stretch < 0.15
        assert r.strain.shape == (len(r.positions_m),) and r.strain.min() >= 0


def test_hem_hangs_below_its_start_and_pins_hold(drapes):
    sk, res = drapes
    for r in res.values():
        assert r.positions_m[sk.hem, 1].mean() < sk.positions_m[sk.hem, 1].mean() - 0.005
        np.testing.assert_allclose(
            r.positions_m[sk.waistband], sk.positions_m[sk.waistband], atol=1e-12
        )


def test_silk_and_denim_of_the_same_cut_drape_differently(drapes):
    sk, res = drapes
    silk, denim = res[SILK_CHARMEUSE.name], res[DENIM.name]
    cx, cz = sk.positions_m[:, 0].mean(), sk.positions_m[:, 2].mean()

    def hem_radius(x):
        return np.hypot(x[sk.hem, 0] - cx, x[sk.hem, 2] - cz).mean()

    def hem_drop(x):
        return sk.positions_m[sk.hem, 1].mean() - x[sk.hem, 1].mean()

    # limp silk falls closer to the legs and lower; stiff denim keeps its A-line flare
    assert hem_radius(denim.positions_m) > hem_radius(silk.positions_m) + 0.01
    assert hem_drop(silk.positions_m) > hem_drop(denim.positions_m) + 0.001


def test_garment_placed_inside_the_body_is_refused(body):
    bv, bf = body
    sk = flared_skirt(bv, 500)
    shrunk = sk.positions_m.copy()
    centre = np.array([0.0, 0.0, 0.0])
    shrunk[:, [0, 2]] = (shrunk[:, [0, 2]] - centre[[0, 2]]) * 0.5
    with pytest.raises(SpatialTwinError) as e:
        drape_garment(shrunk, sk.faces, SILK_CHARMEUSE, bv, bf)
    assert e.value.code == "garment_inside_body"


@pytest.fixture(scope="module")
def twin():
    return generated_twin(Measurements(1.70, 0.95, 0.80, 1.00, 0.78, 0.42))


def waist_level(twin) -> float:
    """Where a tape finds the twin's waist (metres); rigs put the spine joint elsewhere."""
    return measured(twin).waist_level_m


def _skirt_model(body_v, waist_m, n, fabric):
    sk = flared_skirt(body_v, n, waist_height_m=waist_m, flare_deg=18.0)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        fabric,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    return sk, model


def test_skirt_settles_on_posed_twin_outside_the_skin_at_live_budget(twin):
    """The garment-on-body figure at 10 substeps × 1 sweep: after settling no vertex is more
    than 1 mm inside the posed twin and the fabric is barely stretched."""
    pose = Pose.from_json(
        {
            "joints": {
                "leftUpperLeg": [-0.0436, 0, 0, 0.9990],  # 5° forward
                "rightUpperLeg": [0.0349, 0, 0, 0.9994],  # 4° back
                "spine": [0, 0.0523, 0, 0.9986],  # 6° twist
                "leftUpperArm": [0, 0, 0.1045, 0.9945],  # 12° out
                "rightUpperArm": [0, 0, -0.1045, 0.9945],
            }
        }
    )
    keep, inverse = np.unique(twin.weld_map, return_inverse=True)
    bv, bf = twin.posed_vertices(pose)[keep], inverse[twin.faces]
    sk, model = _skirt_model(bv, waist_level(twin), 3000, SILK_CHARMEUSE)
    collider = BodyCollider(bv, bf)
    state = ClothState.at_rest(sk.positions_m)
    contacts = Contacts()
    settings = SolverSettings(substeps=10, extra_damping_per_s=2.0)
    for _ in range(90):
        step(model, state, state, None, collider, contacts, 1 / 30, settings)
    x = state.positions_m
    sd = signed_distance_to_body(x, bv, bf)
    assert sd.min() > -0.001
    assert np.sum(sd < 0.006) > 20  # it rests on the hips
    s = edge_stretch(model, x)
    assert abs(s.mean()) < 0.02 and s.max() < 0.1
    assert x[sk.hem, 1].mean() < sk.positions_m[sk.hem, 1].mean() - 0.005  # it hangs


@pytest.mark.slow
def test_live_skirt_on_skinned_twin_is_stable_under_mocap_turns_and_arm_flings(twin):
    """1,200 frames (40 s) of the CMU clip retargeted onto the twin, with 90° turns and both
    arms flung overhead; the 10,000-frame run is in bench/cloth.py."""
    clip = retarget_bvh(read_bvh(DATA / "motion" / "scaled_131_01.bvh"), twin.skeleton)
    motion = SkinnedMotion(twin, with_turns_and_arm_raises(from_rest(clip)))
    body0 = motion.vertices(0)
    sk, model = _skirt_model(body0, waist_level(twin), 1000, DENIM)
    sim = ClothSim(model, body0, motion.faces, sk.positions_m, SolverSettings(substeps=10))
    ke, hem, p99 = [], [], []
    for f in range(1, 1201):
        body_now = motion.vertices(f)
        st = sim.step(body_now, 1 / 30)
        ke.append(st.kinetic_energy_j(model))
        hem.append(st.positions_m[sk.hem].mean(axis=0))
        p99.append(np.percentile(edge_stretch(model, st.positions_m), 99))
        if f % 100 == 0:
            assert np.all(np.isfinite(st.positions_m))
    # Every frame, not every 100th: a fling stretches the cloth for a few frames (measured:
    # 42-49 of 1,200 frames over 10 %, the worst 24-30 %), so a sample of 12 frames passed or
    # failed by where it fell. The cloth stays within 10 % nearly always and never tears.
    p99 = np.asarray(p99)
    assert np.mean(p99 < 0.1) >= 0.95 and p99.max() < 0.35
    ke = np.asarray(ke)
    # no energy build-up: the last third moves no more than the first third
    assert ke[800:].mean() < 2.0 * ke[:400].mean() + 1e-3
    assert ke.max() < 2.0
    # the skirt went with the body: the walk carries the hips ~2.5 m and turns them
    assert np.ptp(np.asarray(hem)[:, 2]) > 1.0
    # waistband pins ride rigidly on the hips
    p = st.positions_m[sk.waistband]
    d0 = np.linalg.norm(sk.positions_m[sk.waistband] - sk.positions_m[sk.waistband[0]], axis=1)
    np.testing.assert_allclose(np.linalg.norm(p - p[0], axis=1), d0, atol=1e-9)
    # and outside the body at the end (1 mm tolerance)
    sd = signed_distance_to_body(st.positions_m, body_now, motion.faces)
    assert np.mean(sd < -0.001) < 0.01
