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
   `x static` is the median over rounds of each fleet run's req/s over the static run made just
   before it (the machine's other load changes from second to second). Goal: the fleet ≥ 0.8×
   static.
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
import json
import os
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

# What is measured is the fleet's throughput, not its rate limit: wrk drives every request
# from one address (the servers it starts inherit this).
os.environ.setdefault("SPATIALTWIN_RATE_LIMIT_PER_MINUTE", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* fixtures
from machine import describe_machine
from tests.mirror_fixtures import _make_data
from tests.nginx_server import (
    CONSOLE,
    FleetKeys,
    NginxServer,
    SpatialTwinProcess,
    copy_store,
    fleet_keys,
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
        "ratio": statistics.median(r.get("ratio", 1.0) for r in runs),
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
    count: int, store_args: list[str], logs: Path, env: dict[str, str]
) -> list[SpatialTwinProcess]:
    servers = [
        start_server(store_args, logs / f"server{i}.log", wait=False, env=env) for i in range(count)
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
    keys: FleetKeys,
) -> list[tuple[str, dict[str, float]]]:
    """Rows of (name, median figures); each fleet row's `ratio` is the median over rounds of
    its req/s over the static run made just before it in the same round (the machine's other
    load changes from second to second; a pair seconds apart sees about the same)."""
    script = work / "wrk.lua"
    script.write_text(WRK_SCRIPT)
    sha = level_url.rsplit("/", 1)[1].split(".")[0]
    static_site = f"location /_bench_static/ {{ alias {blobs.resolve()}/; }}\n"
    rows: list[tuple[str, dict[str, float]]] = []
    for count in counts:
        servers = start_servers(count, store_args, work, keys.env)
        addresses = [s.address for s in servers]
        direct = start_nginx(
            work / f"nginx-{count}-direct", addresses, blobs, site_extra=static_site
        )
        cached = start_nginx(work / f"nginx-{count}-cached", addresses, blobs, level_cache_s=1)
        with processes([*servers, direct, cached]):
            static_url = f"{direct.url}/_bench_static/{sha[:2]}/{sha}"
            for url in (static_url, direct.url + level_url, cached.url + level_url):
                wrk(url, 1, script)  # warm: connections, page cache, the servers' caches
            runs: dict[str, list[dict[str, float]]] = {"static": [], "fleet": [], "cached": []}
            for _ in range(rounds):
                for name, url in (
                    ("static", static_url),
                    ("fleet", direct.url + level_url),
                    ("static", static_url),
                    ("cached", cached.url + level_url),
                ):
                    run = wrk(url, seconds, script)
                    if name != "static":
                        run["ratio"] = run["rps"] / runs["static"][-1]["rps"]
                    runs[name].append(run)
        servers_named = f"{count} server{'s' if count > 1 else ''}"
        rows.append((f"static (nginx alone), beside {servers_named}", median_of(runs["static"])))
        rows.append((f"fleet of {count}, every request to a server", median_of(runs["fleet"])))
        rows.append((f"fleet of {count}, micro-cache 1 s", median_of(runs["cached"])))
    return rows


async def look_jobs(
    nginx_url: str, look_request: dict[str, Any], count: int, headers: dict[str, str]
) -> float:
    """Submit `count` looks at once; seconds from the first submit to the last `done`."""
    import aiohttp

    async with aiohttp.ClientSession(headers=headers) as http:
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
    keys: FleetKeys,
) -> list[tuple[int, float, float]]:
    store = ["--redis", redis_url, "--blobs", str(blobs), "--setting", "look_max_frames=40"]
    one_core = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    rows = []
    for workers in worker_counts:
        servers = start_servers(1, store, work, keys.env)
        proxy = start_nginx(work / f"nginx-jobs-{workers}", [servers[0].address], blobs)
        started = [
            start_worker(store, work / f"worker{workers}-{i}.log", env={**keys.env, **one_core})
            for i in range(workers)
        ]
        with processes([*servers, proxy, *started]):
            time.sleep(3.0)  # the workers import and connect
            # warm: every worker's numba kernels loaded (one drape each)
            asyncio.run(look_jobs(proxy.url, look_request, workers, keys.headers))
            wall_s = asyncio.run(look_jobs(proxy.url, look_request, looks, keys.headers))
        rows.append((workers, wall_s, looks / wall_s * 60))
    return rows


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def mirror_sessions(
    nginx_url: str,
    server: SpatialTwinProcess,
    tokens: list[str],
    look: str,
    count: int,
    seconds: float,
) -> dict[str, float]:
    """`count` landmark sessions of `look` at 30 fps through nginx: the server's CPU per session
    (fraction of one core), results/s per session."""
    import aiohttp

    from tests.conftest import AVERAGE, generated_twin
    from tests.mirror_fixtures import MirrorClient, standing_landmarks, stream_landmarks

    marks = standing_landmarks(generated_twin(AVERAGE))
    ws_url = nginx_url.replace("http://", "ws://") + "/api/v1/mirror/sessions"
    async with aiohttp.ClientSession() as http:
        clients = [await MirrorClient(http, ws_url).connect() for _ in range(count)]
        for i, client in enumerate(clients):  # a device holds at most 2 sessions
            await client.hello(tokens[i // 2], look=look, input="landmarks")
        try:
            # settle for a second, then measure; frame ids go on increasing (the protocol)
            next_ids = await asyncio.gather(*(stream_landmarks(c, marks, 1.0) for c in clients))
            before = [len(c.received.results) for c in clients]
            cpu0, t0 = _cpu_s(server.proc.pid), time.perf_counter()
            await asyncio.gather(
                *(
                    stream_landmarks(c, marks, seconds, first_id=n)
                    for c, n in zip(clients, next_ids, strict=True)
                )
            )
            cpu1, t1 = _cpu_s(server.proc.pid), time.perf_counter()
        except aiohttp.ClientError as exc:
            said = [(c.received.close_code, c.received.close_reason) for c in clients]
            raise RuntimeError(f"a mirror session was closed: {said}") from exc
        results = [len(c.received.results) - b for c, b in zip(clients, before, strict=True)]
        for client in clients:
            await client.send_json({"type": "bye"})
            await client.close()
    return {
        "core_per_session": (cpu1 - cpu0) / (t1 - t0) / count,
        "results_per_s": statistics.mean(results) / (t1 - t0),
    }


async def redis_bytes_per_1000_looks(url: str, blobs: Path) -> tuple[float, float]:
    """Redis memory for 1,000 looks (a real look record and its job record, copied under new
    ids into an empty namespace) and per look, in bytes."""
    import uuid

    from spatialtwin.store.redis_store import RedisStore

    source = RedisStore(url, blobs=blobs)
    scratch = RedisStore(url, blobs=blobs, namespace=f"sizing{uuid.uuid4().hex[:8]}")
    try:
        look = (await source.list_records("looks"))[0]
        job = next(j for j in await source.list_records("jobs") if j.get("kind") == "look.drape")
        before = await scratch.memory_bytes()
        for i in range(1000):
            await scratch.create_record("looks", f"look_sizing{i:06d}", {**look, "id": f"l{i}"})
            await scratch.create_record("jobs", f"job_sizing{i:06d}", {**job, "id": f"j{i}"})
        grown = await scratch.memory_bytes() - before
        await scratch.clear()
    finally:
        await source.close()
        await scratch.close()
    return grown, grown / 1000


def bench_sizing(
    work: Path, redis_url: str, blobs: Path, tokens: list[str], look: str, keys: FleetKeys
) -> list[str]:
    from spatialtwin.store.redis_store import RedisStore

    async def memory() -> int:
        store = RedisStore(redis_url, blobs=blobs)
        try:
            return await store.memory_bytes()
        finally:
            await store.close()

    store = ["--redis", redis_url, "--blobs", str(blobs)]
    lines = []
    servers = start_servers(1, store, work, keys.env)
    proxy = start_nginx(work / "nginx-sizing", [servers[0].address], blobs)
    with processes([*servers, proxy]):
        for count in (1, 4):  # 4 sessions: two devices
            base = asyncio.run(memory())
            got = asyncio.run(mirror_sessions(proxy.url, servers[0], tokens, look, count, 5.0))
            grown = asyncio.run(memory()) - base
            lines.append(
                f"{count} mirror session{'s' if count > 1 else ''} (landmarks, 30 fps): "
                f"{got['core_per_session']:.2f} core each, {got['results_per_s']:.1f} results/s "
                f"each, Redis {grown / count / 1024:+.1f} KiB each while open"
            )
    grown, per_look = asyncio.run(redis_bytes_per_1000_looks(redis_url, blobs))
    lines.append(
        f"Redis per 1,000 looks (look + job record): {grown / 2**20:.2f} MiB "
        f"({per_look / 1024:.1f} KiB a look)"
    )
    return lines


def shopper_bytes(manifest: dict[str, Any]) -> list[str]:
    """What a product page (web_client/product.js) downloads for a twin: the manifest, its
    first level, then the level its display profile picks if that is another."""
    manifest_bytes = len(json.dumps(manifest).encode())
    lines = []
    first = manifest["levels"][manifest["firstLevel"]]
    for profile in ("phone-page", "desktop-page", "mirror-75in-4k"):
        pick = manifest["levels"][manifest["displayProfiles"][profile]["level"]]
        total = manifest_bytes + first["bytes"] + (pick["bytes"] if pick is not first else 0)
        lines.append(
            f"bytes per shopper, {profile}: {total:,} B (manifest {manifest_bytes:,} + first "
            f"level {first['bytes']:,}"
            + (f" + level {pick['level']} {pick['bytes']:,})" if pick is not first else ")")
        )
    return lines


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = [
        f"{'levels through nginx':<46} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'x static':>8}",
    ]
    for name, r in rows:
        lines.append(
            f"{name:<46} {r['rps']:>8.0f} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} "
            f"{r['ratio']:>8.2f}" + (f"  ({r['errors']:.0f} errors)" if r["errors"] else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="1,2,4")
    parser.add_argument("--looks", type=int, default=6)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--skip-levels", action="store_true")
    parser.add_argument("--skip-jobs", action="store_true")
    args = parser.parse_args(argv)
    if not (1 <= args.seconds <= 60 and 1 <= args.rounds <= 10 and 1 <= args.looks <= 50):
        parser.error("--seconds 1-60, --rounds 1-10, --looks 1-50")
    print(describe_machine(), flush=True)
    print("load average (1, 5, 15 min): " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
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
        manifest, token = asyncio.run(prepare_levels_and_mirror(root))
        tokens = [token, *asyncio.run(more_devices(root, 1))]
        level = manifest["levels"][manifest["displayProfiles"]["phone-page"]["level"]]
        size = (root / "blobs").rglob(level["url"].rsplit("/", 1)[1].split(".")[0])
        level_bytes = next(size).stat().st_size
        keys = fleet_keys(work / "keys")
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
            if not args.skip_levels:
                rows = bench_levels(
                    work, store_args, blobs, level["url"], counts, args.seconds, args.rounds, keys
                )
                print(table(rows), flush=True)
                ratios = [r["ratio"] for name, r in rows if "micro-cache" in name]
                verdict = "met" if min(ratios) >= GOAL_LEVELS else "missed"
                print(
                    f"goal levels >= {GOAL_LEVELS}x static (shipped config, every fleet size): "
                    f"{verdict} ({', '.join(f'{x:.2f}' for x in ratios)})"
                )
            if args.skip_jobs:
                return 0
            if not fleet:
                print("look jobs: skipped (spatialtwin serve has no --redis in this checkout)")
                return 0
            request = {"twin": data.twin, "garments": [data.garment], "channel": "ecommerce"}
            workers = [int(w) for w in args.workers.split(",")]
            jobs = bench_jobs(work, redis.url(0), blobs, request, workers, args.looks, keys)
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
            print("sizing:")
            for line in shopper_bytes(manifest):
                print("  " + line, flush=True)
            for line in bench_sizing(work, redis.url(0), blobs, tokens, data.look, keys):
                print("  " + line, flush=True)
        finally:
            if redis is not None:
                from tests.redis_server import stop_redis

                stop_redis(redis)
    return 0


async def more_devices(root: Path, count: int) -> list[str]:
    """Device tokens of `count` more mirrors (each holds at most two sessions)."""
    from spatialtwin.services.context import Services
    from spatialtwin.store.embedded import EmbeddedStore

    store = EmbeddedStore(root)
    try:
        devices = Services(store).devices
        return [(await devices.register(f"Bench mirror {i}", "bench"))[1] for i in range(count)]
    finally:
        await store.close()


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
