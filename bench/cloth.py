"""Cloth solver figures: sheet on sphere, skirt on the mean body, silk vs denim, live stability.

Run: .venv/bin/python bench/cloth.py [--quick]
Prints the machine, then one table. Times are medians over frames of the median run of
`RUNS` repeated runs, single thread, numba kernels warmed up (compile time excluded).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numba
import numpy as np
import trimesh

from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.cloth.fabric_params import DENIM, SILK_CHARMEUSE
from spatialtwin.cloth.model import build_cloth_model
from spatialtwin.cloth.scenes import MotionDrivenBody, flared_skirt, square_sheet
from spatialtwin.cloth.solver import (
    ClothSim,
    ClothState,
    SolverSettings,
    SphereColliders,
    edge_stretch,
    step,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DT = 1.0 / 30.0


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return (
        f"{platform.node()} | {cpu} | {os.cpu_count()} cores | Python "
        f"{platform.python_version()} numpy {np.__version__} numba {numba.__version__} | "
        f"load avg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def sheet_on_sphere(substeps: int, frames: int = 120) -> dict[str, float]:
    """The peers' scene: 100×100 sheet, 1 m, dropped 0.15 m on a fixed 0.3 m sphere."""
    fabric = Fabric("sheet", 0.2, 1e5, 1e5, 0.0, 0.5, 0.005, 0.0, 0.0)
    v, f = square_sheet(100, 1.0, 0.3 + 0.15)
    model = build_cloth_model(v, f, fabric)
    spheres = SphereColliders(np.array([[0.0, 0.0, 0.0, 0.3]]))
    settings = SolverSettings(substeps=substeps, iterations=1, contact_margin_m=0.0)
    state = ClothState.at_rest(v)
    times = []
    for _ in range(frames):
        t = time.perf_counter()
        step(model, state, state, None, None, DT, settings, spheres)
        times.append(time.perf_counter() - t)
    x = state.positions_m
    s = edge_stretch(model, x)
    return {
        "ms": 1e3 * float(np.median(times)),
        "mean": float(s.mean()),
        "max": float(s.max()),
        "clear": float(np.min(np.linalg.norm(x, axis=1)) - 0.3),
        "verts": len(v),
    }


def skirt_frame(body_v, body_f, n_verts: int, substeps: int, frames: int) -> dict[str, float]:
    """A skirt settling on the static posed body; per-frame time over the settling run."""
    sk = flared_skirt(body_v, n_verts)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        SILK_CHARMEUSE,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    collider = BodyCollider(body_v, body_f)
    settings = SolverSettings(substeps=substeps, extra_damping_per_s=2.0)
    state = ClothState.at_rest(sk.positions_m)
    times = []
    for _ in range(frames):
        t = time.perf_counter()
        step(model, state, state, None, collider, DT, settings)
        times.append(time.perf_counter() - t)
    x = state.positions_m
    s = edge_stretch(model, x)
    depth = -float(np.min(collider.signed_distance(x)))
    return {
        "ms": 1e3 * float(np.median(times)),
        "mean": float(s.mean()),
        "max": float(s.max()),
        "pen_mm": 1e3 * max(depth, 0.0),
        "verts": len(x),
    }


def fabric_drape(body_v, body_f, fabric: Fabric) -> dict[str, float]:
    from spatialtwin.cloth.drape import drape_garment

    sk = flared_skirt(body_v, 3000)
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
    drop = float(sk.positions_m[hem, 1].mean() - x[hem, 1].mean())
    cx, cz = sk.positions_m[:, 0].mean(), sk.positions_m[:, 2].mean()
    hem_r = float(np.hypot(x[hem, 0] - cx, x[hem, 2] - cz).mean())
    return {
        "drop_cm": 100 * drop,
        "hem_r_cm": 100 * hem_r,
        "frames": r.frames,
        "mean": r.mean_stretch,
        "max": r.max_stretch,
        "clear_mm": 1e3 * r.min_body_clearance_m,
    }


def live_run(body_v, body_f, frames: int) -> dict[str, float]:
    mb = MotionDrivenBody.from_motion_files(
        body_v,
        str(DATA / "motion" / "scaled_131_01.bvh"),
        str(DATA / "motion" / "pose_squats_3d.full.json"),
    )
    sk = flared_skirt(body_v, 3000)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        DENIM,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    sim = ClothSim(model, mb.vertices(0), body_f, sk.positions_m, SolverSettings(substeps=15))
    ke, times, worst_stretch = [], [], 0.0
    for f in range(1, frames + 1):
        body = mb.vertices(f)
        t = time.perf_counter()
        st = sim.step(body, DT)
        times.append(time.perf_counter() - t)
        ke.append(st.kinetic_energy_j(model))
        if f % 50 == 0:
            worst_stretch = max(worst_stretch, float(edge_stretch(model, st.positions_m).max()))
    x = sim.state.positions_m
    depth = -float(np.min(sim.collider.signed_distance(x)))
    ke_arr = np.asarray(ke)
    return {
        "ms": 1e3 * float(np.median(times)),
        "ke_max": float(ke_arr.max()),
        "ke_last_mean": float(ke_arr[-300:].mean()),
        "ke_first_mean": float(ke_arr[:300].mean()),
        "finite": bool(np.all(np.isfinite(x))),
        "worst_stretch": worst_stretch,
        "pen_mm_end": 1e3 * max(depth, 0.0),
    }


def median_run(fn, runs: int, *args):
    results = [fn(*args) for _ in range(runs)]
    results.sort(key=lambda r: r["ms"])
    return results[len(results) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer runs and frames")
    ap.add_argument("--live-frames", type=int, default=10_000)
    args = ap.parse_args()
    runs = 1 if args.quick else 3
    print("machine:", machine())
    body = trimesh.load(DATA / "bodies" / "mean_all.obj", process=False)
    bv, bf = np.asarray(body.vertices), np.asarray(body.faces)

    # warm-up: compile / load cached kernels outside the timings
    sheet_on_sphere(2, frames=2)
    skirt_frame(bv, bf, 300, 2, 2)

    print("\n| scene | vertices | substeps×iters | ms/frame | mean stretch | max stretch | other |")
    print("|---|---|---|---|---|---|---|")
    for sub in (10, 20, 40):
        r = median_run(sheet_on_sphere, runs, sub)
        print(
            f"| sheet on sphere (ours) | {r['verts']} | {sub}×1 | {r['ms']:.2f} | "
            f"{100 * r['mean']:.2f}% | {100 * r['max']:.1f}% | "
            f"min sphere clearance {1e3 * r['clear']:.2f} mm |"
        )
    frames = 30 if args.quick else 60
    for n in (1000, 3000, 10000, 30000):
        for sub in (10, 15):
            if n == 30000 and sub == 15:
                continue
            r = median_run(skirt_frame, 1 if n >= 10000 else runs, bv, bf, n, sub, frames)
            print(
                f"| skirt on body, static ({frames} frames) | {r['verts']} | {sub}×1 | "
                f"{r['ms']:.2f} | {100 * r['mean']:.3f}% | {100 * r['max']:.1f}% | "
                f"deepest vertex {r['pen_mm']:.2f} mm |"
            )
    for fabric in (SILK_CHARMEUSE, DENIM):
        r = fabric_drape(bv, bf, fabric)
        print(
            f"| drape_garment {fabric.name} | 3000 | 20×1 | – | {100 * r['mean']:.3f}% | "
            f"{100 * r['max']:.1f}% | hem drop {r['drop_cm']:.2f} cm, hem radius "
            f"{r['hem_r_cm']:.1f} cm, {r['frames']} frames, clearance {r['clear_mm']:.2f} mm |"
        )
    live_frames = 600 if args.quick else args.live_frames
    r = live_run(bv, bf, live_frames)
    print(
        f"| live denim skirt, walk+turns+arm raises | 3000 | 15×1 | {r['ms']:.2f} | – | "
        f"{100 * r['worst_stretch']:.1f}% (worst sampled) | {live_frames} frames, finite "
        f"{r['finite']}, KE max {r['ke_max']:.3f} J, KE mean first/last 300 frames "
        f"{r['ke_first_mean']:.4f}/{r['ke_last_mean']:.4f} J, end depth {r['pen_mm_end']:.2f} mm |"
    )


if __name__ == "__main__":
    main()
