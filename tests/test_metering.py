"""Usage metering: every served use is an event written before the answer, and the agency's
report adds the raw events up exactly, in JSON and CSV, also after a server is killed (-9).

The store holds a twin (agency North Models) with a look and its built levels
(`tests/test_access.py`'s data). Shoppers in two sessions fetch the look's GLB, level files and
the AR file; a refused use writes nothing. The raw log (`DATA/events/usage.jsonl`) is read
back and summed in decimal independently of the server, and the report must equal it row by
row. Then a `spatialtwin serve` process is killed with SIGKILL while shoppers keep asking: every
answer a shopper got has its event, no event is there twice, and at most the requests in
flight when it died have an event without an answer.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from spatialtwin.server.app import create_app
from spatialtwin.server.auth import KEYRING
from spatialtwin.services.auth import KeyRing
from spatialtwin.store.event_log import JsonlEventLog
from tests.browser_harness import start_spatialtwin_server
from tests.test_access import SETTINGS, access_data  # noqa: F401 - the shared store fixture

AGENCY = "North Models"
FEE_EUR = 0.35


async def test_the_log_keeps_whole_lines_after_a_torn_one(tmp_path):
    log = JsonlEventLog(tmp_path / "usage.jsonl")
    await log.append({"id": "a", "count": 1})
    with open(log.path, "ab") as fh:  # a writer killed mid-line
        fh.write(b'{"id": "torn", "cou')
    await log.append({"id": "b", "count": 2})
    await log.append({"id": "a", "count": 1})  # a retry under the same id counts once
    assert await log.read() == [{"id": "a", "count": 1}, {"id": "b", "count": 2}]
    assert log.path.read_bytes().count(b"\n") == 4


def raw_events(data_dir) -> list[dict]:
    lines = (data_dir / "events" / "usage.jsonl").read_bytes().split(b"\n")
    events = [json.loads(line) for line in lines if line.strip()]
    assert len({e["id"] for e in events}) == len(events)  # none twice
    return events


def summed(events: list[dict], group: tuple[str, ...]) -> dict[tuple, dict]:
    """The report, computed here from the raw events: events, uses, exact fees per group."""
    rows: dict[tuple, dict] = defaultdict(lambda: {"events": 0, "count": 0, "fee": Decimal(0)})
    for e in events:
        row = rows[tuple(e[g] for g in group)]
        row["events"] += 1
        row["count"] += e["count"]
        row["fee"] += Decimal(str(e["fee_per_use_eur"] or 0)) * e["count"]
    return dict(rows)


def cents(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@pytest.fixture
async def metered(tmp_path, access_data):  # noqa: F811
    template, ids = access_data
    shutil.copytree(template, tmp_path / "data")
    app = create_app(tmp_path / "data", seed=False, settings=SETTINGS)
    client = TestClient(TestServer(app))
    await client.start_server()
    ring = app[KEYRING]
    client.ids, client.data = ids, tmp_path / "data"
    client.tokens = {
        "admin": ring.issue("admin", None),
        "agency": ring.issue("agency", AGENCY),
        "other_agency": ring.issue("agency", "South Faces"),
        "acme": ring.issue("brand", "acme"),
        "model": ring.issue("model", "Mara Test"),
        "other_model": ring.issue("model", "Ida Other"),
    }
    try:
        yield client
    finally:
        await client.close()


def auth(client, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.tokens[who]}"}


async def test_each_use_is_an_event_and_the_report_adds_them_up(metered):
    api, ids = metered, metered.ids
    twin, look = ids["twin"], ids["look"]
    manifest = await (await api.get(f"/api/v1/twins/{twin}/lod/manifest.json")).json()
    levels = [level["url"] for level in manifest["levels"]]
    usdz = manifest["ar"]["usdz"]["url"]
    # the agency sets a fee and adds AR (the level set built before stays served)
    r = await api.patch(
        f"/api/v1/twins/{twin}/license",
        json={"fee_per_use_eur": FEE_EUR, "channels": ["ecommerce", "mirror", "ar"]},
        headers=auth(api, "agency"),
    )
    assert r.status == 200, await r.text()
    assert len(levels) >= 2
    served = defaultdict(int)
    for session in ("shopper-session-1", "shopper-session-2"):
        headers = {"X-SpatialTwin-Session": session}
        for _ in range(3):
            r = await api.get(f"/api/v1/looks/{look}/look.glb", headers=headers)
            assert r.status == 200
            served["look"] += 1
        for url in levels + levels:  # every level, twice: one level download per session
            assert (await api.get(url, headers=headers)).status == 200
        served["level"] += 1
        for _ in range(2):
            assert (await api.get(usdz, headers=headers)).status == 200
            served["ar"] += 1
    for agent in ("phone A", "phone A", "phone B"):  # no session header: address and browser
        assert (await api.get(levels[0], headers={"User-Agent": agent})).status == 200
    served["level"] += 2
    refused = await api.get(f"/api/v1/looks/{look}/look.glb?channel=campaign")
    assert refused.status == 403  # a refused use is no use: no event

    events = raw_events(api.data)
    by_kind = defaultdict(int)
    for e in events:
        by_kind[e["kind"]] += e["count"]
        assert (e["twin"], e["agency"], e["model"]) == (twin, AGENCY, "Mara Test")
        assert e["license"] == "lic_hostile" and e["fee_per_use_eur"] == FEE_EUR
    assert dict(by_kind) == dict(served) == {"look": 6, "level": 4, "ar": 4}
    assert {e["channel"] for e in events if e["kind"] == "ar"} == {"ar"}

    group = ("twin", "license", "channel")
    r = await api.get(
        f"/api/v1/agencies/{AGENCY}/usage?group=twin,license,channel", headers=auth(api, "agency")
    )
    assert r.status == 200
    report = await r.json()
    expected = summed(events, group)
    got = {tuple(row[g] for g in group): row for row in report["rows"]}
    assert set(got) == set(expected)
    for key, row in expected.items():
        assert got[key]["events"] == row["events"] and got[key]["count"] == row["count"]
        assert Decimal(got[key]["fee_eur_exact"]) == row["fee"]
        assert got[key]["fee_eur"] == cents(row["fee"])
    total_fee = sum((row["fee"] for row in expected.values()), Decimal(0))
    assert report["totals"]["count"] == 14
    assert Decimal(report["totals"]["fee_eur_exact"]) == total_fee == Decimal("4.90")

    r = await api.get(
        f"/api/v1/agencies/{AGENCY}/usage?format=csv&group=twin,license,channel",
        headers=auth(api, "agency"),
    )
    assert r.status == 200 and r.content_type == "text/csv"
    lines = list(csv.reader(io.StringIO(await r.text())))
    assert lines[0] == ["twin", "license", "channel", "events", "count", "fee_eur"]
    as_csv = {tuple(line[:3]): line[3:] for line in lines[1:-1]}
    assert as_csv == {
        tuple(row[g] for g in group): [
            str(row["events"]),
            str(row["count"]),
            f"{row['fee_eur']:.2f}",
        ]
        for row in report["rows"]
    }
    assert lines[-1] == ["total", "", "", str(len(events)), "14", "4.90"]

    # a window before every event is empty; an agency reads only its own; a brand none
    r = await api.get(f"/api/v1/agencies/{AGENCY}/usage?to=2020-01-01", headers=auth(api, "agency"))
    assert (await r.json())["rows"] == []
    r = await api.get(f"/api/v1/agencies/{AGENCY}/usage", headers=auth(api, "other_agency"))
    assert r.status == 403 and (await r.json())["error"]["detail"]["reason"] == "not_owner"
    r = await api.get(f"/api/v1/agencies/{AGENCY}/usage", headers=auth(api, "acme"))
    assert r.status == 403 and (await r.json())["error"]["detail"]["reason"] == "role"
    r = await api.get(f"/api/v1/agencies/{AGENCY}/usage?group=fee", headers=auth(api, "agency"))
    assert r.status == 422
    # a model sees the uses of their own twins, and no one else's
    r = await api.get(f"/api/v1/agencies/{AGENCY}/usage?group=kind", headers=auth(api, "model"))
    mine = await r.json()
    assert mine["model"] == "Mara Test" and mine["totals"]["count"] == 14
    r = await api.get(f"/api/v1/agencies/{AGENCY}/usage", headers=auth(api, "other_model"))
    assert (await r.json())["rows"] == []


def test_no_event_is_lost_or_counted_twice_when_the_server_is_killed(tmp_path, access_data):  # noqa: F811
    template, ids = access_data
    data = tmp_path / "data"
    shutil.copytree(template, data)
    answered, sent = [], []
    stop = threading.Event()
    look_url = f"/api/v1/looks/{ids['look']}/look.glb"

    def shopper(base_url: str) -> None:
        while not stop.is_set():
            sent.append(1)
            try:
                with urllib.request.urlopen(base_url + look_url, timeout=10) as r:
                    r.read()
                    if r.status == 200:
                        answered.append(1)
            except (urllib.error.URLError, ConnectionError, OSError):
                return  # the server is gone

    with start_spatialtwin_server(data, extra_args=("--no-seed",)) as server:
        threads = [threading.Thread(target=shopper, args=(server.base_url,)) for _ in range(3)]
        for t in threads:
            t.start()
        while len(answered) < 30:
            threading.Event().wait(0.01)
        server.process.kill()  # SIGKILL: no cleanup, mid-request
        server.process.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
    events = raw_events(data)  # also: every line whole, none twice
    looks = [e for e in events if e["kind"] == "look"]
    print(f"\n{len(sent)} sent, {len(answered)} answered, {len(looks)} events at the kill")
    assert len(answered) <= len(looks) <= len(sent)
    assert len(looks) - len(answered) <= len(threads)  # only requests in flight at the kill

    with start_spatialtwin_server(data, extra_args=("--no-seed",)) as again:
        admin = KeyRing(data / "keys").issue("admin", None)
        request = urllib.request.Request(
            again.url(f"/api/v1/agencies/{quote(AGENCY)}/usage?group=kind"),
            headers={"Authorization": f"Bearer {admin}"},
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            report = json.loads(r.read())
    assert report["rows"] == [
        {
            "kind": "look",
            "events": len(looks),
            "count": len(looks),
            "fee_eur": 0.0,
            "fee_eur_exact": "0",
        }
    ]


async def test_each_started_mirror_minute_is_an_event(mirror_server, mirror_data):
    import aiohttp

    from tests.mirror_fixtures import MirrorClient

    _, token = await mirror_server.register_device()
    log = JsonlEventLog(mirror_server.data_dir / "events" / "usage.jsonl")

    async def minutes(session_id: str) -> list[dict]:
        events = await log.read()
        return [e for e in events if e["kind"] == "mirror_minute" and e["session"] == session_id]

    async with aiohttp.ClientSession() as http:
        client = await MirrorClient(
            http, mirror_server.ws_url + "/api/v1/mirror/sessions"
        ).connect()
        welcome = await client.hello(token, look=mirror_data.look, input="landmarks")
        session_id = welcome["session"]
        await asyncio.sleep(1.2)  # the sessions are checked every 0.5 s
        first = await minutes(session_id)
        assert len(first) == 1 and first[0]["channel"] == "mirror"
        assert first[0]["twin"] == welcome["twin"]["id"]
        entry = mirror_server.hub().service.sessions[session_id]
        entry.started_at -= 125.0  # as if it had run 2 min 5 s: its third minute has begun
        await asyncio.sleep(1.2)
        assert len(await minutes(session_id)) == 3
        await client.send_json({"type": "bye"})
        assert await client.wait_closed() == 1000


async def test_a_brands_use_is_billed_under_its_own_license(metered):
    api, ids = metered, metered.ids
    twin = ids["twin"]
    manifest = await (await api.get(f"/api/v1/twins/{twin}/lod/manifest.json")).json()
    level = manifest["levels"][0]["url"]
    grant = {
        "id": "lic_acme",
        "licensee": "acme",
        "channels": ["ecommerce"],
        "fee_per_use_eur": 0.4,
    }
    r = await api.post(f"/api/v1/twins/{twin}/licenses", json=grant, headers=auth(api, "agency"))
    assert r.status == 201, await r.text()
    consent = f"/api/v1/twins/{twin}/licenses/lic_acme/consent"
    r = await api.post(consent, json={"consent": True}, headers=auth(api, "model"))
    assert r.status == 200
    as_acme = {**auth(api, "acme"), "X-SpatialTwin-Session": "acme-buyer-1"}
    assert (await api.get(level, headers=as_acme)).status == 200
    assert (await api.get(level, headers={"X-SpatialTwin-Session": "shopper-1"})).status == 200
    events = {e["session"]: e for e in raw_events(api.data)}
    acme, shopper = events["acme-buyer-1"], events["shopper-1"]
    assert (acme["license"], acme["brand"], acme["fee_per_use_eur"]) == ("lic_acme", "acme", 0.4)
    assert (shopper["license"], shopper["brand"]) == ("lic_hostile", None)  # the open license
    r = await api.get(f"/api/v1/agencies/{AGENCY}/usage?group=brand", headers=auth(api, "agency"))
    rows = {row["brand"]: row for row in (await r.json())["rows"]}
    assert rows["acme"]["fee_eur"] == 0.4 and rows[None]["fee_eur"] == 0.0
