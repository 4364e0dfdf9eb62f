"""Every use of a twin passes one door (`services/access.py`), and every door refuses.

The routes the app registers are enumerated (`app.router`): each is either a use of a twin
(it serves or works with the likeness) or named here with why it is not, so a new route cannot
slip past unclassified. Each use is tried under each license rule — channel, not yet valid,
expired, revoked — against a store where everything it could serve exists and was served a
moment before (twin GLB, garment preview, look and its GLB, level manifests, level files).
A revocation also wins its races with a level build, and survives a restart.
"""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from spatialtwin.lod.levels import DEFAULTS
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import SERVICES
from tests.conftest import HOSTILE_RIGHTS
from tests.job_polling import job_done, started_job

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "spatialtwin"
TSHIRT = REPO / "assets" / "garments" / "tshirt.glb"
FAST_LOD = replace(DEFAULTS, error_samples=1000, measure_poses=False, candidates=())
SETTINGS = {"lod_options": FAST_LOD, "look_max_frames": 3}

# What a route does with a twin. A use serves or works with the likeness; the others say why
# they are not one. Keys are (method, the route's path as registered).
USES = {
    ("GET", "/api/v1/twins/{twin_id}/body.glb"),
    ("GET", "/api/v1/twins/{twin_id}/lod/manifest.json"),
    ("GET", "/api/v1/looks/{look_id}"),
    ("GET", "/api/v1/looks/{look_id}/look.glb"),
    ("GET", "/api/v1/looks/{look_id}/lod/manifest.json"),
    ("GET", "/api/v1/garments/{garment_id}/preview.glb"),
    ("POST", "/api/v1/looks"),
    ("GET", "/api/v1/lod/{sha256}.{ext}"),
}
NOT_USES = {
    ("GET", "/healthz"): "liveness",
    ("GET", "/readyz"): "readiness",
    ("GET", "/metrics"): "counters for operators",
    ("GET", "/api/v1/openapi.json"): "the API contract, made from the route declarations",
    ("GET", "/api/v1/docs"): "the contract rendered for integrators",
    ("GET", "/"): "the viewer page",
    ("GET", "/api/v1/twins"): "lists each twin's record and license state, never its body",
    ("GET", "/api/v1/twins/{twin_id}"): "the record and its license state, never its body",
    ("POST", "/api/v1/twins"): "makes a new twin under the license it is given",
    ("PATCH", "/api/v1/twins/{twin_id}/license"): "the owner's change of the license itself",
    ("GET", "/api/v1/twins/{twin_id}/licenses"): "the licenses, never the body",
    ("POST", "/api/v1/twins/{twin_id}/licenses"): "the agency grants a license",
    ("PATCH", "/api/v1/twins/{twin_id}/licenses/{license_id}"): "the agency amends or ends one",
    ("POST", "/api/v1/twins/{twin_id}/licenses/{license_id}/consent"): "the model's consent",
    ("GET", "/api/v1/agencies/{agency_id}/usage"): "the agency's usage events added up",
    ("GET", "/api/v1/garments"): "garments only",
    ("POST", "/api/v1/garments"): "garments only",
    ("GET", "/api/v1/garments/{garment_id}"): "garments only",
    ("GET", "/api/v1/fabrics"): "fabrics only",
    ("POST", "/api/v1/fabrics"): "fabrics only",
    ("GET", "/api/v1/jobs/{job_id}"): "a job's state; a job re-checks its twin when it runs",
    # Mirror sessions use a twin, through the same door (channel `mirror`), but need a device
    # token and a live session: refused and ended sessions are tried in tests/test_mirror_ws.py
    ("GET", "/api/v1/mirror/sessions"): "a WebSocket; its twin passes the door at the hello "
    "and every 0.5 s while the session lives (a refusal ends it, 4403)",
    ("GET", "/api/v1/mirror/watch"): "a WebSocket watching a live session, ended with it",
    ("GET", "/api/v1/mirror/sessions/{session_id}/garments/{stream}.glb"): "a garment mesh "
    "of a live session (its access key), its twin put to the door on every read",
    # A product lists only the twins the door lets through (Access.twins_for_use), and stills
    # are read through the look's door (LookService.get_for_use): refusals, revocation and the
    # twin leaving a product are tried in tests/test_products_api.py.
    ("GET", "/api/v1/products/{sku}"): "lists the looks of the twins usable in the channel",
    ("POST", "/api/v1/looks/{look_id}/stills"): "a still of a look, through the look's door",
    ("GET", "/api/v1/stills/{key}"): "a still's record, through its look's door",
    ("GET", "/api/v1/stills/{key}.{ext}"): "a still's file, through its look's door",
}
STATIC_PREFIXES = ("/web", "/vendor/")


def registered_routes() -> set[tuple[str, str]]:
    """(method, path) of every dynamic route the app registers (HEAD is GET's twin)."""
    app = create_app(Path("/nonexistent-never-opened"), seed=False)
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path.startswith(STATIC_PREFIXES):
            continue
        out.add((route.method, path))
    return out


ROUTES = registered_routes()
TWIN_ROUTES = sorted(ROUTES & USES)


def test_every_route_is_a_use_or_says_why_not():
    unclassified = ROUTES - USES - set(NOT_USES)
    assert not unclassified, f"classify these routes in tests/test_access.py: {unclassified}"
    assert USES <= ROUTES and set(NOT_USES) <= ROUTES  # nothing stale here either
    assert len(TWIN_ROUTES) == 8


# --- the store every request of a use meets --------------------------------------------------


@pytest.fixture(scope="session")
def access_data(tmp_path_factory, average_body) -> tuple[Path, dict[str, str]]:
    """A data directory with a twin (ecommerce and mirror), a garment, a look of it, and the
    level sets of both built: everything a use could serve (made once per session)."""
    from spatialtwin.jobs.queue import StoreJobQueue
    from spatialtwin.jobs.runner import JobRunner
    from spatialtwin.services import job_kinds
    from spatialtwin.services.context import Services
    from spatialtwin.store.embedded import EmbeddedStore

    root = tmp_path_factory.mktemp("access-data")

    async def make() -> dict[str, str]:
        store = EmbeddedStore(root)
        services = Services(store, settings=SETTINGS)
        kinds = job_kinds.kinds(services)
        services.attach_jobs(StoreJobQueue(store, kinds))  # a worker's view: submit, then run
        twin = await services.twins.create_from_body(
            "Mara", average_body, Rights.from_json(HOSTILE_RIGHTS), {"kind": "measurements"}
        )
        meta = json.loads(TSHIRT.with_suffix(".json").read_text())
        keys = ("sku", "name", "category", "fabric", "units")
        garment = await services.garments.ingest(
            TSHIRT.read_bytes(), TSHIRT.name, {k: meta[k] for k in keys}
        )
        request = {"twin": twin["id"], "garments": [garment["id"]], "channel": "ecommerce"}
        look = await services.looks.create(await services.looks.check_request(request))
        ids = {"twin": twin["id"], "garment": garment["id"], "look": look["id"]}
        for subject in ("twin", "look"):
            answer = await getattr(services.lod, f"{subject}_manifest")(ids[subject], "ecommerce")
            done = await JobRunner(store, kinds).run_job(answer.job["id"])
            assert done is not None and done["status"] == "done", done
        built = await services.lod.twin_manifest(twin["id"], "ecommerce")
        ids["level"] = built.manifest["levels"][-1]["url"]
        return ids

    return root, asyncio.run(make())


@pytest.fixture
async def access_api(aiohttp_client, tmp_path, access_data):
    template, ids = access_data
    shutil.copytree(template, tmp_path / "data")
    client = await aiohttp_client(create_app(tmp_path / "data", seed=False, settings=SETTINGS))
    client.ids = ids
    return client


def use_request(route: tuple[str, str], ids: dict[str, str], channel: str) -> dict[str, Any]:
    """The request a client makes of `route` in `channel` (method, path, JSON body)."""
    t, g, look = ids["twin"], ids["garment"], ids["look"]
    paths = {
        "/api/v1/twins/{twin_id}/body.glb": f"/api/v1/twins/{t}/body.glb",
        "/api/v1/twins/{twin_id}/lod/manifest.json": f"/api/v1/twins/{t}/lod/manifest.json",
        "/api/v1/looks/{look_id}": f"/api/v1/looks/{look}",
        "/api/v1/looks/{look_id}/look.glb": f"/api/v1/looks/{look}/look.glb",
        "/api/v1/looks/{look_id}/lod/manifest.json": f"/api/v1/looks/{look}/lod/manifest.json",
        "/api/v1/garments/{garment_id}/preview.glb": f"/api/v1/garments/{g}/preview.glb",
        "/api/v1/lod/{sha256}.{ext}": ids["level"],
        "/api/v1/looks": "/api/v1/looks",
    }
    method, pattern = route
    if method == "POST":
        body = {"twin": t, "garments": [g], "channel": channel}
        return {"method": method, "path": paths[pattern], "json": body}
    query = {"channel": channel} | ({"twin": t} if "preview" in pattern else {})
    return {"method": method, "path": paths[pattern], "params": query}


async def send(client, request: dict[str, Any]):
    return await client.request(
        request["method"], request["path"], params=request.get("params"), json=request.get("json")
    )


LICENSE_RULES = {
    # rule: (license change, channel asked for, status, error code)
    "channel": ({}, "ar", 403, "channel_not_licensed"),
    "not-yet-valid": ({"valid_from": "2099-01-01T00:00:00Z"}, "ecommerce", 403,
                      "license_not_yet_valid"),
    "expired": ({"valid_from": "2020-01-01T00:00:00Z", "valid_until": "2021-01-01T00:00:00Z"},
                "ecommerce", 403, "license_expired"),
    "revoked": ({"revoked": True}, "ecommerce", 410, "license_revoked"),
}  # fmt: skip


@pytest.mark.parametrize("route", TWIN_ROUTES, ids=[f"{m} {p}" for m, p in TWIN_ROUTES])
async def test_each_use_is_served_while_the_license_allows_it(access_api, route):
    r = await send(access_api, use_request(route, access_api.ids, "ecommerce"))
    assert r.status == (202 if route[0] == "POST" else 200), await r.text()


@pytest.mark.parametrize("rule", sorted(LICENSE_RULES))
@pytest.mark.parametrize("route", TWIN_ROUTES, ids=[f"{m} {p}" for m, p in TWIN_ROUTES])
async def test_each_use_is_refused_under_each_license_rule(access_api, route, rule):
    change, channel, status, code = LICENSE_RULES[rule]
    twin = access_api.ids["twin"]
    if change:
        r = await access_api.patch(f"/api/v1/twins/{twin}/license", json=change)
        assert r.status == 200, await r.text()
    store = access_api.app[SERVICES].store
    before = store.snapshot(content=True)
    r = await send(access_api, use_request(route, access_api.ids, channel))
    error = (await r.json())["error"]
    if route == ("GET", "/api/v1/lod/{sha256}.{ext}") and rule == "revoked":
        # A revoked twin's level files are withdrawn: no such file is served here any more.
        status, code = 404, "lod_file_not_found"
    assert (r.status, error["code"]) == (status, code), error
    assert store.snapshot(content=True) == before  # refused before any work


async def test_a_revoked_twin_stays_refused_after_a_restart(access_api, tmp_path):
    twin = access_api.ids["twin"]
    r = await access_api.patch(f"/api/v1/twins/{twin}/license", json={"revoked": True})
    assert r.status == 200
    await access_api.close()
    app = create_app(tmp_path / "data", seed=False, settings=SETTINGS)
    from aiohttp.test_utils import TestServer

    from tests.conftest import AdminTestClient

    again = AdminTestClient(TestServer(app))
    await again.start_server()
    try:
        for route in TWIN_ROUTES:
            r = await send(again, use_request(route, access_api.ids, "ecommerce"))
            assert r.status in (404, 410), route
    finally:
        await again.close()


# --- a revocation wins its races with a level build ------------------------------------------


@pytest.fixture
async def lod_api(aiohttp_client, tmp_path, twin_data_template):
    template, twin_id = twin_data_template
    shutil.copytree(template, tmp_path / "data")
    client = await aiohttp_client(create_app(tmp_path / "data", seed=False, settings=SETTINGS))
    client.twin_id = twin_id
    client.services = client.app[SERVICES]
    return client


async def test_a_build_running_when_the_twin_is_revoked_publishes_nothing(lod_api):
    url = f"/api/v1/twins/{lod_api.twin_id}/lod/manifest.json"
    link = await started_job(await lod_api.get(url))
    for _ in range(2000):  # until the job is building (deterministic: its own stage)
        state = await (await lod_api.get(link)).json()
        if state["stage"] == "building levels":
            break
        assert state["status"] in ("queued", "running"), state
        await asyncio.sleep(0.01)
    r = await lod_api.patch(f"/api/v1/twins/{lod_api.twin_id}/license", json={"revoked": True})
    assert r.status == 200
    state, _ = await job_done(lod_api, link)
    assert state["status"] == "failed" and state["error"]["code"] == "license_revoked"
    store = lod_api.services.store
    assert await store.list_records("lod_files") == []
    assert await store.list_records("lod_sets") == []
    r = await lod_api.get(url)
    assert r.status == 410


async def test_a_revocation_that_lands_while_levels_are_published_withdraws_them(lod_api):
    services, twin_id = lod_api.services, lod_api.twin_id
    records = services.lod_records
    real_publish = records.publish_file
    revoked = []

    async def revoke_midway(sha, ext, owners):
        if not revoked:  # the owner revokes after the check before publishing
            revoked.append(await services.access.change_license(twin_id, {"revoked": True}))
        return await real_publish(sha, ext, owners)

    records.publish_file = revoke_midway
    try:
        url = f"/api/v1/twins/{twin_id}/lod/manifest.json"
        state, _ = await job_done(lod_api, await started_job(await lod_api.get(url)))
    finally:
        del records.publish_file
    assert revoked and state["status"] == "failed"
    assert state["error"]["code"] == "license_revoked"
    files = await services.store.list_records("lod_files")
    assert files and all(f["withdrawn"] for f in files)  # what was published is withdrawn
    assert await services.store.list_records("lod_sets") == []
    for f in files:
        r = await lod_api.get(f"/api/v1/lod/{f['sha256']}.{f['ext']}")
        assert r.status == 404


async def test_a_publication_racing_a_withdrawal_keeps_the_withdrawal(tmp_path):
    """lod_files changes compare-and-set: a publish that read the record before a withdrawal
    wrote it must not write `withdrawn` away (read-then-write would)."""
    from spatialtwin.store.embedded import EmbeddedStore
    from spatialtwin.store.lod_cache import LodRecords

    store = EmbeddedStore(tmp_path)
    records = LodRecords(store)
    sha = "ab" * 32
    await records.publish_file(sha, "glb", ["twn_a"])
    real_read = store.get_record_revision
    raced = []

    async def withdraw_between_read_and_write(kind, record_id):
        got = await real_read(kind, record_id)
        if kind == "lod_files" and not raced:
            raced.append(True)
            assert await records.withdraw_owner("twn_a") == 1
        return got

    store.get_record_revision = withdraw_between_read_and_write
    try:
        await records.publish_file(sha, "glb", ["twn_b"])
    finally:
        del store.get_record_revision
    record = await records.get_file(sha)
    assert raced and record["withdrawn"] is True
    assert record["owners"] == ["twn_a", "twn_b"]


# --- no license decision outside the door -----------------------------------------------------

DECISIONS = {"check_use", "changed_license"}
DOOR = SRC / "services" / "access.py"
RULES_MODULE = SRC / "rights" / "license.py"


def test_no_license_decision_is_made_outside_services_access():
    """A call of the license rule (`rights.license.check_use`) or of the license change is
    made only in `services/access.py`; everything else asks the door."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path in (DOOR, RULES_MODULE):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "spatialtwin.rights.license":
                named = {a.name for a in node.names} & DECISIONS
                offenders += [f"{path.relative_to(SRC)} imports {n}" for n in sorted(named)]
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in DECISIONS:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} calls {name}")
    assert offenders == []
