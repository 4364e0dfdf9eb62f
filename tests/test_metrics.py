"""`/metrics` and `/readyz` on real servers: the exposition parses, requests are counted by
route template with their status, jobs by kind and status as their records say, the caches'
hits as the caches count them, a mirror session's stage times and the sessions held; a server
whose store does not answer is alive (`/healthz`) but not ready (503 with the reason)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spatialtwin.server import keys
from spatialtwin.server.app import create_app
from tests.mirror_fixtures import MirrorClient, standing_landmarks

SESSIONS = "/api/v1/mirror/sessions"


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)], from Prometheus text (the real parser)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matches = [
        v for lab, v in found.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(matches) == 1, (name, labels, found.get(name))
    return matches[0]


@pytest.fixture
async def api(aiohttp_client, tmp_path):
    app = create_app(tmp_path / "data", seed=False)
    client = await aiohttp_client(app)
    client.app_ = app
    return client


async def scrape(api) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = await api.get("/metrics")
    assert r.status == 200
    content_type = r.headers["Content-Type"]
    assert content_type.startswith("text/plain; version=") and "utf-8" in content_type
    return samples(await r.text())


async def test_requests_are_counted_by_route_template_and_status(api):
    before = await scrape(api)
    route = "/api/v1/looks/{look_id}"

    def count(found: Any, status: str) -> float:
        rows = [
            v
            for lab, v in found.get("spatialtwin_http_request_duration_seconds_count", [])
            if lab.get("route") == route and lab.get("status") == status
        ]
        return sum(rows)

    for look_id in ("lk_nope1", "lk_nope2", "lk_nope3"):
        r = await api.get(f"/api/v1/looks/{look_id}")
        assert r.status == 404
    r = await api.get("/healthz")
    assert r.status == 200
    after = await scrape(api)
    assert count(after, "404") - count(before, "404") == 3
    # ids never become labels: one series for the three missing looks
    labels = [lab for lab, _ in after["spatialtwin_http_request_duration_seconds_count"]]
    assert not any("nope" in str(lab) for lab in labels)
    assert value(after, "spatialtwin_http_request_duration_seconds_count", route="/healthz",
                 method="GET", status="200") >= 1  # fmt: skip
    # buckets are cumulative and end at the count
    buckets = [
        (lab["le"], v)
        for lab, v in after["spatialtwin_http_request_duration_seconds_bucket"]
        if lab["route"] == route and lab["status"] == "404"
    ]
    assert buckets[-1] == ("+Inf", count(after, "404"))
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)


async def test_jobs_and_caches_read_as_their_records_and_counters_say(api):
    store = api.app_[keys.STORE]
    now = "2026-12-02T10:00:00+00:00"
    for i, (status, took_s) in enumerate((("queued", None), ("running", None), ("done", 3.0),
                                          ("done", 30.0), ("failed", 0.5))):  # fmt: skip
        finished = None if took_s is None else f"2026-12-02T10:00:{took_s:06.3f}+00:00"
        await store.put_record(
            "jobs",
            f"job_metrics_{i}",
            {"id": f"job_metrics_{i}", "kind": "look.drape", "status": status,
             "created_at": now, "started_at": now, "finished_at": finished},
        )  # fmt: skip
    cache = api.app_[keys.SERVICES].cache
    cache.put(("metrics-test", 1), b"x" * 1000)
    for _ in range(3):
        assert cache.get(("metrics-test", 1)) is not None
    assert cache.get(("metrics-test", 2)) is None
    found = await scrape(api)
    assert value(found, "spatialtwin_job_queue_depth", kind="look.drape") == 2
    assert value(found, "spatialtwin_jobs", kind="look.drape", status="done") == 2
    done = {"kind": "look.drape", "status": "done"}
    assert value(found, "spatialtwin_job_duration_seconds_count", **done) == 2
    assert value(found, "spatialtwin_job_duration_seconds_sum", **done) == pytest.approx(33.0)
    assert value(found, "spatialtwin_job_duration_seconds_bucket", le="5.0", **done) == 1
    assert value(found, "spatialtwin_cache_hits", cache="services") == cache.hits >= 3
    assert value(found, "spatialtwin_cache_misses", cache="services") == cache.misses >= 1
    assert value(found, "spatialtwin_cache_bytes", cache="services") == cache.bytes >= 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_ready_only_when_the_store_answers(aiohttp_client, tmp_path):
    r = await (await aiohttp_client(create_app(tmp_path / "ok", seed=False))).get("/readyz")
    assert r.status == 200 and (await r.json())["status"] == "ready"

    from spatialtwin.store.redis_store import RedisStore

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = create_app(
        tmp_path / "away",
        seed=False,
        store_factory=lambda _p: RedisStore(url, blobs=tmp_path / "blobs"),
        services_after_listening=True,
    )
    client = await aiohttp_client(app)
    for _ in range(100):
        r = await client.get("/readyz")
        body = await r.json()
        if "store" in body["checks"] and body["checks"].get("services") != "loading":
            break
        await asyncio.sleep(0.1)
    assert r.status == 503 and r.headers["Retry-After"] == "2"
    assert body["status"] == "not_ready" and "store" in body["checks"], body
    assert (await client.get("/healthz")).status in (200, 503)  # alive: it answers
    assert (await client.get("/metrics")).status == 200  # and still reports itself


async def test_a_mirror_session_reports_its_stage_times_and_itself(
    mirror_server, mirror_data, average_body
):
    marks = standing_landmarks(average_body)
    _, token = await mirror_server.register_device()
    async with aiohttp.ClientSession() as http:

        async def scraped() -> dict[str, list[tuple[dict[str, str], float]]]:
            async with http.get(mirror_server.url + "/metrics") as r:
                assert r.status == 200
                return samples(await r.text())

        before = await scraped()
        client = await MirrorClient(http, mirror_server.ws_url + SESSIONS).connect()
        await client.hello(token, look=mirror_data.look, input="landmarks")
        t0 = time.perf_counter()
        for frame_id in range(30):
            await client.send_landmarks(frame_id, marks, 1000.0 * time.time())
            await asyncio.sleep(max(0.0, t0 + (frame_id + 1) / 30.0 - time.perf_counter()))
        await client.wait_for(lambda r: len(r.results) >= 10, 10)
        during = await scraped()
        await client.send_json({"type": "bye"})
        assert await client.wait_closed() == 1000
    assert value(during, "spatialtwin_mirror_sessions") >= 1
    assert value(during, "spatialtwin_mirror_sockets") >= 1
    assert value(during, "spatialtwin_event_loop_tasks") >= 1
    assert value(during, "spatialtwin_threads") >= 3  # loop, the session's two stages
    assert value(during, "process_resident_memory_bytes") > 50e6  # the platform collector

    def stage_count(found: Any, stage: str) -> float:
        rows = found.get("spatialtwin_mirror_stage_seconds_count", [])
        return sum(v for lab, v in rows if lab.get("stage") == stage)

    results = len(client.received.results)
    for stage in ("cloth", "encode", "total"):
        assert stage_count(during, stage) - stage_count(before, stage) >= min(results, 10) - 1
    # a standing twin's cloth step takes milliseconds: its sum over its count is below 33 ms
    made = stage_count(during, "cloth") - stage_count(before, "cloth")
    spent = sum(
        v for lab, v in during["spatialtwin_mirror_stage_seconds_sum"] if lab["stage"] == "cloth"
    ) - sum(
        v
        for lab, v in before.get("spatialtwin_mirror_stage_seconds_sum", [])
        if lab["stage"] == "cloth"
    )
    assert 0.0 < spent / made < 0.033
    assert value(during, "spatialtwin_mirror_results_total") >= results
