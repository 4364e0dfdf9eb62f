"""What enforcing rights costs a request (issue #11): token checks and durable usage events.

Run: `.venv/bin/python bench/rights.py [--n 2000]`

Printed, after the machine and its load:
- issuing and verifying an Ed25519 token (`KeyRing.issue`, `KeyRing.verify`, which also looks
  at the key folder's listing each time so a rotation is seen at once), per call: a token's
  first verification (the signature) and a later one (remembered until the folder changes);
- the whole middleware over HTTP: `GET /healthz` (no service, no record) anonymous and with a
  brand token, on the same in-process server, median and p95 per request;
- appending one usage event to the embedded store's log (one `fsync` each, what every metered
  answer waits for), median and p95, and reading a log of that many events back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from spatialtwin.services.auth import KeyRing
from spatialtwin.store.event_log import JsonlEventLog


def per_call_us(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def quantiles_ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(0.95 * (len(ordered) - 1))] * 1e3


async def http_overhead(root: Path, n: int) -> dict[str, tuple[float, float]]:
    from aiohttp.test_utils import TestClient, TestServer

    from spatialtwin.server.app import create_app
    from spatialtwin.server.auth import KEYRING

    client = TestClient(TestServer(create_app(root / "data", seed=False)))
    await client.start_server()
    try:
        token = client.server.app[KEYRING].issue("brand", "acme")
        out = {}
        for name, headers in (
            ("anonymous", {}),
            ("brand token", {"Authorization": f"Bearer {token}"}),
        ):
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                async with client.get("/healthz", headers=headers) as r:
                    await r.read()
                    assert r.status == 200
                samples.append(time.perf_counter() - t0)
            out[name] = quantiles_ms(samples)
        return out
    finally:
        await client.close()


async def event_appends(root: Path, n: int) -> tuple[tuple[float, float], float]:
    log = JsonlEventLog(root / "events" / "usage.jsonl")
    samples = []
    for i in range(n):
        event = {"id": f"use_{i:08d}", "kind": "look", "twin": "twn_bench", "count": 1}
        t0 = time.perf_counter()
        await log.append(event)
        samples.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    assert len(await log.read()) == n
    return quantiles_ms(samples), (time.perf_counter() - t0) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    print(describe_machine())
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ring, _ = KeyRing.init(root / "keys")
        token = ring.issue("brand", "acme")
        ring.verify(token)  # imports and key loading out of the way
        issue_us = per_call_us(lambda: ring.issue("brand", "acme"), args.n)
        print(f"token issue:                          {issue_us:7.1f} µs")
        fresh = iter([ring.issue("brand", "acme") for _ in range(args.n)])
        first = per_call_us(lambda: ring.verify(next(fresh)), args.n)
        print(f"token verify, first time (signature): {first:7.1f} µs")
        again = per_call_us(lambda: ring.verify(token), args.n)
        print(f"token verify, again (remembered):     {again:7.1f} µs")
        for name, (p50, p95) in asyncio.run(http_overhead(root, args.n // 2)).items():
            print(f"GET /healthz {name:<12} p50 {p50:.3f} ms  p95 {p95:.3f} ms")
        (p50, p95), read_ms = asyncio.run(event_appends(root, args.n // 2))
        print(f"usage event append (fsync): p50 {p50:.3f} ms  p95 {p95:.3f} ms")
        print(f"reading {args.n // 2} events back: {read_ms:.1f} ms")


if __name__ == "__main__":
    main()
