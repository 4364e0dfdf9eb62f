"""Size runs: one T-shirt SKU uploaded in three sizes (S, M, L: the sample T-shirt scaled about
its own vertical axis here in the test, so three different garments, never a rescale at
draping) is listed in size order, and a look asking for the best size wears S on a small twin
and L on a large one, chosen by ease at chest, waist and hips and reported with the ease table."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import aiohttp
import numpy as np
import pygltflib
import pytest

from spatialtwin.body.parametric import Measurements
from spatialtwin.cli import main
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.look import LookGarment
from spatialtwin.garment.sizes import choose_size, size_sort_key
from spatialtwin.gltf.twin_glb import twin_to_glb
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import TWINS
from spatialtwin.services.ingest import prepare_garment
from tests.conftest import generated_twin

REPO = Path(__file__).resolve().parents[1]
AVA = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
TEE = REPO / "assets" / "garments" / "tshirt.glb"
SKU = "TEE-RUN-1"
SCALE = {"S": 0.88, "M": 1.0, "L": 1.15}  # girth factor of each size against the sample
SMALL = Measurements(1.60, 0.80, 0.64, 0.88, 0.74, 0.35)
LARGE = Measurements(1.85, 1.10, 0.96, 1.10, 0.85, 0.46)
HUGE = Measurements(1.85, 1.30, 1.15, 1.22, 0.85, 0.48)


def tee_of_size(label: str) -> bytes:
    """The sample T-shirt GLB with its girth scaled by SCALE[label] about its vertical axis."""
    gltf = pygltflib.GLTF2.load(str(TEE))
    blob = bytearray(gltf.binary_blob())
    acc = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    view = gltf.bufferViews[acc.bufferView]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    assert view.byteStride in (None, 12)
    xyz = np.frombuffer(blob, np.float32, acc.count * 3, start).reshape(-1, 3).copy()
    centre = 0.5 * (xyz.min(axis=0) + xyz.max(axis=0))
    xyz[:, [0, 2]] = (xyz[:, [0, 2]] - centre[[0, 2]]) * SCALE[label] + centre[[0, 2]]
    blob[start : start + xyz.nbytes] = xyz.astype(np.float32).tobytes()
    acc.min, acc.max = xyz.min(axis=0).tolist(), xyz.max(axis=0).tolist()
    gltf.set_binary_blob(bytes(blob))
    return b"".join(gltf.save_to_bytes())


def tee_sizes() -> list[LookGarment]:
    out = []
    for label in ("L", "S", "M"):
        prepared = prepare_garment(tee_of_size(label), f"tee_{label}.glb", "top", "m")
        meta = {"sku": SKU, "category": "top", "size_label": label}
        fabric = preset("cotton-jersey").to_solver()
        garment = LookGarment(f"tee_{label}", prepared.simulation, prepared.pieces, fabric)
        out.append(dataclasses.replace(garment, meta=meta))
    return out


@pytest.fixture(scope="module")
def twins():
    return {"small": generated_twin(SMALL), "large": generated_twin(LARGE)}


def test_size_labels_sort_smallest_first():
    labels = ["XL", "M", "3XL", "XXS", "S", "XS", "L", "XXL", "small", "W30 L30", "W28 L32"]
    assert sorted(labels, key=size_sort_key) == [
        "XXS", "XS", "S", "small", "M", "L", "XL", "XXL", "3XL", "W28 L32", "W30 L30",
    ]  # fmt: skip
    assert sorted(["40", "38", "36"], key=size_sort_key) == ["36", "38", "40"]


def test_best_size_by_ease_and_the_ease_table(twins):
    """Girths scale with the sizes; the smallest size with ≥ 2 cm chest ease and ≥ 0 waist
    ease wins: S on the small twin, L on the large one."""
    sizes = tee_sizes()
    small = choose_size(twins["small"], sizes)
    large = choose_size(twins["large"], sizes)
    assert [s.label for s in small.sizes] == ["S", "M", "L"]  # sorted, smallest first
    assert (small.chosen_label, large.chosen_label) == ("S", "L")
    assert small.warning is None and large.warning is None
    for choice in (small, large):
        s, m, big = choice.sizes
        # same body, same height: the waist sections scale exactly with the garment
        assert big.garment_girth_m["waist"] / m.garment_girth_m["waist"] == pytest.approx(
            SCALE["L"], rel=0.01
        )
        assert s.garment_girth_m["waist"] / m.garment_girth_m["waist"] == pytest.approx(
            SCALE["S"], rel=0.01
        )
        for size in choice.sizes:
            for level, ease in size.ease_m.items():
                assert ease == pytest.approx(size.garment_girth_m[level] - size.body_girth_m[level])
    # The large twin is too big for S and M at the chest, not for L.
    s, m, big = large.sizes
    assert s.short_m["chest"] > 0.1 and m.short_m["chest"] > 0.0 and big.ease_m["chest"] >= 0.02
    # The body girth at the chest is the twin's tape measurement (1.10 m), give or take the
    # height the section had to move to below the armhole.
    assert big.body_girth_m["chest"] == pytest.approx(LARGE.chest_m, abs=0.04)
    table = large.to_json()
    assert table["chosen_size"] == "L" and table["minimum_ease_m"]["chest"] == 0.02
    assert [row["size_label"] for row in table["sizes"]] == ["S", "M", "L"]


def test_no_size_fits_a_larger_twin_so_the_largest_is_worn_with_a_warning():
    choice = choose_size(generated_twin(HUGE), tee_sizes())
    assert choice.chosen_label == "L"
    assert choice.warning is not None and choice.warning.code == "no_size_fits"
    assert choice.warning.detail["short_m"]["chest"] > 0.05
    assert "chest by" in choice.warning.message


# --- over HTTP --------------------------------------------------------------------------------


def upload(label: str) -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field("file", tee_of_size(label), filename=f"tee_{label}.glb")
    meta = {"sku": SKU, "name": "Run tee", "category": "top", "fabric": "cotton-jersey"}
    fd.add_field("metadata", json.dumps({**meta, "size_label": label, "units": "m"}))
    return fd


@pytest.fixture
async def api(aiohttp_client, tmp_path, twins):
    app = create_app(tmp_path / "data", seed=False, settings={"look_max_frames": 5})
    client = await aiohttp_client(app)
    client.twin_ids = {}
    for name, body in twins.items():
        twin = await app[TWINS].create_from_body(name, body, Rights.from_json(AVA), {})
        client.twin_ids[name] = twin["id"]
    client.garment_ids = {}
    for label in ("L", "S", "M"):  # uploaded out of order
        r = await client.post("/api/v1/garments", data=upload(label))
        assert r.status == 201, await r.text()
        client.garment_ids[label] = (await r.json())["id"]
    return client


async def finished(api, link: str) -> dict:
    for _ in range(1200):
        job = await (await api.get(link)).json()
        if job["status"] in ("done", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {link} did not finish")


async def test_sizes_of_a_sku_are_listed_in_size_order(api):
    r = await api.get("/api/v1/garments", params={"sku": SKU})
    assert r.status == 200
    body = await r.json()
    assert body["sizes"] == ["S", "M", "L"]
    assert [g["id"] for g in body["garments"]] == [api.garment_ids[k] for k in ("S", "M", "L")]
    none = await (await api.get("/api/v1/garments", params={"sku": "NO-SUCH"})).json()
    assert none["garments"] == [] and none["sizes"] == []
    everything = await (await api.get("/api/v1/garments")).json()
    assert len(everything["garments"]) == 3


async def test_look_wears_the_best_size_for_each_twin(api):
    for twin, expected in (("small", "S"), ("large", "L")):
        payload = {"twin": api.twin_ids[twin], "garments": [{"sku": SKU, "size": "best"}]}
        r = await api.post("/api/v1/looks", json=payload)
        assert r.status == 202, await r.text()
        job = await finished(api, (await r.json())["links"]["job"])
        assert job["status"] == "done", job
        look = job["result"]
        assert look["garments"] == [api.garment_ids[expected]]
        (choice,) = look["sizes"]
        assert choice["sku"] == SKU and choice["chosen_size"] == expected
        assert choice["chosen"] == api.garment_ids[expected]
        assert [row["size_label"] for row in choice["sizes"]] == ["S", "M", "L"]
        chosen = next(row for row in choice["sizes"] if row["size_label"] == expected)
        assert chosen["fits"] and chosen["ease_m"]["chest"] >= 0.02
        assert "no_size_fits" not in [w["code"] for w in look["warnings"]]


BAD_SIZE_REQUESTS = [
    ({"sku": "NO-SUCH", "size": "best"}, 404, "size_run_not_found"),
    ({"sku": SKU, "size": "XXL"}, 422, "size_not_in_run"),
    ({"sku": SKU, "id": "gar_x"}, 422, "invalid_garments"),
    ({"sku": SKU, "size": "best", "colour": "red"}, 422, "invalid_garments"),
    ({"sku": 7}, 422, "invalid_garments"),
]


async def test_bad_size_requests_are_refused(api):
    for garment, status, code in BAD_SIZE_REQUESTS:
        payload = {"twin": api.twin_ids["small"], "garments": [garment]}
        r = await api.post("/api/v1/looks", json=payload)
        assert r.status == status, garment
        assert (await r.json())["error"]["code"] == code


async def test_an_explicit_size_label_is_worn_as_asked(api):
    payload = {"twin": api.twin_ids["large"], "garments": [{"sku": SKU, "size": "M"}]}
    r = await api.post("/api/v1/looks", json=payload)
    assert r.status == 202
    job = await finished(api, (await r.json())["links"]["job"])
    assert job["result"]["garments"] == [api.garment_ids["M"]] and job["result"]["sizes"] == []


# --- the command line -------------------------------------------------------------------------


def test_cli_size_best_picks_from_the_stored_run(twins, tmp_path, capsys):
    data = tmp_path / "store"
    for label in ("M", "L", "S"):
        path = tmp_path / f"tee_{label}.glb"
        path.write_bytes(tee_of_size(label))
        argv = ["garment", "add", str(path), "--category", "top", "--fabric", "cotton-jersey"]
        assert main([*argv, "--sku", SKU, "--size", label, "--data", str(data), "--json"]) == 0
    capsys.readouterr()
    twin = tmp_path / "large.glb"
    twin.write_bytes(twin_to_glb(twins["large"], provenance={"twinId": "twn_large"}))
    out = tmp_path / "look.glb"
    argv = ["drape", "--twin", str(twin), "--garment", SKU, "--size", "best", "--data", str(data)]
    code = main([*argv, "--max-frames", "5", "-o", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 3  # five frames do not settle a T-shirt: written, with that warning
    assert report["sizes"][0]["chosen_size"] == "L"
    (key,) = report["stats"]
    assert key == report["sizes"][0]["chosen"] and out.is_file()
