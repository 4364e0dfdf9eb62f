"""Records carry schema versions; a data directory written before versions existed is migrated.

The old data directory is written by the project's own code as it was before record versions
(commit `PRE_VERSIONS`, taken from git, run in a subprocess): a twin from measurements, a
garment, a custom fabric, a look draped by the old closure job runner, a job that process left
running when it was killed, and a twin's level set. Today's server opens it, migrates every
record in place, and serves all of it as before.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from spatialtwin.jobs.records import SCHEMA_VERSION as JOB_SCHEMA_VERSION
from spatialtwin.lod.levels import DEFAULTS
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import SERVICES
from spatialtwin.store import schema
from spatialtwin.store.embedded import EmbeddedStore
from tests.conftest import AdminTestClient
from tests.test_hostile_http import FABRIC

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PRE_VERSIONS = "48044e2162d54682a928ea6013cf179b1a92f56e"  # the last commit before versions
FAST_LOD = replace(DEFAULTS, error_samples=1000, measure_poses=False, candidates=())

OLD_WRITER = """
import asyncio, hashlib, json, os, sys
from dataclasses import asdict, replace
from pathlib import Path

from spatialtwin.garment.look import LookOptions
from spatialtwin.gltf.body_arrays import body_from_npz
from spatialtwin.lod.levels import DEFAULTS
from spatialtwin.lod.scene import scene_from_twin_body
from spatialtwin.lod.simplifier import backend_name
from spatialtwin.rights.license import provenance
from spatialtwin.services.lod import PIPELINE_VERSION, build_lod_for_scene
from spatialtwin.store.embedded import EmbeddedStore
from spatialtwin.store.garment_repository import GarmentRepository
from spatialtwin.store.jobs import JobRunner
from spatialtwin.store.lod_cache import LodCache, cache_key
from spatialtwin.store.look_repository import LookRepository, public_view
from spatialtwin.store.twin_repository import TwinRepository

root, assets, fabric = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
FAST = replace(DEFAULTS, error_samples=1000, measure_poses=False, candidates=())


async def main():
    store = EmbeddedStore(root)
    twins = TwinRepository(store)
    twin = await twins.create_from_measurements(json.loads((assets / "twins/ava.json").read_text()))
    garments = GarmentRepository(store)
    meta = json.loads((assets / "garments/tshirt.json").read_text())
    keys = ("sku", "name", "category", "fabric", "units", "size_label")
    tee = await garments.ingest(
        (assets / "garments/tshirt.glb").read_bytes(), "tshirt.glb", {k: meta[k] for k in keys}
    )
    await garments.create_fabric(fabric)
    looks = LookRepository(store, twins, garments, options=LookOptions(max_frames=2, min_frames=1))
    request = await looks.check_request({"twin": twin["id"], "garments": [tee["id"]]})
    runner = JobRunner(store)

    async def drape(progress):
        return public_view(await looks.create(request, progress))

    done = await runner.wait((await runner.start("look_drape", drape))["id"])
    prov = json.dumps(provenance(twin), sort_keys=True).encode()
    inputs = {"twinBody": twin["blobs"]["body_npz"], "provenance": hashlib.sha256(prov).hexdigest()}
    options = {**asdict(FAST), "pipeline": PIPELINE_VERSION, "simplifier": backend_name()}
    key = cache_key(inputs, options)
    body = body_from_npz(await store.get_blob(inputs["twinBody"]))

    async def build():
        scene = scene_from_twin_body(body, name=twin["id"], extras=provenance(twin))
        made = build_lod_for_scene(scene, FAST, url_prefix="/api/v1/lod/", inputs=inputs)
        return made.manifest, made.files

    manifest, _ = await LodCache(store).get_or_build(key, [twin["id"]], build)
    never = asyncio.Event()

    async def forever(progress):
        progress("draping", 0.4)
        await never.wait()

    stuck = await runner.start("look_drape", forever)
    await asyncio.sleep(0.5)  # its `running` state is on disk
    print(json.dumps({
        "twin": twin["id"], "garment": tee["id"], "look": done["result"]["id"],
        "done_job": done["id"], "stuck_job": stuck["id"], "key": key,
        "level": manifest["levels"][-1]["url"],
    }))
    sys.stdout.flush()
    os._exit(0)  # killed: no cleanup, the stuck job stays `running`


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def old_data(tmp_path_factory) -> tuple[Path, dict]:
    """A data directory written by the code of `PRE_VERSIONS` (from git), and its ids."""
    work = tmp_path_factory.mktemp("pre-versions")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", PRE_VERSIONS, "src", "assets"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work / "code", filter="data")
    # The old code finds the npm parts (the meshoptimizer it simplifies with) beside its src.
    (work / "code" / "node_modules").symlink_to(REPO / "node_modules")
    root = work / "data"
    done = subprocess.run(
        [sys.executable, "-c", OLD_WRITER, str(root), str(work / "code" / "assets"),
         json.dumps({**FABRIC, "id": "old-twill"})],
        env={**os.environ, "PYTHONPATH": str(work / "code" / "src")},
        cwd=work / "code",
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads(done.stdout.strip().splitlines()[-1])


def records_on_disk(root: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for path in sorted((root / "records").glob("*/*.json")):
        out.setdefault(path.parent.name, []).append(json.loads(path.read_text()))
    return out


async def test_an_old_data_directory_is_migrated_on_start_and_served(old_data, tmp_path):
    import shutil

    template, ids = old_data
    root = tmp_path / "data"
    shutil.copytree(template, root)
    before = records_on_disk(root)
    assert set(before) == {"twins", "garments", "fabrics", "looks", "jobs", "lod_sets", "lod_files"}
    assert not any("schema_version" in r for kind in before.values() for r in kind)

    client = AdminTestClient(
        TestServer(create_app(root, seed=False, settings={"lod_options": FAST_LOD}))
    )
    await client.start_server()
    try:
        after = records_on_disk(root)
        assert {k: len(v) for k, v in after.items()} == {k: len(v) for k, v in before.items()}
        for kind, records in after.items():
            assert {r["schema_version"] for r in records} == {schema.CURRENT[kind]}, kind
        (twin,) = after["twins"]
        assert twin["license"]["schema_version"] == schema.LICENSE_VERSION
        jobs = {j["id"]: j for j in after["jobs"]}
        assert {j["kind"] for j in jobs.values()} == {"look.drape"}
        # The job the killed process left running cannot run again (it was a closure): failed.
        stuck = await (await client.get(f"/api/v1/jobs/{ids['stuck_job']}")).json()
        assert stuck["status"] == "failed" and stuck["error"]["code"] == "interrupted"
        assert stuck["kind"] == "look_drape"
        done = await (await client.get(f"/api/v1/jobs/{ids['done_job']}")).json()
        assert done["status"] == "done" and done["result"]["id"] == ids["look"]

        # Everything the old process stored is served as before.
        got = await (await client.get(f"/api/v1/twins/{ids['twin']}")).json()
        assert got["measurements"] == {**before["twins"][0]["measurements"]}
        r = await client.get(f"/api/v1/twins/{ids['twin']}/body.glb")
        assert r.status == 200 and (await r.read())[:4] == b"glTF"
        look = before["looks"][0]
        r = await client.get(f"/api/v1/looks/{ids['look']}/look.glb")
        stored = (root / "blobs" / look["blobs"]["glb"][:2] / look["blobs"]["glb"]).read_bytes()
        assert r.status == 200 and await r.read() == stored
        r = await client.get(f"/api/v1/garments/{ids['garment']}")
        assert (await r.json())["extent_m"] == before["garments"][0]["extent_m"]
        fabrics = (await (await client.get("/api/v1/fabrics")).json())["fabrics"]
        assert "old-twill" in {f["id"] for f in fabrics}
        # The old level set is kept and its files stay served (clients holding its URLs keep
        # working); its key names the old pipeline (lod-1), so the manifest asked for today is
        # today's pipeline's (lod-2 added the AR level as USDZ): a new key, built once.
        assert await client.app[SERVICES].lod_records.get_set(ids["key"]) is not None
        r = await client.get(ids["level"])
        assert r.status == 200
        r = await client.get(f"/api/v1/twins/{ids['twin']}/lod/manifest.json")
        assert r.status == 202 and (await r.json())["key"] != ids["key"], await r.text()
        # Migrated once: a second open finds nothing older than today.
        assert await schema.migrate(client.app[SERVICES].store) == {}
        # And a revocation withdraws the old files too.
        r = await client.patch(f"/api/v1/twins/{ids['twin']}/license", json={"revoked": True})
        assert r.status == 200
        assert (await client.get(ids["level"])).status == 404
    finally:
        await client.close()


def test_upgrades_leave_todays_and_newer_records_as_they_are():
    today = schema.stamped("looks", {"id": "look_1", "warnings": []})
    assert schema.upgraded("looks", today) is today
    newer = {"id": "look_2", "schema_version": schema.CURRENT["looks"] + 1, "shape": "new"}
    assert schema.upgraded("looks", newer) is newer
    old = {"id": "look_3", "twin": "twn_a"}
    up = schema.upgraded("looks", old)
    assert up == {
        "id": "look_3",
        "twin": "twn_a",
        "warnings": [],
        "sizes": [],
        "layer_order": "category",
        "schema_version": 1,
    }
    assert old == {"id": "look_3", "twin": "twn_a"}  # the input is not changed


def test_the_job_records_version_is_the_schemas():
    assert schema.CURRENT["jobs"] == JOB_SCHEMA_VERSION


async def test_a_migration_rereads_a_record_changed_under_it(tmp_path):
    store = EmbeddedStore(tmp_path)
    await store.put_record("twins", "t1", {"id": "t1", "license": {"id": "l"}, "name": "A"})
    real_replace = store.replace_record
    raced = []

    async def write_first(kind, record_id, record, revision):
        if not raced:  # another writer changes the record between the read and the write
            raced.append(True)
            await store.put_record(kind, record_id, {"id": "t1", "license": {}, "name": "B"})
        return await real_replace(kind, record_id, record, revision)

    store.replace_record = write_first
    try:
        assert await schema.migrate(store) == {"twins": 1}
    finally:
        del store.replace_record
    got = await store.get_record("twins", "t1")
    assert got["name"] == "B" and got["schema_version"] == 1  # the change kept, then upgraded
