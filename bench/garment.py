"""Benchmark: garment ingest (read → check → units → weld → remesh) and placement.

Runs the largest MakeHuman outfit (male_worksuit01, 3493 quads) through `prepare_garment`
several times and places it on a generated twin; prints medians and the machine.
Usage: .venv/bin/python bench/garment.py [repeats]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

from spatialtwin.body.parametric import Measurements, create_twin_body
from spatialtwin.garment.pipeline import prepare_garment
from spatialtwin.garment.placement import BodyLandmarks, place_garment
from spatialtwin.garment.remesh import remesh_for_cloth
from spatialtwin.gltf.template_npz import shipped_template

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "garments"


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    path = DATA / "male_worksuit01.obj"
    data = path.read_bytes()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    ingest, remesh = [], []
    prepared = None
    for _ in range(repeats):
        t = time.perf_counter()
        prepared = prepare_garment(data, path.name, "outfit")
        ingest.append(time.perf_counter() - t)
        t = time.perf_counter()
        remesh_for_cloth(prepared.render)
        remesh.append(time.perf_counter() - t)
    assert prepared is not None
    s = prepared.summary()
    print(
        f"{path.name}: {len(data)} bytes, {s['triangles']} source triangles → "
        f"{s['simulation']['triangles']} simulation triangles "
        f"(target edge {s['edge_length_m']} m, mean {s['simulation']['edge_length_m']['mean']})"
    )
    print(f"ingest (whole pipeline) median {statistics.median(ingest):.3f} s over {repeats}")
    print(f"remesh alone            median {statistics.median(remesh):.3f} s over {repeats}")
    body = create_twin_body(
        Measurements(1.76, 0.92, 0.74, 0.98, 0.81, 0.40), shipped_template().body
    )
    marks = BodyLandmarks.of(body)
    place = []
    for _ in range(repeats):
        t = time.perf_counter()
        placed = place_garment(prepared.simulation, prepared.pieces, body, landmarks=marks)
        place.append(time.perf_counter() - t)
    print(
        f"placement on a twin     median {statistics.median(place):.3f} s over {repeats} "
        f"(max push {placed.max_push_m:.3f} m)"
    )


if __name__ == "__main__":
    main()
