"""Cloth solver figures (issue #3): sheet on sphere against pypbd, garments on a posed twin at
1k–30k vertices, silk vs denim drape, and a 10,000-frame live run under real motion.

Run: .venv/bin/python bench/cloth.py [--quick]
Prints the machine and its load, then one table. One core (the process is pinned). A time is
the median over frames of one run; a row quotes the run with the median time out of `runs`.
Both wall-clock and CPU (thread) time are given: the machine is shared, and CPU time is what
other processes' load distorts least. Numba kernels are compiled before any timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.cloth_scenes
from machine import describe_machine, pin_one_core

pin_one_core()

from spatialtwin.body.parametric import Measurements, create_twin_body, measured  # noqa: E402
from spatialtwin.body.pose import Pose  # noqa: E402
from spatialtwin.cloth.collider import (  # noqa: E402
    BodyCollider,
    DrapeLayer,
    LayeredCollider,
)
from spatialtwin.cloth.contacts import Contacts  # noqa: E402
from spatialtwin.cloth.drape import drape_garment  # noqa: E402
from spatialtwin.cloth.fabric import Fabric  # noqa: E402
from spatialtwin.cloth.fabric_params import DENIM, SILK_CHARMEUSE  # noqa: E402
from spatialtwin.cloth.model import build_cloth_model  # noqa: E402
from spatialtwin.cloth.solver import (  # noqa: E402
    ClothSim,
    ClothState,
    SolverSettings,
    SphereColliders,
    edge_stretch,
    step,
)
from spatialtwin.geometry import unique_edges, vertex_normals  # noqa: E402
from spatialtwin.gltf.bvh import read_bvh  # noqa: E402
from spatialtwin.gltf.template_npz import shipped_template  # noqa: E402
from spatialtwin.tracking.motion import (  # noqa: E402
    SkinnedMotion,
    from_rest,
    retarget_bvh,
    with_turns_and_arm_raises,
)
from tests.cloth_scenes import flared_skirt, square_sheet  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DT = 1.0 / 30.0
TWIN = Measurements(
    height_m=1.70, chest_m=0.95, waist_m=0.80, hips_m=1.00, inseam_m=0.78, shoulder_m=0.42
)
# the static scenes' pose: a relaxed stance, one leg forward, a slight turn, arms a little out
STANCE = Pose.from_json(
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

# --- the peers' scene ------------------------------------------------------------------------
SHEET_RES, SHEET_SIDE_M, SPHERE_R_M, DROP_M, FRAMES = 100, 1.0, 0.3, 0.15, 120
SHEET_FABRIC = Fabric("sheet", 0.2, 1e5, 1e5, 0.0, 0.5, 0.005, 0.0, 0.0)


def stretch_stats(edges: np.ndarray, rest: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    s = np.linalg.norm(x[edges[:, 0]] - x[edges[:, 1]], axis=1) / rest - 1.0
    return float(s.mean()), float(s.max())


def sheet_on_sphere(substeps: int) -> dict[str, float]:
    """100×100 sheet, 1 m, dropped 0.15 m onto a fixed 0.3 m sphere, μ 0.5, 5 mm thick."""
    v, f = square_sheet(SHEET_RES, SHEET_SIDE_M, SPHERE_R_M + DROP_M)
    model = build_cloth_model(v, f, SHEET_FABRIC)
    spheres = SphereColliders(np.array([[0.0, 0.0, 0.0, SPHERE_R_M]]))
    settings = SolverSettings(substeps=substeps, iterations=1, contact_margin_m=0.0)
    state = ClothState.at_rest(v)
    wall, cpu = [], []
    for _ in range(FRAMES):
        t, c = time.perf_counter(), time.thread_time()
        step(model, state, state, None, None, None, DT, settings, spheres)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    x = state.positions_m
    mean, mx = stretch_stats(model.mesh_edges, model.mesh_edge_rest_m, x)
    return {
        "ms": 1e3 * float(np.median(wall)),
        "cpu_ms": 1e3 * float(np.median(cpu)),
        "mean": mean,
        "max": mx,
        "clear_mm": 1e3 * (float(np.min(np.linalg.norm(x, axis=1))) - SPHERE_R_M),
    }


def pypbd_sheet_on_sphere(collision_every_substep: bool) -> dict[str, float]:
    """The same scene in pypbd (Bender's PositionBasedDynamics): PBD distance constraints on the
    same edges, same masses, the sphere a static rigid body with a cubic signed distance field
    (its default CubicSDFCollisionDetection), tolerance = 5 mm thickness, friction 0.5 on both.

    10 substeps × 1 iteration either as pypbd's own substepping (one step of 1/30 s with
    NUM_SUB_STEPS = 10: collision detection once per frame, as its TimeStepController does)
    or as ten steps of 1/300 s (collision detection every substep).
    """
    import pypbd as pbd
    import trimesh

    v, f = square_sheet(SHEET_RES, SHEET_SIDE_M, SPHERE_R_M + DROP_M)
    sim = pbd.Simulation.getCurrent()
    sim.initDefault()
    model = sim.getModel()
    tri_model = model.addTriangleModel(list(v), f.ravel().tolist(), testMesh=True)
    particles = model.getParticles()
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    mass = np.zeros(len(v))
    np.add.at(mass, f.ravel(), np.repeat(area / 3.0, 3))
    mass *= SHEET_FABRIC.areal_density_kg_m2
    for i, m in enumerate(mass):
        particles.setMass(i, float(m))
    edges = unique_edges(f)
    for a, b in edges:
        model.addDistanceConstraint(int(a), int(b), 1.0)
    tri_model.setFrictionCoeff(SHEET_FABRIC.friction)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sphere.obj")
        trimesh.creation.icosphere(4, 1.0).export(path)
        vd, mesh = pbd.OBJLoader.loadObjToMesh(path, [1.0, 1.0, 1.0])
    sdf = pbd.CubicSDFCollisionDetection.generateSDF(vd, mesh, [30, 30, 30])
    rb = model.addRigidBody(1.0, vd, mesh, [0.0, 0.0, 0.0], np.eye(3), [SPHERE_R_M] * 3, False, sdf)
    rb.setMass(0.0)
    rb.setFrictionCoeff(SHEET_FABRIC.friction)
    ts = sim.getTimeStep()
    cd = ts.getCollisionDetection()
    cd.setTolerance(SHEET_FABRIC.thickness_m)
    ts.setCollisionDetection(model, cd)
    ts.setValueUInt(pbd.TimeStepController.MAX_ITERATIONS, 1)
    if collision_every_substep:
        pbd.TimeManager.getCurrent().setTimeStepSize(DT / 10)
        ts.setValueUInt(pbd.TimeStepController.NUM_SUB_STEPS, 1)
        calls = 10
    else:
        pbd.TimeManager.getCurrent().setTimeStepSize(DT)
        ts.setValueUInt(pbd.TimeStepController.NUM_SUB_STEPS, 10)
        calls = 1
    wall, cpu = [], []
    for _ in range(FRAMES):
        t, c = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            ts.step(model)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    x = np.array([particles.getPosition(i).ravel() for i in range(len(v))])
    rest = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    mean, mx = stretch_stats(edges, rest, x)
    return {
        "ms": 1e3 * float(np.median(wall)),
        "cpu_ms": 1e3 * float(np.median(cpu)),
        "mean": mean,
        "max": mx,
        "clear_mm": 1e3 * (float(np.min(np.linalg.norm(x, axis=1))) - SPHERE_R_M),
        "fell_off": bool(x[:, 1].max() < 0.0),
    }


def run_pypbd_isolated(collision_every_substep: bool) -> dict[str, float] | None:
    """pypbd keeps one global simulation per process: each run gets a fresh process."""
    arg = "every" if collision_every_substep else "frame"
    out = subprocess.run(
        [sys.executable, __file__, "--pypbd-run", arg], capture_output=True, text=True
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"pypbd run failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


# --- garments on the twin ----------------------------------------------------------------------


def skirt_on_body(body_v, body_f, waist_m, n_verts, substeps, frames) -> dict[str, float]:
    """A silk skirt settling on the static posed twin; per-frame time over the settling run."""
    sk = flared_skirt(body_v, n_verts, waist_height_m=waist_m, flare_deg=18.0)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        SILK_CHARMEUSE,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    collider = BodyCollider(body_v, body_f)
    contacts = Contacts()
    settings = SolverSettings(substeps=substeps, extra_damping_per_s=2.0)
    state = ClothState.at_rest(sk.positions_m)
    wall, cpu = [], []
    for _ in range(frames):
        t, c = time.perf_counter(), time.thread_time()
        step(model, state, state, None, collider, contacts, DT, settings)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    x = state.positions_m
    s = edge_stretch(model, x)
    depth = -float(np.min(collider.signed_distance(x)))
    return {
        "ms": 1e3 * float(np.median(wall)),
        "cpu_ms": 1e3 * float(np.median(cpu)),
        "mean": float(s.mean()),
        "max": float(s.max()),
        "pen_mm": 1e3 * max(depth, 0.0),
        "verts": len(x),
        "speed": float(np.max(np.linalg.norm(state.velocities_m_s, axis=1))),
    }


def fabric_drape(body_v, body_f, waist_m, fabric: Fabric) -> dict[str, float]:
    sk = flared_skirt(body_v, 3000, waist_height_m=waist_m, flare_deg=18.0)
    r = drape_garment(
        sk.positions_m,
        sk.faces,
        fabric,
        body_v,
        body_f,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    x = r.positions_m
    hem = sk.hem
    cx, cz = sk.positions_m[:, 0].mean(), sk.positions_m[:, 2].mean()
    return {
        "drop_cm": 100 * float(sk.positions_m[hem, 1].mean() - x[hem, 1].mean()),
        "hem_r_cm": 100 * float(np.hypot(x[hem, 0] - cx, x[hem, 2] - cz).mean()),
        "frames": r.frames,
        "mean": r.mean_stretch,
        "max": r.max_stretch,
        "clear_mm": 1e3 * r.min_body_clearance_m,
    }


def live_run(motion: SkinnedMotion, waist_m: float, frames: int, substeps: int) -> dict:
    """A 3k denim skirt on the twin walking (CMU 131_01), turning 90° and flinging its arms."""
    body0 = motion.vertices(0)
    sk = flared_skirt(body0, 3000, waist_height_m=waist_m, flare_deg=18.0)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        DENIM,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    sim = ClothSim(model, body0, motion.faces, sk.positions_m, SolverSettings(substeps=substeps))
    ke = np.zeros(frames)
    cloth_ms, skin_ms = [], []
    worst_stretch, p99_stretch, deepest, deep_share = 0.0, 0.0, 0.0, 0.0
    for f in range(1, frames + 1):
        c = time.thread_time()
        body = motion.vertices(f)
        skin_ms.append(time.thread_time() - c)
        c = time.thread_time()
        st = sim.step(body, DT)
        cloth_ms.append(time.thread_time() - c)
        ke[f - 1] = st.kinetic_energy_j(model)
        if f % 10 == 0:
            s = edge_stretch(model, st.positions_m)
            worst_stretch = max(worst_stretch, float(s.max()))
            p99_stretch = max(p99_stretch, float(np.percentile(s, 99)))
            sd = sim.collider.signed_distance(st.positions_m)
            deepest = max(deepest, -float(np.min(sd)))
            deep_share = max(deep_share, float(np.mean(sd < -0.001)))
    x = sim.state.positions_m
    return {
        "cloth_ms": 1e3 * float(np.median(cloth_ms)),
        "skin_ms": 1e3 * float(np.median(skin_ms)),
        "ke_max": float(ke.max()),
        "ke_first": float(ke[:1000].mean()),
        "ke_last": float(ke[-1000:].mean()),
        "finite": bool(np.all(np.isfinite(x))),
        "worst_stretch": worst_stretch,
        "p99_stretch": p99_stretch,
        "deepest_mm": 1e3 * max(deepest, 0.0),
        "deep_share": deep_share,
    }


# --- kernel timings, for comparing two checkouts in one sitting ----------------------------


def spread_ms(samples_s: list[float]) -> dict[str, float]:
    """Median and 95th percentile (ms) of per-frame times in seconds."""
    a = 1e3 * np.asarray(samples_s)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95))}


def _contact_radius(fabric: Fabric, settings: SolverSettings) -> float:
    return fabric.thickness_m + settings.contact_margin_m + settings.detection_margin_m


def timing_scenes(body_v, body_f, waist_m, motion: SkinnedMotion, live_frames: int) -> dict:
    """CPU time per frame (median, p95) of the solver step and of contact detection alone.

    1. `step` of a silk skirt settling on the static posed twin (3k and 10k vertices, 10×1).
    2. `ClothSim.step` of a 3k denim skirt on the walking, turning twin (`live_frames`).
    3. Contact detection alone, replaying that run's body poses and garment states against a
       fresh collider with contacts carried frame to frame (the live call).
    4. The same against a layered collider: the posed body plus a settled skirt, the replayed
       garment lifted 5 mm off it (two surfaces searched per call).
    """
    out: dict[str, dict[str, float]] = {}
    settings = SolverSettings(substeps=10, extra_damping_per_s=2.0)
    settled = None
    for n in (3000, 10000):
        sk = flared_skirt(body_v, n, waist_height_m=waist_m, flare_deg=18.0)
        model = build_cloth_model(
            sk.positions_m,
            sk.faces,
            SILK_CHARMEUSE,
            pinned=sk.waistband,
            seams=sk.seams,
            rest_positions_m=sk.rest_positions_m,
        )
        collider = BodyCollider(body_v, body_f)
        contacts = Contacts()
        state = ClothState.at_rest(sk.positions_m)
        cpu = []
        for _ in range(60):
            c = time.thread_time()
            step(model, state, state, None, collider, contacts, DT, settings)
            cpu.append(time.thread_time() - c)
        out[f"step, static skirt {model.vertex_count} v"] = spread_ms(cpu)
        if settled is None:
            settled = (state.positions_m.copy(), np.asarray(sk.faces))

    body0 = motion.vertices(0)
    sk = flared_skirt(body0, 3000, waist_height_m=waist_m, flare_deg=18.0)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        DENIM,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    live_settings = SolverSettings(substeps=10)
    sim = ClothSim(model, body0, motion.faces, sk.positions_m, live_settings)
    replay = []
    cpu = []
    for f in range(1, live_frames + 1):
        body = motion.vertices(f)
        replay.append((body, sim.state.positions_m.copy(), sim.state.velocities_m_s.copy()))
        c = time.thread_time()
        sim.step(body, DT)
        cpu.append(time.thread_time() - c)
    out[f"ClothSim.step, live skirt {model.vertex_count} v"] = spread_ms(cpu)

    radius = _contact_radius(DENIM, live_settings)
    collider = BodyCollider(body0, motion.faces)
    contacts = Contacts()
    cpu = []
    for body, x, v in replay:
        collider.update(body)
        c = time.thread_time()
        collider.detect_contacts(x, radius, contacts=contacts, velocities_m_s=v, dt=DT)
        cpu.append(time.thread_time() - c)
    out[f"detect_contacts, live replay {len(x)} v"] = spread_ms(cpu)

    layer_x, layer_f = settled
    layered = LayeredCollider(body_v, body_f, [DrapeLayer(layer_x, layer_f, 0.001)])
    lifted = layer_x + 0.005 * vertex_normals(layer_x, layer_f)
    rng = np.random.default_rng(7)
    contacts = Contacts()
    cpu = []
    for _ in range(60):
        x = lifted + rng.normal(scale=0.0005, size=lifted.shape)
        c = time.thread_time()
        layered.detect_contacts(
            x, radius, contacts=contacts, velocities_m_s=np.zeros_like(x), dt=DT
        )
        cpu.append(time.thread_time() - c)
    out[f"detect_contacts, layered {len(x)} v"] = spread_ms(cpu)
    return out


def print_timings(rows: dict[str, list[dict]]) -> None:
    """One table row per scene and tree: the median over runs of each run's median and p95."""
    print("\n| scene | tree | runs | CPU ms/frame median | CPU ms/frame p95 |")
    print("|---|---|---|---|---|")
    for scene, per_tree in rows.items():
        for tree, runs in per_tree.items():
            med = float(np.median([r["median_ms"] for r in runs]))
            p95 = float(np.median([r["p95_ms"] for r in runs]))
            print(f"| {scene} | {tree} | {len(runs)} | {med:.3f} | {p95:.3f} |")


def run_timings_child(tree: Path, live_frames: int) -> dict:
    """The timing scenes of another checkout (its own bench and src) in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / "cloth.py"), "--timings-json", str(live_frames)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"timings of {tree} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def compare_timings(trees: list[Path], rounds: int, live_frames: int) -> None:
    """Alternate the trees' timing runs, reversing the order every round (A B, B A, A B …),
    so load on a shared machine, and its drift within a round, hits every tree alike."""
    rows: dict[str, dict[str, list[dict]]] = {}
    for k in range(rounds):
        for tree in trees if k % 2 == 0 else trees[::-1]:
            for scene, r in run_timings_child(tree, live_frames).items():
                rows.setdefault(scene, {}).setdefault(str(tree), []).append(r)
    print_timings(rows)


def twin_scene() -> tuple[np.ndarray, np.ndarray, float, SkinnedMotion]:
    """The posed twin (welded) of the static scenes, its waist height and the live motion."""
    twin = create_twin_body(TWIN, shipped_template().body)
    keep, inverse = np.unique(twin.weld_map, return_inverse=True)
    body_v, body_f = twin.posed_vertices(STANCE)[keep], inverse[twin.faces]
    # where a tape finds the waist: the hm08 rigs put the spine joint well below it
    waist = measured(twin).waist_level_m
    clip = retarget_bvh(read_bvh(DATA / "motion" / "scaled_131_01.bvh"), twin.skeleton)
    live = SkinnedMotion(twin, with_turns_and_arm_raises(from_rest(clip)))
    return body_v, body_f, waist, live


def median_run(fn, runs: int, *args) -> dict:
    results = [fn(*args) for _ in range(runs)]
    results.sort(key=lambda r: r.get("cpu_ms", r.get("ms", 0.0)))
    return results[len(results) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer runs and frames")
    ap.add_argument("--live-frames", type=int, default=10_000)
    ap.add_argument("--pypbd-run", choices=("frame", "every"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--timings",
        nargs="*",
        type=Path,
        metavar="CHECKOUT",
        help="only the kernel timings (median, p95) of this tree and of each CHECKOUT given "
        "(another clone or worktree beside ../shared), run alternately",
    )
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds for --timings")
    ap.add_argument("--timings-json", type=int, metavar="LIVE_FRAMES", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pypbd_run:
        print(json.dumps(pypbd_sheet_on_sphere(args.pypbd_run == "every")))
        return
    if args.timings_json is not None:
        body_v, body_f, waist, live = twin_scene()
        skirt_on_body(body_v, body_f, waist, 300, 2, 2)  # compile outside the timings
        print(json.dumps(timing_scenes(body_v, body_f, waist, live, args.timings_json)))
        return
    if args.timings is not None:
        print(describe_machine())
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        here = Path(__file__).resolve().parents[1]
        frames = 150 if args.quick else 300
        compare_timings([here, *[t.resolve() for t in args.timings]], args.rounds, frames)
        load = os.getloadavg()
        print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        return
    runs = 1 if args.quick else 5
    print(describe_machine())
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    body_v, body_f, waist, live = twin_scene()

    sheet_on_sphere(2)  # compile / load cached kernels outside the timings
    skirt_on_body(body_v, body_f, waist, 300, 2, 2)

    print(
        "\n| scene | vertices | substeps×iters | ms/frame wall | ms/frame CPU | mean stretch "
        "| max stretch | other |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ours = {}
    for sub in (10, 20, 40):
        r = median_run(sheet_on_sphere, runs, sub)
        ours[sub] = r
        print(
            f"| sheet on sphere, SpatialTwin | 10000 | {sub}×1 | {r['ms']:.2f} | {r['cpu_ms']:.2f} "
            f"| {100 * r['mean']:.2f}% | {100 * r['max']:.1f}% | min sphere clearance "
            f"{r['clear_mm']:.2f} mm (thickness 5 mm) |"
        )
    peer_modes = [("frame", "its NUM_SUB_STEPS=10, collision detection per frame")]
    if not args.quick:
        peer_modes.append(("every", "10 steps of 1/300 s, collision detection per substep"))
    for mode, label in peer_modes:
        results = [run_pypbd_isolated(mode == "every") for _ in range(1 if mode == "every" else 3)]
        results = [r for r in results if r is not None]
        if not results:
            print(f"| sheet on sphere, pypbd 2.2.2 ({label}) | 10000 | 10×1 | failed | | | | |")
            continue
        results.sort(key=lambda r: r["cpu_ms"])
        r = results[len(results) // 2]
        print(
            f"| sheet on sphere, pypbd 2.2.2 ({label}) | 10000 | 10×1 | {r['ms']:.2f} | "
            f"{r['cpu_ms']:.2f} | {100 * r['mean']:.2f}% | {100 * r['max']:.1f}% | min sphere "
            f"clearance {r['clear_mm']:.2f} mm{', slid off the sphere' if r['fell_off'] else ''}"
            f"; CPU time ours 10×1 / pypbd = {ours[10]['cpu_ms'] / r['cpu_ms']:.2f}, ours 20×1 "
            f"/ pypbd = {ours[20]['cpu_ms'] / r['cpu_ms']:.2f} |"
        )

    frames = 30 if args.quick else 90
    for n in (1000, 3000, 10000, 30000):
        for sub in (10, 15):
            if n == 30000 and sub == 15:
                continue
            r = median_run(
                skirt_on_body,
                1 if n >= 30000 or args.quick else 3,
                body_v,
                body_f,
                waist,
                n,
                sub,
                frames,
            )
            print(
                f"| silk skirt settling on posed twin (body collisions), {frames} frames "
                f"| {r['verts']} | {sub}×1 | {r['ms']:.2f} | {r['cpu_ms']:.2f} | "
                f"{100 * r['mean']:.2f}% | {100 * r['max']:.1f}% | deepest vertex "
                f"{r['pen_mm']:.2f} mm, fastest vertex at end {r['speed']:.3f} m/s |"
            )
    for fabric in (SILK_CHARMEUSE, DENIM):
        r = fabric_drape(body_v, body_f, waist, fabric)
        print(
            f"| drape_garment {fabric.name} on posed twin | 3000 | 20×1 | – | – | "
            f"{100 * r['mean']:.2f}% | {100 * r['max']:.1f}% | hem drop {r['drop_cm']:.2f} cm, "
            f"hem radius {r['hem_r_cm']:.1f} cm, {r['frames']} frames, min clearance "
            f"{r['clear_mm']:.2f} mm |"
        )
    live_frames = 600 if args.quick else args.live_frames
    r = live_run(live, waist, live_frames, substeps=10)
    print(
        f"| live denim skirt on skinned twin: CMU walk + 90° turns + arm flings | 3000 | 10×1 | "
        f"– | cloth {r['cloth_ms']:.2f} + skinning {r['skin_ms']:.2f} | – | "
        f"{100 * r['worst_stretch']:.0f}% (p99 {100 * r['p99_stretch']:.1f}%) | {live_frames} "
        f"frames, finite {r['finite']}, KE max {r['ke_max']:.3f} J, KE mean first/last 1000 "
        f"frames {r['ke_first']:.4f}/{r['ke_last']:.4f} J, deepest vertex {r['deepest_mm']:.1f} "
        f"mm, most vertices >1 mm inside at once {100 * r['deep_share']:.1f}% |"
    )
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
