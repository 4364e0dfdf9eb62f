"""LOD figures for the sample look beside npm gltfpack, nginx and Chromium, in one run.

    .venv/bin/python bench/lod.py [--requests 3000] [--page-loads 7]

Prints: the machine; the sample look (twin Ava with the T-shirt and trousers from
`assets/garments/`, skinned to Ava by nearest-body weights, role garment, so culling, hem
locking and clearance run); per level our bytes / triangles / error (bind pose and worst bent
pose) beside gltfpack's at the same triangle ratio (`-cc -si R -se 1`, fed our full level so
both simplify the same triangles); the full level's size against `gltfpack -cc`; the first
visible level's size; requests/s for one cached level file from the aiohttp server and from
nginx serving the same file from disk (skipped, with a message, when nginx is not installed);
and the product page's time from navigation to its first level in Chromium on loopback.
Errors are sampled symmetric Hausdorff distances as a fraction of the bounding-box diagonal,
measured by the same code for both tools. Timings are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from machine import describe_machine  # noqa: E402
from spatialtwin.body.parametric import Measurements, create_twin_body  # noqa: E402
from spatialtwin.garment.look import transfer_skin_weights  # noqa: E402
from spatialtwin.gltf.level_glb import PositionGrid, write_level  # noqa: E402
from spatialtwin.gltf.read_glb import read_glb_scene  # noqa: E402
from spatialtwin.gltf.template_npz import shipped_template  # noqa: E402
from spatialtwin.lod.levels import geometric_error  # noqa: E402
from spatialtwin.lod.scene import LodScene, scene_from_twin_body  # noqa: E402
from spatialtwin.lod.topology import border_vertices  # noqa: E402
from spatialtwin.services.lod import build_lod_for_scene  # noqa: E402
from tests.browser_harness import free_loopback_port, start_spatialtwin_server  # noqa: E402

LOOK_GARMENTS = ("tshirt", "trousers")
CONCURRENCY = 32


def sample_look() -> tuple[LodScene, Any]:
    spec = json.loads((ROOT / "assets/twins/ava.json").read_text())
    body = create_twin_body(Measurements(**spec["measurements"]), shipped_template().body)
    twin = scene_from_twin_body(body, name="ava")
    garments = []
    for name in LOOK_GARMENTS:
        for mesh in read_glb_scene((ROOT / "assets/garments" / f"{name}.glb").read_bytes()).meshes:
            skin = transfer_skin_weights(body, mesh.positions_m)
            garments.append(
                replace(
                    mesh,
                    role="garment",
                    joints=skin.joints.astype(np.int64),
                    weights=skin.weights.astype(np.float64),
                )
            )
    return LodScene([twin.meshes[0], *garments], twin.rig, name="ava-look"), body


def gltfpack(src: Path, dst: Path, ratio: float | None) -> bytes:
    args = ["node", str(ROOT / "node_modules/gltfpack/cli.js"), "-i", str(src), "-o", str(dst)]
    args += ["-cc"]
    if ratio is not None and ratio < 1:
        args += ["-si", str(ratio), "-se", "1"]  # no error cap: the same triangle budget
    subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
    return dst.read_bytes()


def simplification_table(scene: LodScene) -> dict[str, Any]:
    t0 = time.perf_counter()
    build = build_lod_for_scene(scene)
    build_s = time.perf_counter() - t0
    m = build.manifest
    print(f"build: {build_s:.1f} s, simplifier {m['simplifier']}")
    full = build.levels[0].scene
    print(
        f"hidden body triangles culled: {m['hiddenBodyTrianglesCulled']} of "
        f"{scene.triangle_count} ({[(x.name, x.triangle_count) for x in full.meshes]})"
    )
    lo, hi = full.bounds_m()
    diag = float(np.linalg.norm(hi - lo))
    garments = [x for x in scene.meshes if x.role == "garment"]
    hems = {g.name: int(border_vertices(g.positions_m, g.faces).sum()) for g in garments}
    out: dict[str, Any] = {"levels": []}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "full.glb"
        src.write_bytes(write_level(full, PositionGrid.for_scene(full), compress=False).glb)
        print(
            f"{'lvl':>3} {'tris':>6} {'ours B':>8} {'gp tris':>7} {'gp B':>8} "
            f"{'ours bind':>9} {'gp bind':>8} {'ratio':>5} {'ours bent':>9} {'gp bent':>8} "
            f"{'ratio':>5} {'poke mm':>7} {'hems kept':>9}  (error / bbox diagonal)"
        )
        for lv in build.levels:
            gp = gltfpack(src, Path(tmp) / f"gp{lv.index}.glb", lv.ratio)
            gp_scene = read_glb_scene(gp)
            ours = lv.error_by_pose_m
            gp_err = geometric_error(full, gp_scene) if lv.index else dict.fromkeys(ours, 0.0)
            bent = lambda e: max(v for k, v in e.items() if k != "bind")  # noqa: E731
            ratio = lambda a, b: f"{a / b:5.2f}" if b > 0 else "    -"  # noqa: E731
            kept = sum(
                int(border_vertices(g.positions_m, g.faces).sum())
                for g in lv.scene.meshes
                if g.role == "garment"
            )
            entry = m["levels"][lv.index]
            print(
                f"{lv.index:>3} {lv.triangles:>6} {entry['bytes']:>8} "
                f"{gp_scene.triangle_count:>7} {len(gp):>8} {ours['bind'] / diag:>9.5f} "
                f"{gp_err['bind'] / diag:>8.5f} {ratio(ours['bind'], gp_err['bind'])} "
                f"{bent(ours) / diag:>9.5f} {bent(gp_err) / diag:>8.5f} "
                f"{ratio(bent(ours), bent(gp_err))} {lv.skin_through_cloth_m * 1000:>7.2f} "
                f"{kept:>4}/{sum(hems.values()):<4}"
            )
            out["levels"].append(
                {
                    "bytes": entry["bytes"],
                    "gp_bytes": len(gp),
                    "bind_ratio": ours["bind"] / gp_err["bind"] if lv.index else None,
                    "bent_ratio": bent(ours) / bent(gp_err) if lv.index else None,
                }
            )
    first = m["levels"][m["firstLevel"]]
    full_ratio = out["levels"][0]["bytes"] / out["levels"][0]["gp_bytes"]
    print(f"full level bytes / gltfpack -cc: {full_ratio:.3f}  (target <= 1.1)")
    print(
        f"first visible level: {first['bytes']} bytes, {first['triangles']} triangles "
        "(target <= 60 KB)"
    )
    print("display picks:", {k: v["level"] for k, v in m["displayProfiles"].items()})
    return out


async def _hammer(url: str, total: int) -> float:
    """Requests per second for `total` GETs of `url`, CONCURRENCY at a time, bodies read."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{url} answered {r.status}")

        async with session.get(url) as r:  # warm the connection and the file cache
            await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return total / (time.perf_counter() - t0)


def requests_per_second(url: str, total: int, runs: int = 3) -> float:
    return statistics.median(asyncio.run(_hammer(url, total)) for _ in range(runs))


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ model/gltf-binary glb; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag on;
        add_header Cache-Control "public, max-age=31536000, immutable";
    }}
}}
"""


def nginx_rps(blob: Path, name: str, total: int) -> float | None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        print("nginx: SKIPPED - nginx is not installed (Debian: apt-get install -y nginx)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        shutil.copyfile(blob, root / name)
        # nginx started as root serves as www-data: the file and its folders must be readable.
        for path in (Path(tmp), root):
            path.chmod(0o755)
        (root / name).chmod(0o644)
        port = free_loopback_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
        proc = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            url = f"http://127.0.0.1:{port}/{name}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url, timeout=1).read()
                    break
                except OSError:
                    if proc.poll() is not None:
                        print(f"nginx: SKIPPED - it exited: {proc.stderr.read().decode()[-500:]}")
                        return None
                    time.sleep(0.05)
            return requests_per_second(url, total)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def first_level_times(server: Any, loads: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    from tests.browser_harness import launch_chromium

    times = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            for _ in range(loads):
                context = browser.new_context(viewport={"width": 1280, "height": 1000})
                page = context.new_page()
                page.goto(server.url("/web/product.html?twin=twn_sample_ava"))
                page.wait_for_function(
                    "() => { const s = window.spatialTwinProduct;"
                    " return !!s && (s.firstLevelMs !== null || !!s.error); }",
                    timeout=120_000,
                )
                state = page.evaluate("() => window.spatialTwinProduct")
                if state["error"]:
                    raise RuntimeError(f"product page failed: {state['error']}")
                times.append(float(state["firstLevelMs"]))
                context.close()
        finally:
            browser.close()
    return times


def serving_rows(requests: int, page_loads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, start_spatialtwin_server(Path(tmp) / "data") as srv:
        t0 = time.perf_counter()
        status, _, body = srv.get(
            "/api/v1/twins/twn_sample_ava/lod/manifest.json?channel=ecommerce", timeout_s=600
        )
        assert status == 200, body[:300]
        print(f"server: twin Ava's manifest built and cached in {time.perf_counter() - t0:.1f} s")
        manifest = json.loads(body)
        full = manifest["levels"][0]
        name = full["url"].rsplit("/", 1)[1]
        blob = srv.data_dir / "blobs" / name[:2] / name[:-4]  # the embedded store's layout
        print(f"serving the full level ({full['bytes']} bytes), {requests} requests, "
              f"{CONCURRENCY} connections, median of 3, loopback:")  # fmt: skip
        ours = requests_per_second(srv.url(full["url"]), requests)
        print(f"  aiohttp (spatialtwin serve, 1 process): {ours:8.0f} requests/s")
        theirs = nginx_rps(blob, name, requests)
        if theirs is not None:
            print(f"  nginx (1 worker, sendfile):             {theirs:8.0f} requests/s")
            print(f"  nginx / aiohttp: {theirs / ours:.2f}  (target <= 2)")
        first = manifest["levels"][manifest["firstLevel"]]
        times = first_level_times(srv, page_loads)
        print(
            f"Chromium product page, navigation -> first level ({first['bytes']} bytes) shown, "
            f"{page_loads} fresh contexts: median {statistics.median(times):.0f} ms "
            f"(min {min(times):.0f}, max {max(times):.0f}; target <= 300 ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--page-loads", type=int, default=7)
    args = parser.parse_args()
    print(describe_machine())
    scene, _body = sample_look()
    print(
        "sample look: Ava + "
        + ", ".join(f"{m.name} ({m.triangle_count} tris)" for m in scene.meshes[1:])
        + " (assets/garments, skinned to Ava; skirt_a_line.glb is not worn with the trousers)"
    )
    simplification_table(scene)
    serving_rows(args.requests, args.page_loads)


if __name__ == "__main__":
    main()
