"""Server start-up (issue #7): how long `spatialtwin serve` takes to answer, and what it imports.

Run: `.venv/bin/python bench/startup.py [--runs 5]`

Printed, after the machine and its load:
- time to listen: from `subprocess.Popen` of `spatialtwin serve` (the console script, a fresh
  interpreter) to its first `200` from `GET /healthz`, median and p95 over `--runs` starts on a
  fresh data directory each, with `--no-seed` and seeding (the seeding jobs start right after
  the server listens and compete for the two cores with the rest of the start-up),
- time to ready: to the first `/healthz` whose `services` are `ready` (twins, garments, looks
  and levels answer from then on; before, those requests wait),
- import time of each heavy module alone, in a fresh interpreter (median of 3): what the
  server's HTTP layer must not import before it listens,
- `spatialtwin --help`: the CLI's own start-up.

Not pinned to one core: a server process uses both (the loop and the import thread). Other
work on the machine slows every figure; the load average is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine, free_port

REPO = Path(__file__).resolve().parents[1]
CONSOLE = Path(sys.executable).with_name("spatialtwin")
TARGET_LISTEN_S = 2.0
HEAVY_MODULES = (
    "aiohttp.web",
    "numpy",
    "scipy.spatial",
    "trimesh",
    "numba",
    "mediapipe",
    "spatialtwin.server.app",
    "spatialtwin.services.context",
    "spatialtwin.services.job_kinds",
)


def healthz(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except OSError:
        return None


def services_ready(health: dict) -> bool:
    """`services.status` from the health answer; an answer without it (the server before
    background loading) had loaded everything before it listened."""
    return health.get("services", {"status": "ready"}).get("status") == "ready"


def one_start(seed: bool) -> tuple[float, float]:
    """(seconds to the first /healthz 200, seconds to services ready) of one fresh start."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="st-startup-") as tmp:
        command = [str(CONSOLE), "serve", "--port", str(port), "--data", f"{tmp}/data"]
        command += [] if seed else ["--no-seed"]
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        listen_s = ready_s = None
        try:
            while ready_s is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"spatialtwin serve exited with {proc.returncode}")
                if time.perf_counter() - started > 120:
                    raise RuntimeError("spatialtwin serve did not come up in 120 s")
                health = healthz(port)
                now = time.perf_counter() - started
                if health is not None:
                    listen_s = now if listen_s is None else listen_s
                    ready_s = now if services_ready(health) else None
                time.sleep(0.005)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return listen_s, ready_s


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def import_s(module: str, repeats: int = 3) -> float:
    """Median seconds to import `module` alone in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            return float("nan")
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def help_s(repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([str(CONSOLE), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(describe_machine())
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    header = f"{'runs':>6}{'listen med s':>14}{'p95 s':>8}{'ready med s':>13}{'p95 s':>8}"
    print(f"{'start':<28}{header}")
    for seed in (False, True):
        runs = [one_start(seed) for _ in range(args.runs)]
        listen = [r[0] for r in runs]
        ready = [r[1] for r in runs]
        name = "serve, fresh data, seeding" if seed else "serve --no-seed, fresh data"
        print(
            f"{name:<28}{args.runs:>6}{statistics.median(listen):>14.2f}{p95(listen):>8.2f}"
            f"{statistics.median(ready):>13.2f}{p95(ready):>8.2f}"
        )
    print(f"target: listening (first /healthz 200) ≤ {TARGET_LISTEN_S:.1f} s after the start")
    print(f"{'import alone':<36}{'median s':>10}")
    for module in HEAVY_MODULES:
        print(f"{module:<36}{import_s(module):>10.2f}")
    print(f"{'spatialtwin --help (whole process)':<36}{help_s():>10.2f}")


if __name__ == "__main__":
    main()
