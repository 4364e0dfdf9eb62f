"""Drapes say whether they settled and why they stopped; a look that misses a quality threshold
is reported as such: warnings on the look record and beside the job's `done`, and
`spatialtwin drape` prints them and exits 3."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from spatialtwin.body.parametric import Measurements
from spatialtwin.cli import main
from spatialtwin.cloth.collider import BodyCollider, surface_frames
from spatialtwin.cloth.drape import SETTLE_DEFAULTS, SettleOptions, drape_garment
from spatialtwin.cloth.model import build_cloth_model
from spatialtwin.cloth.solver import edge_stretch
from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.placement import place_garment
from spatialtwin.garment.quality import QUALITY_DEFAULTS, drape_warnings
from spatialtwin.gltf.twin_glb import twin_to_glb
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import TWINS
from spatialtwin.services.ingest import prepare_garment
from tests.conftest import generated_twin

REPO = Path(__file__).resolve().parents[1]
AVA = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
SKIRT = REPO / "assets" / "garments" / "skirt_a_line.glb"
SKIRT_META = json.loads(SKIRT.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def ava():
    return generated_twin(Measurements.from_json(AVA["measurements"]))


@pytest.fixture(scope="module")
def placed_skirt(ava):
    prepared = prepare_garment(SKIRT.read_bytes(), SKIRT.name, "skirt", "m")
    fabric = preset(SKIRT_META["fabric"]).to_solver()
    return place_garment(prepared.simulation, prepared.pieces, ava, fabric), fabric


def drape(placed_skirt, ava, settle: SettleOptions = SETTLE_DEFAULTS):
    placed, fabric = placed_skirt
    body_v, body_f = ava.welded()
    return drape_garment(
        placed.positions_m,
        placed.faces,
        fabric,
        body_v,
        body_f,
        pinned=placed.pinned,
        rest_positions_m=placed.rest_positions_m,
        settle=settle,
    )


@pytest.fixture(scope="module")
def settled(placed_skirt, ava):
    return drape(placed_skirt, ava)


def test_skirt_settles_with_little_energy_left(settled, placed_skirt):
    r = settled
    assert r.settled and r.stop_reason == "settled"
    assert SETTLE_DEFAULTS.min_frames <= r.frames < SETTLE_DEFAULTS.max_frames
    assert 0.0 < r.residual_ke_j_per_vertex < SETTLE_DEFAULTS.settle_ke_j_per_vertex
    assert r.max_speed_m_s < 0.05
    assert drape_warnings(r, "skirt") == []  # the sample skirt on Ava meets every threshold


def test_frame_limit_stops_a_swinging_skirt_and_says_so(placed_skirt, ava):
    r = drape(placed_skirt, ava, SettleOptions(max_frames=12, min_frames=5))
    assert (r.settled, r.stop_reason, r.frames) == (False, "frame_limit", 12)
    assert r.residual_ke_j_per_vertex > 10 * SETTLE_DEFAULTS.settle_ke_j_per_vertex
    warning = drape_warnings(r, "skirt")[0]
    assert warning.code == "not_settled"
    assert warning.detail["stop_reason"] == "frame_limit" and warning.detail["frames"] == 12


def test_time_limit_stops_the_drape_after_one_frame(placed_skirt, ava):
    r = drape(placed_skirt, ava, SettleOptions(time_limit_s=1e-6))
    assert (r.settled, r.stop_reason, r.frames) == (False, "time_limit", 1)
    assert r.elapsed_s > 0 and [w.code for w in drape_warnings(r, "skirt")] == ["not_settled"]


def test_bad_settle_options_are_refused():
    for bad in ({"max_frames": 0}, {"settle_ke_j_per_vertex": 0.0}, {"time_limit_s": -1.0}):
        with pytest.raises(SpatialTwinError) as err:
            SettleOptions(**bad)
        assert err.value.code == "bad_drape_request"


def test_cloth_pushed_into_the_body_is_reported(settled, ava):
    """Move real cloth into the body along its normals: 2 % of the vertices by 5 mm misses the
    0.5 %-deeper-than-1-mm limit, one vertex 2 cm deep misses the 1 cm limit."""
    body_v, body_f = ava.welded()
    body = BodyCollider(body_v, body_f)
    x = settled.positions_m.copy()
    q, n, signed, _ = surface_frames(x, body, 0.1)
    nearest = np.argsort(signed)[: int(0.02 * len(x))]  # the waistband, resting on the hips
    x[nearest] = q[nearest] - 0.005 * n[nearest]
    clearance = body.signed_distance(x, 0.1)
    assert np.sum(clearance < -0.004) >= len(nearest) * 0.9  # they really are inside
    shallow = dataclasses.replace(settled, body_clearance_m=clearance)
    assert [w.code for w in drape_warnings(shallow, "skirt")] == ["inside_body"]
    x[nearest[0]] = q[nearest[0]] - 0.02 * n[nearest[0]]
    deep = dataclasses.replace(settled, body_clearance_m=body.signed_distance(x, 0.1))
    codes = [w.code for w in drape_warnings(deep, "skirt")]
    assert codes == ["inside_body", "deep_inside_body"]
    detail = drape_warnings(deep, "skirt")[1].detail
    assert detail["deepest_m"] == pytest.approx(0.02, abs=0.003)
    assert detail["limit"] == QUALITY_DEFAULTS.deepest_m


def test_stretched_cloth_is_reported(settled, placed_skirt):
    """The settled skirt grown 3 % about its centre: mean stretch over 2 %; one edge pulled to
    twice its rest length: max stretch over 15 %."""
    placed, fabric = placed_skirt
    model = build_cloth_model(
        placed.positions_m, placed.faces, fabric, rest_positions_m=placed.rest_positions_m
    )
    x = settled.positions_m.copy()
    centre = x.mean(axis=0)
    grown = centre + (x - centre) * 1.03
    stretch = edge_stretch(model, grown)
    wide = dataclasses.replace(
        settled, mean_stretch=float(stretch.mean()), max_stretch=float(stretch.max())
    )
    assert wide.mean_stretch > 0.02
    assert "mean_stretch" in [w.code for w in drape_warnings(wide, "skirt")]
    a, b = model.mesh_edges[0]
    pulled = x.copy()
    pulled[b] = x[a] + 2.0 * (x[b] - x[a]) * model.mesh_edge_rest_m[0] / np.linalg.norm(x[b] - x[a])
    stretch = edge_stretch(model, pulled)
    torn = dataclasses.replace(
        settled, mean_stretch=float(stretch.mean()), max_stretch=float(stretch.max())
    )
    warnings = drape_warnings(torn, "skirt")
    assert [w.code for w in warnings] == ["max_stretch"]
    assert warnings[0].detail["max_stretch"] == pytest.approx(1.0, abs=0.02)


# --- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ava_glb(ava, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("twin") / "ava.glb"
    path.write_bytes(twin_to_glb(ava, provenance={"twinId": AVA["id"], "owner": AVA["owner"]}))
    return path


def drape_cli(ava_glb: Path, out: Path, frames: int) -> list[str]:
    return [
        "drape",
        "--twin",
        str(ava_glb),
        "--garment",
        str(SKIRT),
        "--data",
        str(out / "no-store"),
        "--max-frames",
        str(frames),
        "-o",
        str(out / "look.glb"),
    ]


def test_cli_exits_0_for_a_settled_look(ava_glb, tmp_path, capsys):
    assert main(drape_cli(ava_glb, tmp_path, 240)) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert "(settled)" in captured.out and (tmp_path / "look.glb").is_file()


def test_cli_prints_each_warning_and_exits_3(ava_glb, tmp_path, capsys):
    assert main([*drape_cli(ava_glb, tmp_path, 8), "--json"]) == 3
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [w["code"] for w in report["warnings"]] == ["not_settled"]
    assert report["stats"]["skirt_a_line"]["stop_reason"] == "frame_limit"
    assert "spatialtwin: warning: not_settled: garment skirt_a_line" in captured.err
    assert (tmp_path / "look.glb").is_file()  # written all the same


def test_cli_help_documents_exit_status_3(capsys):
    with pytest.raises(SystemExit):
        main(["drape", "--help"])
    text = capsys.readouterr().out
    assert "exit status" in text and "3  the look was written with warnings" in text


# --- HTTP: the job is done, with warnings -----------------------------------------------------


def skirt_upload() -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field("file", SKIRT.read_bytes(), filename=SKIRT.name)
    keys = ("sku", "name", "category", "fabric", "units")
    fd.add_field("metadata", json.dumps({k: SKIRT_META[k] for k in keys}))
    return fd


async def test_job_done_with_warnings_in_job_and_look(aiohttp_client, tmp_path, ava):
    app = create_app(tmp_path / "data", seed=False, settings={"look_max_frames": 8})
    client = await aiohttp_client(app)
    twin = await app[TWINS].create_from_body("Ava", ava, Rights.from_json(AVA), {})
    r = await client.post("/api/v1/garments", data=skirt_upload())
    assert r.status == 201, await r.text()
    garment = (await r.json())["id"]
    r = await client.post("/api/v1/looks", json={"twin": twin["id"], "garments": [garment]})
    assert r.status == 202, await r.text()
    link = (await r.json())["links"]["job"]
    for _ in range(1200):
        job = await (await client.get(link)).json()
        if job["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "done", job
    assert [w["code"] for w in job["warnings"]] == ["not_settled"]
    assert job["warnings"][0]["detail"] == {
        "garment": garment,
        "stop_reason": "frame_limit",
        "frames": 8,
        "residual_ke_j_per_vertex": job["warnings"][0]["detail"]["residual_ke_j_per_vertex"],
    }
    look = await (await client.get(job["result"]["links"]["self"])).json()
    assert look["warnings"] == job["warnings"]
    assert look["stats"][garment]["stop_reason"] == "frame_limit"
    assert look["stats"][garment]["settled"] is False
    assert look["quality_thresholds"]["max_edge_stretch"] == 0.15
