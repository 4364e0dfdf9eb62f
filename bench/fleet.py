"""The fleet (issue #10): level downloads through nginx and look jobs on workers, on loopback.

Run: `.venv/bin/python bench/fleet.py [--seconds 4] [--rounds 3] [--servers 1,2,4]
[--looks 6] [--workers 1,2]`

Printed, after the machine:
1. **levels**: one cached level file (the phone/desktop level GLB of a generated twin, ~50 KB)
   downloaded by `wrk` (16 connections, keep-alive) for `--seconds` per run, median of
   `--rounds` interleaved runs, as req/s, p50 and p95:
   - `static`: nginx serving the file itself (a plain `alias` location on the blob folder),
   - `fleet, every request to a server`: nginx in front of 1, 2, 4 `spatialtwin serve`
     processes, each request a license decision by a server answered with X-Accel-Redirect,
     nginx streaming the bytes (micro-cache off),
   - `fleet, micro-cache 1 s`: the shipped config — a server's yes kept for a second and then
     revalidated with a 304.
   Goal: the fleet ≥ 0.8× static.
2. **look jobs per minute** with 1 and 2 `spatialtwin worker` processes on Redis (each worker
   one core, `NUMBA_NUM_THREADS=1`): `--looks` drapes of the test skirt (5 cm cloth, 40 frames)
   submitted at once through nginx, from the first submit to the last `done`. Goal: ≥ 1.8× from
   1 to 2 workers. Skipped, with the reason, when `spatialtwin serve` has no `--redis`.

Bounded: every process is started on a free loopback port and stopped at the end; wrk runs for
`--seconds` per run. The load generator shares the two cores with nginx and the servers, as
any single-machine figure does.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* fixtures
from machine import describe_machine
from tests.mirror_fixtures import _make_data
from tests.nginx_server import (
    CONSOLE,
    NginxServer,
    SpatialTwinProcess,
    copy_store,
    prepare_levels_and_mirror,
    start_nginx,
    start_server,
    start_worker,
    wait_ready,
)

WRK = shutil.which("wrk") or "/usr/bin/wrk"
WRK_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(95),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status))
end
"""
GOAL_LEVELS = 0.8
GOAL_JOBS = 1.8


def wrk(url: str, seconds: int, script: Path, connections: int = 16) -> dict[str, float]:
    """One wrk run: req/s, p50/p95 in ms, errors (socket) and non-2xx answers."""
    out = subprocess.run(
        [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    line = next(row for row in out.splitlines() if row.startswith("RESULT "))
    requests, duration_us, p50_us, p95_us, errors, non2xx = (int(v) for v in line.split()[1:])
    return {
        "rps": requests / (duration_us / 1e6),
        "p50_ms": p50_us / 1000,
        "p95_ms": p95_us / 1000,
        "errors": errors,
        "non2xx": non2xx,
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p95_ms": statistics.median(r["p95_ms"] for r in runs),
        "errors": sum(r["errors"] + r["non2xx"] for r in runs),
    }


def serve_has_redis() -> bool:
    out = subprocess.run([str(CONSOLE), "serve", "--help"], capture_output=True, text=True)
    return "--redis" in out.stdout


@contextmanager
def processes(started: list[SpatialTwinProcess | NginxServer]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in reversed(started):
            proc.stop()


def start_servers(
    count: int, store_args: list[str], logs: Path, extra: list[str] | None = None
) -> list[SpatialTwinProcess]:
    servers = [
        start_server([*store_args, *(extra or [])], logs / f"server{i}.log", wait=False)
        for i in range(count)
    ]
    for server in servers:
        wait_ready(server, 120)
    return servers


def bench_levels(
    work: Path,
    store_args: list[str],
    blobs: Path,
    level_url: str,
    counts: list[int],
    seconds: int,
    rounds: int,
) -> list[tuple[str, dict[str, float]]]:
    script = work / "wrk.lua"
    script.write_text(WRK_SCRIPT)
    sha = level_url.rsplit("/", 1)[1].split(".")[0]
    static_site = f"location /_bench_static/ {{ alias {blobs.resolve()}/; }}\n"
    rows: list[tuple[str, dict[str, float]]] = []
    static_runs: list[dict[str, float]] = []
    for count in counts:
        servers = start_servers(count, store_args, work)
        addresses = [s.address for s in servers]
        direct = start_nginx(
            work / f"nginx-{count}-direct", addresses, blobs, site_extra=static_site
        )
        cached = start_nginx(work / f"nginx-{count}-cached", addresses, blobs, level_cache_s=1)
        with processes([*servers, direct, cached]):
            static_url = f"{direct.url}/_bench_static/{sha[:2]}/{sha}"
            for url in (static_url, direct.url + level_url, cached.url + level_url):
                wrk(url, 1, script)  # warm: connections, page cache, the servers' caches
            fleet_runs, cached_runs = [], []
            for _ in range(rounds):
                static_runs.append(wrk(static_url, seconds, script))
                fleet_runs.append(wrk(direct.url + level_url, seconds, script))
                cached_runs.append(wrk(cached.url + level_url, seconds, script))
        rows.append((f"fleet of {count}, every request to a server", median_of(fleet_runs)))
        rows.append((f"fleet of {count}, micro-cache 1 s", median_of(cached_runs)))
    rows.insert(0, ("static (nginx alone)", median_of(static_runs)))
    return rows


async def look_jobs(nginx_url: str, look_request: dict[str, Any], count: int) -> float:
    """Submit `count` looks at once; seconds from the first submit to the last `done`."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        start = time.perf_counter()
        links = []
        for _ in range(count):
            r = await http.post(nginx_url + "/api/v1/looks", json=look_request)
            assert r.status == 202, await r.text()
            links.append((await r.json())["links"]["job"])
        pending = set(links)
        while pending:
            for link in sorted(pending):
                state = await (await http.get(nginx_url + link)).json()
                if state["status"] == "failed":
                    raise RuntimeError(f"look job failed: {state}")
                if state["status"] == "done":
                    pending.discard(link)
            await asyncio.sleep(0.2)
        return time.perf_counter() - start


def bench_jobs(
    work: Path,
    redis_url: str,
    blobs: Path,
    look_request: dict[str, Any],
    worker_counts: list[int],
    looks: int,
) -> list[tuple[int, float, float]]:
    settings = ["--setting", "look_max_frames=40", "--setting", "garment_target_edge_m=0.05"]
    store = ["--redis", redis_url, "--blobs", str(blobs)]
    rows = []
    for workers in worker_counts:
        servers = start_servers(1, store, work, settings)
        proxy = start_nginx(work / f"nginx-jobs-{workers}", [servers[0].address], blobs)
        started = [
            start_worker(
                [*store, *settings], work / f"worker{workers}-{i}.log",
                env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            )
            for i in range(workers)
        ]  # fmt: skip
        with processes([*servers, proxy, *started]):
            time.sleep(3.0)  # the workers import and connect
            asyncio.run(look_jobs(proxy.url, look_request, 1))  # warm: numba kernels loaded
            wall_s = asyncio.run(look_jobs(proxy.url, look_request, looks))
        rows.append((workers, wall_s, looks / wall_s * 60))
    return rows


def table(rows: list[tuple[str, dict[str, float]]], static_rps: float) -> str:
    lines = [
        f"{'levels through nginx':<46} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'x static':>8}",
    ]
    for name, r in rows:
        lines.append(
            f"{name:<46} {r['rps']:>8.0f} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} "
            f"{r['rps'] / static_rps:>8.2f}"
            + (f"  ({r['errors']:.0f} errors)" if r["errors"] else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="1,2,4")
    parser.add_argument("--looks", type=int, default=6)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--skip-jobs", action="store_true")
    args = parser.parse_args(argv)
    if not (1 <= args.seconds <= 60 and 1 <= args.rounds <= 10 and 1 <= args.looks <= 50):
        parser.error("--seconds 1-60, --rounds 1-10, --looks 1-50")
    print(describe_machine(), flush=True)
    for tool in (WRK, "/usr/sbin/nginx"):
        if not Path(tool).exists():
            print(f"bench/fleet.py: {tool} is not installed (make system-deps)", file=sys.stderr)
            return 2
    counts = [int(c) for c in args.servers.split(",")]
    with tempfile.TemporaryDirectory(prefix="spatialtwin-fleet-") as tmp:
        work = Path(tmp)
        root = work / "data"
        root.mkdir()
        from tests.conftest import AVERAGE, generated_twin

        body = generated_twin(AVERAGE)
        data = asyncio.run(_make_data(root, body))
        manifest, _token = asyncio.run(prepare_levels_and_mirror(root))
        level = manifest["levels"][manifest["displayProfiles"]["phone-page"]["level"]]
        size = (root / "blobs").rglob(level["url"].rsplit("/", 1)[1].split(".")[0])
        level_bytes = next(size).stat().st_size
        fleet = serve_has_redis()
        redis: Any = None
        if fleet:
            from tests.redis_server import start_redis

            redis = start_redis(work / "redis")
            store_args, blobs = (
                [f"--redis={redis.url(0)}", f"--blobs={work / 'blobs'}"],
                work / "blobs",
            )
            asyncio.run(_copy_into_redis(root, redis.url(0), blobs))
        else:
            store_args, blobs = ["--data", str(root)], root / "blobs"
        print(
            f"store: {'Redis + shared blob folder' if fleet else 'embedded data directory'}; "
            f"level file {level['url'].rsplit('/', 1)[1][:12]}… {level_bytes:,} B; "
            f"wrk 16 connections, {args.seconds:g} s x {args.rounds} rounds, medians",
            flush=True,
        )
        try:
            rows = bench_levels(
                work, store_args, blobs, level["url"], counts, args.seconds, args.rounds
            )
            static_rps = rows[0][1]["rps"]
            print(table(rows, static_rps), flush=True)
            best = max(r["rps"] for name, r in rows[1:] if "micro-cache" in name)
            verdict = "met" if best >= GOAL_LEVELS * static_rps else "missed"
            print(f"goal levels >= {GOAL_LEVELS}x static (shipped config): {verdict}")
            if args.skip_jobs:
                return 0
            if not fleet:
                print("look jobs: skipped (spatialtwin serve has no --redis in this checkout)")
                return 0
            request = {"twin": data.twin, "garments": [data.garment], "channel": "ecommerce"}
            workers = [int(w) for w in args.workers.split(",")]
            jobs = bench_jobs(work, redis.url(0), blobs, request, workers, args.looks)
            heading = f"look jobs ({args.looks} drapes at once)"
            print(f"{heading:<46} {'wall s':>8} {'per min':>8}")
            for count, wall_s, per_min in jobs:
                name = f"{count} worker{'s' if count > 1 else ''}"
                print(f"{name:<46} {wall_s:>8.1f} {per_min:>8.1f}")
            if len(jobs) >= 2:
                scaling = jobs[1][2] / jobs[0][2]
                verdict = "met" if scaling >= GOAL_JOBS else "missed"
                print(
                    f"scaling {jobs[0][0]} -> {jobs[1][0]} workers: {scaling:.2f}x "
                    f"(goal >= {GOAL_JOBS}x): {verdict}"
                )
        finally:
            if redis is not None:
                from tests.redis_server import stop_redis

                stop_redis(redis)
    return 0


async def _copy_into_redis(root: Path, url: str, blobs: Path) -> None:
    from spatialtwin.store.embedded import EmbeddedStore
    from spatialtwin.store.redis_store import RedisStore

    source, target = EmbeddedStore(root), RedisStore(url, blobs=blobs)
    try:
        await copy_store(source, target)
    finally:
        await source.close()
        await target.close()


if __name__ == "__main__":
    raise SystemExit(main())
