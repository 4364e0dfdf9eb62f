"""A fresh data directory becomes the demo: sample twins and garments from `assets/`."""

from __future__ import annotations

import json

import pytest

from spatialtwin.server.app import PROJECT_ROOT, create_app

pytestmark = pytest.mark.slow


async def test_first_start_seeds_samples_once(aiohttp_client, tmp_path):
    data = tmp_path / "data"
    client = await aiohttp_client(create_app(data, seed=True))
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
    await client.close()

    again = await aiohttp_client(create_app(data, seed=True))
    garments = (await (await again.get("/api/v1/garments")).json())["garments"]
    assert len(garments) == 3
    assert len((await (await again.get("/api/v1/twins")).json())["twins"]) == 2
