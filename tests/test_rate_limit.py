"""Requests per token per minute (`server/ratelimit.py`), at the edge: the limit passes, one
more is 429 `rate_limited` with `Retry-After` and writes nothing; a token and an anonymous
address count apart, and a closed window lets the caller in again."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from spatialtwin.server.app import create_app
from spatialtwin.server.auth import KEYRING
from spatialtwin.server.keys import STORE
from spatialtwin.server.ratelimit import RateLimitedError, RateLimiter
from tests.test_garment_api import HEAVY_LINEN

LIMIT = 5
FABRIC = HEAVY_LINEN


@pytest.fixture
async def limited(tmp_path):
    app = create_app(tmp_path / "data", seed=False, settings={"rate_limit_per_minute": LIMIT})
    client = TestClient(TestServer(app))
    await client.start_server()
    client.brand = {"Authorization": f"Bearer {app[KEYRING].issue('brand', 'acme')}"}
    client.other = {"Authorization": f"Bearer {app[KEYRING].issue('brand', 'acme')}"}
    try:
        yield client
    finally:
        await client.close()


async def test_the_limit_passes_and_one_more_is_refused_without_writing(limited):
    for _ in range(LIMIT - 1):
        r = await limited.get("/api/v1/fabrics", headers=limited.brand)
        assert r.status == 200
    store = limited.server.app[STORE]
    r = await limited.post("/api/v1/fabrics", json=FABRIC, headers=limited.brand)
    assert r.status == 201  # the LIMIT-th request of the minute
    before = store.snapshot(content=True)
    again = {**FABRIC, "id": "linen-light"}
    r = await limited.post("/api/v1/fabrics", json=again, headers=limited.brand)
    assert r.status == 429
    body = await r.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["detail"]["limit_per_minute"] == LIMIT
    retry_after_s = int(r.headers["Retry-After"])
    assert 1 <= retry_after_s <= 60
    assert store.snapshot(content=True) == before
    # another token of the same tenant has its own minute; probes are never counted
    r = await limited.get("/api/v1/fabrics", headers=limited.other)
    assert r.status == 200
    r = await limited.get("/healthz", headers=limited.brand)
    assert r.status == 200


async def test_anonymous_callers_count_by_address(limited):
    for _ in range(LIMIT):
        r = await limited.get("/api/v1/twins")
        assert r.status == 200
    r = await limited.get("/api/v1/twins")
    assert r.status == 429 and (await r.json())["error"]["code"] == "rate_limited"
    r = await limited.get("/api/v1/fabrics", headers=limited.brand)  # a token: its own count
    assert r.status == 200


def test_a_closed_window_lets_the_caller_in_again():
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    limiter.hit("k")
    now[0] += 59.5
    limiter.hit("k")
    with pytest.raises(RateLimitedError) as refused:
        limiter.hit("k")
    assert refused.value.retry_after_s == 1  # 0.5 s left, rounded up
    now[0] += 0.5
    limiter.hit("k")  # the window that opened at 1000 s has closed


async def test_zero_switches_the_limit_off(tmp_path):
    app = create_app(tmp_path / "data", seed=False, settings={"rate_limit_per_minute": 0})
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        statuses = {(await client.get("/api/v1/twins")).status for _ in range(700)}
    finally:
        await client.close()
    assert statuses == {200}


async def test_shoppers_behind_the_proxy_count_apart_and_pages_are_not_counted(limited):
    """Behind nginx on this host every request comes from loopback: each shopper is counted
    by the proxy's X-Real-IP. Static pages and vendor modules (a page loads dozens) are not
    counted at all."""
    for _ in range(3 * LIMIT):
        r = await limited.get("/web/product.html")
        assert r.status == 200
    for shopper in ("203.0.113.7", "203.0.113.8"):
        for _ in range(LIMIT):
            r = await limited.get("/api/v1/twins", headers={"X-Real-IP": shopper})
            assert r.status == 200
        r = await limited.get("/api/v1/twins", headers={"X-Real-IP": shopper})
        assert r.status == 429
    r = await limited.get("/api/v1/twins")  # loopback itself still has its own minute
    assert r.status == 200
