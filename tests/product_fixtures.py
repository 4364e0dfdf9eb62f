"""A shop's data, made once per test session by the product's own services and jobs.

Two generated twins from the sample measurements of `assets/twins/`: Ava (1.70 m, licensed
for ecommerce and AR) and Leo (1.82 m, ecommerce only). One SKU, the textured test skirt
(`tests/textured_garment.py`, a checkerboard base colour) in two sizes, S as made and XL with
its girth 1.2× about its own axis (two garments, never a rescale at draping). The product's
looks Ava × S, Ava × XL and Leo × XL are built by the `product.look` jobs (drape, levels,
poster); Leo × S is left for a test to ask for. Short drapes, a light level sampling and
small posters keep it to well under a minute.

Import the fixture into a test module (`from tests.product_fixtures import product_data`);
`start_product_server(data_dir)` runs a real server process over a copy with the same
settings, so the levels and posters made here are the ones it finds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib
import pytest

from spatialtwin.body.parametric import Measurements
from spatialtwin.lod.levels import DEFAULTS
from spatialtwin.rights.license import Rights
from tests.browser_harness import REPO_ROOT, RunningServer, _healthy, free_loopback_port
from tests.conftest import generated_twin
from tests.textured_garment import SKIRT_META, textured_skirt_glb

SKU = "TEST-SKIRT/RUN 1"  # a slash and a space: both allowed in a sku, both need encoding
SIZES = {"S": 1.0, "XL": 1.2}  # girth factor of each size
POSTER_PX = (128, 192)
FAST_LOD = replace(DEFAULTS, error_samples=1000, measure_poses=False, candidates=())
SETTINGS: dict[str, Any] = {
    "look_max_frames": 20,
    "lod_options": FAST_LOD,
    "poster_size_px": POSTER_PX,
}
REPO = Path(__file__).resolve().parents[1]


def _twin(name: str, ar: bool) -> tuple[Measurements, dict[str, Any]]:
    spec = json.loads((REPO / "assets" / "twins" / f"{name}.json").read_text())
    m = spec["measurements"]
    measurements = Measurements(
        m["height_m"], m["chest_m"], m["waist_m"], m["hips_m"], m["inseam_m"], m["shoulder_m"]
    )
    channels = ["ecommerce", "ar"] if ar else ["ecommerce"]
    rights = {
        "owner": spec["owner"],
        "license": {
            "id": f"lic_test_{name}",
            "channels": channels,
            "valid_from": "2026-01-01T00:00:00+00:00",
        },
        "consent": {"given_at": "2026-01-01T00:00:00+00:00"},
    }
    return measurements, rights


def skirt_of_size(label: str) -> bytes:
    """The textured skirt GLB with its girth scaled by SIZES[label] about its vertical axis."""
    gltf = pygltflib.GLTF2.load_from_bytes(textured_skirt_glb().glb)
    blob = bytearray(gltf.binary_blob())
    acc = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    view = gltf.bufferViews[acc.bufferView]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    xyz = np.frombuffer(blob, np.float32, acc.count * 3, start).reshape(-1, 3).copy()
    xyz[:, [0, 2]] *= SIZES[label]
    blob[start : start + xyz.nbytes] = xyz.astype(np.float32).tobytes()
    acc.min, acc.max = xyz.min(axis=0).tolist(), xyz.max(axis=0).tolist()
    gltf.set_binary_blob(bytes(blob))
    out = gltf.save_to_bytes()
    return b"".join(out) if isinstance(out, list) else bytes(out)


def skirt_metadata(label: str) -> dict[str, Any]:
    return {**SKIRT_META, "sku": SKU, "size_label": label, "name": "Checkerboard skirt"}


def _run_in_thread(coro_fn: Any) -> Any:
    """asyncio.run on a thread of its own: safe beside Playwright's running loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()


@pytest.fixture(scope="session")
def product_data(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """(data directory, ids and timings): twins, the skirt run, three built product looks."""
    from spatialtwin.jobs.queue import StoreJobQueue
    from spatialtwin.jobs.runner import JobRunner
    from spatialtwin.services import job_kinds
    from spatialtwin.services.context import Services
    from spatialtwin.store.embedded import EmbeddedStore

    root = tmp_path_factory.mktemp("product-data") / "data"

    async def make() -> dict[str, Any]:
        store = EmbeddedStore(root)
        services = Services(store, settings=SETTINGS)
        kinds = job_kinds.kinds(services)
        services.attach_jobs(StoreJobQueue(store, kinds))
        ids: dict[str, Any] = {"twins": {}, "garments": {}, "job_s": []}
        for name, ar in (("ava", True), ("leo", False)):
            measurements, rights = _twin(name, ar)
            twin = await services.twins.create_from_body(
                name.title(),
                generated_twin(measurements),
                Rights.from_json(rights),
                {"kind": "measurements"},
                twin_id=f"twn_test_{name}",
            )
            ids["twins"][name] = twin["id"]
        for label in SIZES:
            garment = await services.garments.ingest(
                skirt_of_size(label), f"skirt_{label}.glb", skirt_metadata(label)
            )
            ids["garments"][label] = garment["id"]
        for twin, sizes in (("ava", ["S", "XL"]), ("leo", ["XL"])):
            answer = await services.products.product(SKU, "ecommerce", [ids["twins"][twin]], sizes)
            assert answer.building
            for job_id in answer.jobs:
                started = time.perf_counter()
                done = await JobRunner(store, kinds).run_job(job_id)
                assert done is not None and done["status"] == "done", done
                ids["job_s"].append(round(time.perf_counter() - started, 2))
        return ids

    return root, _run_in_thread(make)


PRODUCT_SERVER = """
import json, sys
from dataclasses import replace
from aiohttp import web
from spatialtwin.lod.levels import DEFAULTS
from spatialtwin.server.app import create_app
settings = json.loads(sys.argv[2])
settings["lod_options"] = replace(DEFAULTS, **settings.pop("lod"))
app = create_app(sys.argv[1], seed=False, settings=settings)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[3]), print=None)
"""


@contextlib.contextmanager
def start_product_server(data_dir: Path, timeout_s: float = 60.0) -> Iterator[RunningServer]:
    """A real server process over `data_dir` with this module's settings (so it finds the
    levels and posters built here), on a free loopback port, stopped at the end."""
    port = free_loopback_port()
    settings = {k: v for k, v in SETTINGS.items() if k != "lod_options"}
    settings["lod"] = {"error_samples": 1000, "measure_poses": False, "candidates": []}
    log_path = data_dir.with_name(data_dir.name + ".product-server.log")
    command = [sys.executable, "-c", PRODUCT_SERVER, str(data_dir), json.dumps(settings), str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    server = RunningServer(f"http://127.0.0.1:{port}", port, data_dir, log_path, process)
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(server.base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text()[-3000:])
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size
