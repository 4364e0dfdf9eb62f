"""Soak (issue #12): mirror sessions and shoppers against one real server, for a bounded time.

Run: `.venv/bin/python bench/soak.py [--seconds 300] [--sessions 2] [--shoppers 4]`
(`make soak` runs it for 10 minutes; loopback only.)

A `spatialtwin serve` on a fresh data directory (the samples of `assets/`) gets, for
`--seconds`:
- `--sessions` mirror sessions fed client-side landmarks at 30 fps — MediaPipe's own landmarks
  of the real recording `people/pose_1.mp4`, played forth and back — each ended with `bye`
  and opened again every `--session-s` (so sessions come and go, as shoppers do);
- `--shoppers` clients fetching a look's LOD manifest and one of its levels in a loop, as
  product pages do (first from the server, then the cached level by its content hash).

Every `--sample-s` it reads the server's `/metrics` (resident memory, open file descriptors,
event-loop tasks, threads) and the window's p95 of mirror arrival-to-result (the server's own
figure in each result) and of shopper requests. After the warm-up (the first half: the
server's caches — live garments, GLBs, compiled kernels — fill for the first few minutes;
measured: RSS 420 -> 633 MB in the first 230 s, then +9 MB in 380 s) each series is fitted
with a line: a leak is a slope whose growth over the run exceeds both the
noise (twice the residuals' standard deviation) and a floor (RSS 8 MB, fds 4, tasks 4,
threads 2, p95 25 %). Exit code 1 when any series grows; the table and the verdicts are
printed with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from live import landmark_frames, video_frames  # noqa: E402
from machine import describe_machine, free_port, stop_process  # noqa: E402
from spatialtwin.gltf import mirror_messages as mm  # noqa: E402
from spatialtwin.native_logs import quiet_native_logs  # noqa: E402

FPS = 30.0
SESSIONS = "/api/v1/mirror/sessions"
TWIN = "twn_sample_ava"
SKIRT = "gar_sample_skirt-a-line"
FLOORS = {"rss_mb": 8.0, "fds": 4.0, "tasks": 4.0, "threads": 2.0}
HEADER = (
    f"{'t s':>6} {'rss MB':>8} {'fds':>5} {'tasks':>6} {'thr':>4} {'mirror p95':>10} "
    f"{'res/s':>6} {'shop p95':>9} {'req/s':>6} {'errors':>6}"
)
P95_GROWTH = 0.25  # a p95 may wander by a quarter before it counts as growing


@dataclass
class Window:
    """What the load saw since the last sample."""

    mirror_ms: list[float] = field(default_factory=list)
    shopper_ms: list[float] = field(default_factory=list)
    results: int = 0
    shopper_errors: int = 0
    mirror_errors: int = 0
    sessions_opened: int = 0

    def take(self) -> Window:
        out = Window(
            self.mirror_ms, self.shopper_ms, self.results, self.shopper_errors,
            self.mirror_errors, self.sessions_opened,
        )  # fmt: skip
        self.__init__()  # type: ignore[misc]
        return out


def cli(*args: str, data: Path) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "spatialtwin", *args, "--data", str(data)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return run.stdout


async def wait_healthy(http: aiohttp.ClientSession, base: str, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            async with http.get(base + "/healthz") as r:
                if r.status == 200 and (await r.json())["status"] == "ok":
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the server was not healthy after {timeout_s:.0f} s")


async def make_look(http: aiohttp.ClientSession, base: str, channel: str) -> str:
    body = {"twin": TWIN, "garments": [SKIRT], "channel": channel}
    async with http.post(base + "/api/v1/looks", json=body) as r:
        started = await r.json()
        if r.status != 202:
            raise RuntimeError(f"look: {r.status} {started}")
    while True:
        async with http.get(base + started["links"]["job"]) as r:
            job = await r.json()
        if job["status"] == "done":
            return str(job["result"]["id"])
        if job["status"] == "failed":
            raise RuntimeError(f"look job failed: {job}")
        await asyncio.sleep(0.5)


async def level_urls(http: aiohttp.ClientSession, base: str, look: str) -> list[str]:
    """The look's level URLs (the manifest may answer 202 while its levels are built)."""
    url = f"{base}/api/v1/looks/{look}/lod/manifest.json?channel=ecommerce"
    for _ in range(1200):
        async with http.get(url) as r:
            manifest = await r.json()
            if r.status == 200:
                return [base + level["url"] for level in manifest["levels"]]
        await asyncio.sleep(0.5)
    raise RuntimeError(f"no LOD manifest: {manifest}")


async def mirror_loop(
    http: aiohttp.ClientSession, base: str, token: str, look: str, marks: list[tuple],
    session_s: float, stop: asyncio.Event, window: Window, offset: int,
) -> None:  # fmt: skip
    ws_url = base.replace("http://", "ws://") + SESSIONS
    frame_id = offset * 100_000
    while not stop.is_set():
        try:
            async with http.ws_connect(ws_url, max_msg_size=8 << 20) as ws:
                hello = {"type": "hello", "version": 1, "token": token, "look": look,
                         "input": "landmarks"}  # fmt: skip
                await ws.send_str(json.dumps(hello))
                while True:  # progress messages, then the welcome
                    msg = await ws.receive(timeout=300)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"no welcome: {msg.type} {msg.data}")
                    if json.loads(msg.data)["type"] == "welcome":
                        break
                window.sessions_opened += 1

                async def read() -> None:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            result = mm.read_result_frame(msg.data)
                            window.results += 1
                            total = result.info.get("timings_ms", {}).get("total")
                            if total is not None:
                                window.mirror_ms.append(float(total))

                reader = asyncio.create_task(read())
                started = time.perf_counter()
                i = 0
                while not stop.is_set() and time.perf_counter() - started < session_s:
                    image, world, size = marks[(frame_id + i) % len(marks)]
                    payload = mm.landmark_payload(tuple(size), image, world)
                    frame = mm.camera_frame(mm.KIND_LANDMARKS, frame_id, 1e3 * time.time(), payload)
                    await ws.send_bytes(frame)
                    frame_id += 1
                    i += 1
                    await asyncio.sleep(max(0.0, started + i / FPS - time.perf_counter()))
                await ws.send_str(json.dumps({"type": "bye"}))
                await asyncio.wait_for(reader, 10)
        except (aiohttp.ClientError, RuntimeError, TimeoutError, mm.MirrorProtocolError):
            window.mirror_errors += 1
            await asyncio.sleep(1.0)


async def shopper_loop(
    http: aiohttp.ClientSession, urls: list[str], stop: asyncio.Event, window: Window, seed: int
) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        url = rng.choice(urls)
        t0 = time.perf_counter()
        try:  # each shopper its own address, as the front proxy reports it (rate limits)
            async with http.get(url, headers={"X-Real-IP": f"198.51.100.{1 + seed % 250}"}) as r:
                await r.read()
                if r.status != 200:
                    window.shopper_errors += 1
        except aiohttp.ClientError:
            window.shopper_errors += 1
        window.shopper_ms.append(1e3 * (time.perf_counter() - t0))
        await asyncio.sleep(rng.uniform(0.05, 0.25))  # a shopper turns the model, then loads


def read_metrics(text: str) -> dict[str, float]:
    wanted = {
        "process_resident_memory_bytes": "rss_mb",
        "process_open_fds": "fds",
        "spatialtwin_event_loop_tasks": "tasks",
        "spatialtwin_threads": "threads",
    }
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in wanted:
                out[wanted[s.name]] = s.value / 1e6 if s.name.endswith("bytes") else s.value
    return out


def trend(t_s: np.ndarray, values: np.ndarray, floor: float) -> tuple[float, float, bool]:
    """(growth over the fitted span, residual noise, grows?) of a least-squares line."""
    if len(values) < 3:
        return 0.0, 0.0, False
    slope, intercept = np.polyfit(t_s, values, 1)
    growth = float(slope * (t_s[-1] - t_s[0]))
    noise = float(2.0 * np.std(values - (slope * t_s + intercept)))
    return growth, noise, growth > max(noise, floor)


async def soak(args: argparse.Namespace) -> int:
    data = Path(tempfile.mkdtemp(prefix="spatialtwin-soak-")) / "data"
    data.mkdir(parents=True)
    token = json.loads(cli("mirror", "register", "--name", "Soak mirror", "--store", "soak",
                           "--json", data=data))["token"]  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (data.parent / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "spatialtwin", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--data", str(data)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    print("landmarks of the recording (MediaPipe full) ...", flush=True)
    tracked = await asyncio.to_thread(lambda: landmark_frames(video_frames()))
    # the protocol's image landmarks are (33, 5): x, y, z, visibility, presence
    marks = [
        (np.column_stack([image[:, :4], np.ones(len(image))]) if image.shape[1] == 4 else image,
         world, size)
        for image, world, size in tracked
    ]  # fmt: skip
    timeout = aiohttp.ClientTimeout(total=120)
    rows: list[dict[str, float]] = []
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            aiohttp.ClientSession(timeout=timeout) as shop,  # shoppers: anonymous
        ):
            await wait_healthy(http, base, 600)
            # the server made its keys on this first start: the demo admin token (a brand's
            # merchandiser makes the looks; shoppers' level downloads need none)
            admin = (data / "demo-token").read_text().strip()
            http.headers["Authorization"] = f"Bearer {admin}"
            mirror_look = await make_look(http, base, "mirror")
            shop_look = await make_look(http, base, "ecommerce")
            urls = await level_urls(http, base, shop_look)
            urls.append(f"{base}/api/v1/looks/{shop_look}/lod/manifest.json?channel=ecommerce")
            print(f"server pid {server.pid}; looks {mirror_look} (mirror), {shop_look} "
                  f"({len(urls) - 1} levels); {args.sessions} sessions, {args.shoppers} "
                  f"shoppers for {args.seconds:.0f} s", flush=True)  # fmt: skip
            stop = asyncio.Event()
            window = Window()
            tasks = [
                asyncio.create_task(mirror_loop(http, base, token, mirror_look, marks,
                                                args.session_s, stop, window, k))
                for k in range(args.sessions)
            ] + [
                asyncio.create_task(shopper_loop(shop, urls, stop, window, k))
                for k in range(args.shoppers)
            ]  # fmt: skip
            t0 = time.monotonic()
            print(HEADER)
            last = t0
            while (now := time.monotonic()) - t0 < args.seconds:
                await asyncio.sleep(max(0.0, args.sample_s - (now - last)))
                async with http.get(base + "/metrics") as r:
                    figures = read_metrics(await r.text())
                seen, span = window.take(), time.monotonic() - last
                last = time.monotonic()
                row = {
                    "t_s": last - t0, **figures,
                    "mirror_p95_ms": float(np.percentile(seen.mirror_ms, 95))
                    if seen.mirror_ms else float("nan"),
                    "results_per_s": seen.results / span,
                    "shop_p95_ms": float(np.percentile(seen.shopper_ms, 95))
                    if seen.shopper_ms else float("nan"),
                    "requests_per_s": len(seen.shopper_ms) / span,
                    "errors": seen.shopper_errors + seen.mirror_errors,
                }  # fmt: skip
                rows.append(row)
                print(f"{row['t_s']:6.0f} {row['rss_mb']:8.1f} {row['fds']:5.0f} "
                      f"{row['tasks']:6.0f} {row['threads']:4.0f} {row['mirror_p95_ms']:10.1f} "
                      f"{row['results_per_s']:6.1f} {row['shop_p95_ms']:9.1f} "
                      f"{row['requests_per_s']:6.1f} {row['errors']:6.0f}", flush=True)  # fmt: skip
            stop.set()
            await asyncio.wait(tasks, timeout=20)
    finally:
        stop_process(server)
        log.close()
    return verdict(rows)


def verdict(rows: list[dict[str, float]]) -> int:
    warm = rows[len(rows) // 2 :]
    if len(warm) < 3:
        print("too short a run for a trend (need 3 samples after the warm-up)")
        return 1
    t = np.array([r["t_s"] for r in warm])
    print(
        f"\nafter the warm-up ({t[0]:.0f} s on), start -> end, growth of the fitted line vs noise:"
    )
    grows = []
    for key, floor in (*FLOORS.items(), ("mirror_p95_ms", None), ("shop_p95_ms", None)):
        values = np.array([r[key] for r in warm], dtype=np.float64)
        ok = np.isfinite(values)
        if ok.sum() < 3:
            print(f"  {key:14} no samples")
            continue
        limit = floor if floor is not None else P95_GROWTH * float(np.median(values[ok]))
        growth, noise, up = trend(t[ok], values[ok], limit)
        grows.append(up)
        print(f"  {key:14} {values[ok][0]:9.1f} -> {values[ok][-1]:9.1f}   growth {growth:+8.2f} "
              f"(noise {noise:.2f}, floor {limit:.2f})  {'GROWS' if up else 'flat'}")  # fmt: skip
    errors = sum(r["errors"] for r in rows)
    print(f"  errors: {errors:.0f} over the run")
    return 1 if any(grows) or errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--shoppers", type=int, default=4)
    parser.add_argument("--session-s", type=float, default=20.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--verbose", action="store_true", help="show TFLite/MediaPipe log lines")
    args = parser.parse_args()
    if not args.verbose:
        quiet_native_logs()
    if not (
        30 <= args.seconds <= 6 * 3600 and 0 <= args.sessions <= 16 and 0 <= args.shoppers <= 64
    ):
        parser.error("--seconds 30..21600, --sessions 0..16, --shoppers 0..64")
    print(describe_machine(), f"load {os.getloadavg()[0]:.2f}", flush=True)
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
