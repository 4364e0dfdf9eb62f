"""Benchmark: real garments on real bodies — ingest, refit and drape per outfit, the matrix.

For every MakeHuman outfit in ../shared/data/garments (with its .mhclo): ingest (read, bind
to hm08, remesh), then a look on each twin — imported from base.obj (the authoring body
itself), generated S/M/L from the hm08 template, imported CesiumMan.glb — and posed looks
(a lunge, arms raised and arms slightly out, tracked from ../shared/data/people photos) on
two twins; and the bare OBJ (no .mhclo) with an estimated authoring body. Per drape: wall
seconds of ingest, refit + drape, frames and stop reason, mean/max edge stretch, the share
of vertices > 1 mm inside the body and the deepest (trimesh signed distance), body-part
agreement with the authoring body, the lowest body point (floor), and on the base.obj twin
the distance to the authored garment (mean, p95).

Usage:
    .venv/bin/python bench/garment.py            # the whole matrix (make garments)
    .venv/bin/python bench/garment.py --quick    # each outfit once on base.obj, one posed look
    .venv/bin/python bench/garment.py --outfits male_casualsuit02 --twins base,M
    .venv/bin/python bench/garment.py --shots bench/_out/outfits   # + browser screenshots

`--shots DIR` also uploads each outfit textured (a zip of OBJ + MTL + a gingham PNG + .mhclo),
drapes it on the base.obj twin and a generated 1.70 m twin, writes `<outfit>_<twin>.glb` (checked
by the Khronos validator) and a Debian chromium screenshot `<outfit>_<twin>.png` of it on the
shared web stage into DIR (tests/outfit_shots.py; the suite shoots two of the outfits).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe_machine
from spatialtwin.body.parametric import Measurements, create_twin_body
from spatialtwin.body.pose import Pose
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.garment.binding import AuthoringBody
from spatialtwin.garment.estimate import posed_template
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.fit_check import body_parts, inside_depth_m
from spatialtwin.garment.look import LookGarment, drape_look
from spatialtwin.garment.refit import GarmentRefit
from spatialtwin.gltf.makehuman import obj_vertex_positions, read_mhclo
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.native_logs import quiet_native_logs
from spatialtwin.services.ingest import prepare_garment
from spatialtwin.services.twins import import_body

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUTFITS = (
    "male_casualsuit02",
    "male_casualsuit06",
    "male_worksuit01",
    "female_casualsuit01",
    "female_elegantsuit01",
    "female_sportsuit01",
)
SIZES = {
    "S": Measurements(1.62, 0.84, 0.68, 0.92, 0.74, 0.36),
    "M": Measurements(1.70, 0.90, 0.74, 0.98, 0.78, 0.38),
    "L": Measurements(1.78, 0.98, 0.84, 1.04, 0.82, 0.41),
}
PHOTOS = {"lunge": "war0.jpg", "arms_up": "y1.jpg", "arms_out": "tada_photo.jpg"}


def twin(name: str) -> TwinBody:
    if name == "base":
        return import_body(SHARED / "bodies" / "base.obj", template=shipped_template().body).body
    if name == "cesium":
        return import_body(SHARED / "bodies" / "CesiumMan.glb").body
    return create_twin_body(SIZES[name], shipped_template().body)


def tracked_pose(photo: str, body: TwinBody) -> Pose:
    """The pose MediaPipe sees in a photo, retargeted onto `body`'s skeleton."""
    import cv2

    from spatialtwin.tracking.tracker import TwinPoseTracker

    image = cv2.cvtColor(cv2.imread(str(SHARED / "people" / photo)), cv2.COLOR_BGR2RGB)
    with TwinPoseTracker(body.skeleton) as tracker:
        return tracker.track(image, 0.0).pose


def one_look(
    outfit: str, body: TwinBody, pose: Pose | None, bare: bool, base_shift: np.ndarray | None
) -> dict[str, object]:
    template = shipped_template()
    obj = (SHARED / "garments" / f"{outfit}.obj").read_bytes()
    t0 = time.perf_counter()
    if bare:
        prepared = prepare_garment(
            obj, f"{outfit}.obj", "outfit", estimate_from=AuthoringBody.from_template(template)
        )
        authoring = (
            posed_template(AuthoringBody.from_template(template), prepared.estimate["rotations"])
            if prepared.estimate
            else None
        )
    else:
        proxy = read_mhclo((SHARED / "garments" / f"{outfit}.mhclo").read_bytes())
        bound = AuthoringBody.from_template(template, proxy, obj_vertex_positions(obj))
        prepared = prepare_garment(obj, f"{outfit}.obj", "outfit", authoring=bound)
        authoring = AuthoringBody.from_template(template)
    ingest_s = time.perf_counter() - t0
    refit = (
        GarmentRefit(prepared.render, prepared.binding, authoring)
        if authoring is not None and prepared.binding is not None
        else None
    )
    garment = LookGarment(
        outfit,
        prepared.simulation,
        prepared.pieces,
        preset("cotton-jersey").to_solver(),
        meta={"category": "outfit"},
        refit=refit,
    )
    t0 = time.perf_counter()
    look = drape_look(body, [garment], pose)
    look_s = time.perf_counter() - t0
    draped = look.garments[0]
    depth = inside_depth_m(look.body_vertices_m, look.body_faces, draped.positions_m)
    auth_body = authoring.body if authoring is not None else template.body
    before = body_parts(auth_body.vertices_m, auth_body.skin, prepared.simulation.vertices_m)
    posed_v = body.posed_vertices(look.pose) if pose is not None else body.vertices_m
    after = body_parts(posed_v, body.skin, draped.positions_m)
    row: dict[str, object] = {
        "ingest_s": round(ingest_s, 2),
        "look_s": round(look_s, 2),
        "frames": draped.frames,
        "stop": draped.stop_reason,
        "mean_stretch_pct": round(100 * draped.mean_stretch, 2),
        "max_stretch_pct": round(100 * draped.max_stretch, 1),
        "inside_over_1mm_pct": round(100 * float(np.mean(depth > 0.001)), 2),
        "deepest_mm": round(1000 * float(depth.max()), 1),
        "part_agreement_pct": round(100 * float(np.mean(before == after)), 1),
        "lowest_body_y_m": round(float(posed_v[:, 1].min()), 4),
    }
    if base_shift is not None and pose is None and not bare:
        authored_m = prepared.simulation.vertices_m + base_shift
        d = np.linalg.norm(draped.positions_m - authored_m, axis=1)
        row["authored_mean_cm"] = round(100 * float(d.mean()), 2)
        row["authored_p95_cm"] = round(100 * float(np.percentile(d, 95)), 2)
    return row


def shoot(outfits: list[str], out_dir: Path) -> None:
    """Textured looks of `outfits` on two twins, validated and screenshot into `out_dir`."""
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from tests.browser_harness import launch_chromium
    from tests.gltf_validation import validate_glbs
    from tests.outfit_shots import shoot_outfits, shot_twins

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            shots = shoot_outfits(browser, outfits, shot_twins(), out_dir)
        finally:
            browser.close()
    reports = validate_glbs([s.look.glb for s in shots])
    print(f"\nscreenshots in {out_dir}")
    print(
        "| outfit | twin | ingest s | drape s | stop | glTF errors | fabric % | blue % | "
        "green % | skin % | textured on screen |"
    )
    print("|" + "---|" * 11)
    for shot, report in zip(shots, reports, strict=True):
        c = shot.coverage
        problems = ([shot.state["error"]] if shot.state["error"] else []) + c.problems()
        print(
            f"| {shot.look.outfit} | {shot.look.twin} | {shot.look.ingest_s:.1f} | "
            f"{shot.look.drape_s:.1f} | {shot.look.stats['stop_reason']} | "
            f"{report['numErrors']} | {100 * c.pattern:.1f} | {100 * c.blue:.1f} | "
            f"{100 * c.green:.1f} | {100 * c.skin:.1f} | "
            f"{'yes' if not problems else 'NO: ' + '; '.join(problems)} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the suite's representative slice")
    parser.add_argument("--outfits", default=",".join(OUTFITS))
    parser.add_argument("--twins", default="base,S,M,L,cesium")
    parser.add_argument("--posed-twins", default="base,M")
    parser.add_argument("--no-posed", action="store_true")
    parser.add_argument("--no-bare", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument(
        "--shots", type=Path, metavar="DIR", help="also write textured looks and screenshots"
    )
    parser.add_argument("--verbose", action="store_true", help="show TFLite/MediaPipe log lines")
    args = parser.parse_args()
    if not args.verbose:
        quiet_native_logs()
    print(describe_machine())
    outfits = args.outfits.split(",")
    twins = ["base"] if args.quick else args.twins.split(",")
    posed_twins = ["base"] if args.quick else args.posed_twins.split(",")
    poses = ["lunge"] if args.quick else list(PHOTOS)
    bodies = {name: twin(name) for name in {*twins, *posed_twins, "base"}}
    template = shipped_template()
    base_shift = bodies["base"].vertices_m.mean(0) - template.body.vertices_m.mean(0)
    plan = [(o, t, None, False) for o in outfits for t in twins]
    if not args.no_posed:
        plan += [
            (o, t, p, False)
            for o in (outfits[:1] if args.quick else outfits)
            for t in posed_twins
            for p in poses
        ]
    if not args.no_bare:
        plan += [(o, "base", None, True) for o in (outfits[:1] if args.quick else outfits)]
    pose_cache: dict[tuple[str, str], Pose] = {}
    rows = []
    header = (
        "| outfit | twin | pose | ingest s | look s | frames | stop | mean % | max % | "
        ">1 mm in % | deepest mm | parts % | floor m | authored mean/p95 cm |"
    )
    print(header)
    print("|" + "---|" * 14)
    for outfit, tname, pname, bare in plan:
        body = bodies[tname]
        pose = None
        if pname is not None:
            key = (tname, pname)
            if key not in pose_cache:
                pose_cache[key] = tracked_pose(PHOTOS[pname], body)
            pose = pose_cache[key]
        row = one_look(outfit, body, pose, bare, base_shift if tname == "base" else None)
        row.update(outfit=outfit, twin=tname, pose=pname or "rest", bare=bare)
        rows.append(row)
        authored = "–"
        if "authored_mean_cm" in row:
            authored = f"{row['authored_mean_cm']} / {row['authored_p95_cm']}"
        print(
            f"| {outfit}{' (bare OBJ)' if bare else ''} | {tname} | {row['pose']} | "
            f"{row['ingest_s']} | {row['look_s']} | {row['frames']} | {row['stop']} | "
            f"{row['mean_stretch_pct']} | {row['max_stretch_pct']} | "
            f"{row['inside_over_1mm_pct']} | "
            f"{row['deepest_mm']} | {row['part_agreement_pct']} | {row['lowest_body_y_m']} | "
            f"{authored} |",
            flush=True,
        )
    per_outfit = [float(r["ingest_s"]) + float(r["look_s"]) for r in rows if r["pose"] == "rest"]
    print(
        f"ingest + refit + drape per outfit: median {statistics.median(per_outfit):.1f} s, "
        f"p95 {np.percentile(per_outfit, 95):.1f} s over {len(per_outfit)} rest-pose looks"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.shots is not None:
        shoot(outfits, args.shots)


if __name__ == "__main__":
    main()
