"""A fresh data directory becomes the demo: sample twins and garments from `assets/`.

Seeding runs in the background after the server listens: `/healthz` answers at once, says
`seeding` while the sample jobs run, and `ok` once every sample is in the store.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp.test_utils import TestServer

from spatialtwin.server.app import PROJECT_ROOT, create_app
from tests.conftest import AdminTestClient

pytestmark = pytest.mark.slow
LISTEN_BUDGET_S = 2.0


async def seeded(client) -> dict:
    """`/healthz` polled until seeding has ended; its last answer."""
    deadline = time.monotonic() + 600
    while True:
        health = await (await client.get("/healthz")).json()
        if health["status"] != "seeding":
            return health
        assert time.monotonic() < deadline, health
        await asyncio.sleep(0.1)


async def test_first_start_listens_at_once_and_seeds_samples_once(tmp_path):
    data = tmp_path / "data"
    started = time.perf_counter()
    client = AdminTestClient(TestServer(create_app(data, seed=True)))
    await client.start_server()
    try:
        health = await (await client.get("/healthz")).json()
        listened_s = time.perf_counter() - started
        assert listened_s < LISTEN_BUDGET_S, f"listened after {listened_s:.2f} s"
        assert health["status"] == "seeding" and len(health["seed"]["jobs"]) <= 5
        twins = (await (await client.get("/api/v1/twins")).json())["twins"]
        assert len(twins) < 2  # answered while the twins are still being made
        health = await seeded(client)
        assert health["status"] == "ok", health
        assert health["seed"]["created"] == 5 and health["seed"]["errors"] == []
        twins = (await (await client.get("/api/v1/twins")).json())["twins"]
        assert {t["id"] for t in twins} == {"twn_sample_ava", "twn_sample_leo"}
        garments = (await (await client.get("/api/v1/garments")).json())["garments"]
        by_id = {g["id"]: g for g in garments}
        assert set(by_id) == {"gar_sample_tshirt", "gar_sample_skirt-a-line", "gar_sample_trousers"}
        tee = by_id["gar_sample_tshirt"]
        sidecar = json.loads((PROJECT_ROOT / "assets" / "garments" / "tshirt.json").read_text())
        assert tee["category"] == "top" and tee["units"] == "m"
        assert tee["fabric"]["id"] == "cotton-jersey"
        lo, hi = (sidecar["bounds_m"][k] for k in ("min", "max"))
        assert tee["extent_m"] == pytest.approx(
            [h - low for h, low in zip(hi, lo, strict=True)], abs=0.002
        )
    finally:
        await client.close()

    again = AdminTestClient(TestServer(create_app(data, seed=True)))
    await again.start_server()
    try:
        health = await seeded(again)
        assert health["status"] == "ok" and health["seed"]["jobs"] == []  # nothing to redo
        garments = (await (await again.get("/api/v1/garments")).json())["garments"]
        assert len(garments) == 3
        assert len((await (await again.get("/api/v1/twins")).json())["twins"]) == 2
    finally:
        await again.close()
