"""Product page figures (issue #9): a look streamed to Chromium, its bytes, posters.

Run: `.venv/bin/python bench/product.py [--runs 7] [--posters 3]`

A `spatialtwin serve` on a fresh data directory (the samples of `assets/`) is asked for the
sample skirt's product on Ava (`GET /api/v1/products/ST-SAMPLE-SKIRT-S`), which builds the
look once (drape, levels, poster: timed). Then:
- the product page in Debian's headless Chromium (`--runs` navigations, each in a fresh
  browser context, so no HTTP cache): navigation start -> the look's first level drawn, and
  -> the level the display needs drawn (`window.spatialTwinProduct.firstLevelMs` /
  `sharpLevelMs`, on the page's own clock); median and p95 against the goals 300 ms / 1.5 s;
- the first visible level's bytes (goal <= 60 KB) and the USDZ against the AR GLB (<= 1.5x);
- posters 1024 x 1536 (`--posters` renders, each another background so none is a cache hit):
  the render time the still's record gives and the request-to-file wall time (goal <= 5 s),
  then the same request again `--hits` times: the cache hit's latency (goal <= 10 ms).
Loopback only; the machine and its load are printed first (other work slows every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from machine import describe_machine, free_port, stop_process  # noqa: E402

SKU = "ST-SAMPLE-SKIRT-S"
TWIN = "twn_sample_ava"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update",
]  # fmt: skip
READY = (
    "() => { const s = window.spatialTwinProduct;"
    " return !!s && (s.sharpLevelMs !== null || !!s.error); }"
)


class Api:
    def __init__(self, base: str, token: str | None) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        """(status, JSON, milliseconds)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        ms = 1e3 * (time.perf_counter() - t0)
        ctype_json = raw[:1] in (b"{", b"[")
        return status, json.loads(raw) if ctype_json else raw, ms

    def wait_job(self, link: str, timeout_s: float = 1800) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            _, job, _ = self.call("GET", link)
            if job["status"] in ("done", "failed"):
                return job
            time.sleep(0.2)
        raise RuntimeError(f"job {link} did not finish")


def wait_healthy(api: Api, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            status, body, _ = api.call("GET", "/healthz")
            if status == 200 and body.get("status") == "ok":
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    raise RuntimeError("the server was not healthy in time")


def spread(values: list[float]) -> str:
    a = np.asarray(values, dtype=np.float64)
    return f"median {np.median(a):8.1f}  p95 {np.percentile(a, 95):8.1f}  (n={len(a)})"


def product_look(api: Api) -> tuple[dict[str, Any], float]:
    path = f"/api/v1/products/{quote(SKU, safe='')}?twin={TWIN}&size=S"
    t0 = time.perf_counter()
    while True:
        status, body, _ = api.call("GET", path)
        if status == 200:
            return body["looks"][0], time.perf_counter() - t0
        if status != 202:
            raise RuntimeError(f"product: {status} {body}")
        job = body["looks"][0].get("links", {}).get("job")
        if job:
            api.wait_job(job)
        else:
            time.sleep(1.0)


def page_runs(base: str, runs: int) -> tuple[list[float], list[float], list[int]]:
    from playwright.sync_api import sync_playwright

    first, sharp, shown = [], [], []
    url = f"{base}/web/product.html?sku={quote(SKU, safe='')}&twin={TWIN}&size=S"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(url)
            page.wait_for_function(READY, timeout=120_000)
            state = page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinProduct))")
            if state["error"]:
                raise RuntimeError(f"product page: {state['error']}")
            first.append(float(state["firstLevelMs"]))
            sharp.append(float(state["sharpLevelMs"]))
            shown.append(len(state["shown"]))
            context.close()
        browser.close()
    return first, sharp, shown


def posters(
    api: Api, look: str, count: int, hits: int
) -> tuple[list[float], list[float], list[float]]:
    render_s, wall_s, hit_ms = [], [], []
    request: dict[str, Any] = {}
    for k in range(count):
        request = {"size_px": [1024, 1536], "format": "png", "background": f"#f4f2{0xE0 + k:02x}"}
        t0 = time.perf_counter()
        status, body, _ = api.call("POST", f"/api/v1/looks/{look}/stills", request)
        if status == 202:
            job = api.wait_job(body["links"]["job"])
            if job["status"] != "done":
                raise RuntimeError(f"still failed: {job}")
        elif status != 200:
            raise RuntimeError(f"still: {status} {body}")
        key = body["key"]
        _, png, _ = api.call("GET", f"/api/v1/stills/{key}.png")
        wall_s.append(time.perf_counter() - t0)
        _, record, _ = api.call("GET", f"/api/v1/stills/{key}")
        took = record.get("render_s", record.get("render_ms", 0) / 1e3)
        render_s.append(float(took))
        assert isinstance(png, bytes) and png[:8] == b"\x89PNG\r\n\x1a\n"
    for _ in range(hits):
        status, _, ms = api.call("POST", f"/api/v1/looks/{look}/stills", request)
        assert status == 200, status
        hit_ms.append(ms)
    return render_s, wall_s, hit_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--posters", type=int, default=3)
    parser.add_argument("--hits", type=int, default=20)
    args = parser.parse_args()
    if not (1 <= args.runs <= 50 and 1 <= args.posters <= 10 and 1 <= args.hits <= 500):
        parser.error("--runs 1..50, --posters 1..10, --hits 1..500")
    print(describe_machine(), f"load {os.getloadavg()[0]:.2f}", flush=True)
    data = Path(tempfile.mkdtemp(prefix="spatialtwin-product-")) / "data"
    port = free_port()
    log = (data.parent / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "spatialtwin", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--data", str(data)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        api = Api(base, None)
        wait_healthy(api, 900)
        token_file = data / "demo-token"
        api.token = token_file.read_text().strip() if token_file.exists() else None
        look, built_s = product_look(api)
        print(f"product look built once (drape, levels, poster) in {built_s:.1f} s")
        first_bytes = int(look["lod"]["firstLevel"]["bytes"])
        ar = look.get("ar") or {}
        verdict = "met" if first_bytes <= 60_000 else "MISSED"
        print(f"first level {first_bytes:,} B (goal <= 60 KB: {verdict})")
        if ar.get("glbBytes"):
            ratio = ar["usdzBytes"] / ar["glbBytes"]
            usdz, glb = ar["usdzBytes"], ar["glbBytes"]
            print(f"USDZ {usdz:,} B / AR GLB {glb:,} B = {ratio:.2f}x (goal <= 1.5x)")
        first, sharp, shown = page_runs(base, args.runs)
        print(f"page: first level drawn ms {spread(first)}  (goal median <= 300)")
        print(f"page: sharp level drawn ms {spread(sharp)}  (goal median <= 1500); "
              f"levels shown per run {sorted(set(shown))}")  # fmt: skip
        render_s, wall_s, hit_ms = posters(api, look["look"], args.posters, args.hits)
        print(f"poster 1024x1536 render s  {spread(render_s)}")
        print(f"poster request->file s     {spread(wall_s)}  (goal median <= 5)")
        print(f"poster cache hit ms        {spread(hit_ms)}  (goal <= 10)")
    finally:
        stop_process(server)
        log.close()


if __name__ == "__main__":
    main()
