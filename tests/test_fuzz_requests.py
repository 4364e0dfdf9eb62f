"""Fuzzing request JSON: the strict parser every JSON body and metadata part goes through
(`server.validate.parse_json`), the checks handlers run on what it returns (measurements,
owner/license/consent, poses, joint maps, ids), the tracker's `poses.json` documents, and the
HTTP edge itself (`server.requests`: JSON bodies and multipart uploads, through a real
aiohttp server on a loopback port and the project's error middleware).

Seeds are the shipped sample twins' records (assets/twins: a real create request), a pose
and a `poses.json` built from BlazePose's landmarks of the squat video, and a garment upload
form around a real MakeHuman OBJ. Mutations are JSON-field edits (hostile values, NaN and
Infinity tokens, 100,000-deep nesting, integers past any float), text edits (other
encodings, BOMs, lone surrogates, cut documents) and, for HTTP, header and multipart edits.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from spatialtwin.body.measurements import Measurements
from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.rights.license import Rights
from spatialtwin.server.keys import STORE
from spatialtwin.server.middleware import json_errors
from spatialtwin.server.requests import json_body, upload_form
from spatialtwin.server.validate import joint_map, optional_id, parse_json, pose_json
from spatialtwin.services.looks import parse_pose
from spatialtwin.store.embedded import EmbeddedStore
from spatialtwin.tracking.poses_json import read_poses_document
from tests.conftest import REPO, shared
from tests.fuzz_strategies import (
    STATS,
    FuzzInput,
    dump_hostile_json,
    exercise,
    fuzz_settings,
    fuzz_summary,  # noqa: F401  (the per-parser summary at the end of the run)
    json_paths,
    mutated_bytes,
    mutated_json,
    obj_slice,
)

REQUEST_VOCABULARY = (
    "measurements",
    "owner",
    "license",
    "consent",
    "pose",
    "joints",
    "root",
    "channels",
    "valid_from",
    "valid_until",
    "fee_per_use_eur",
    "revoked",
    "height_m",
    "model",
    "agency",
    "given_at",
    "joint_map",
    "id",
    "frames",
    "t",
    "landmarks",
    "world",
)


@cache
def squat_pose() -> dict[str, Any]:
    """A pose of the canonical joints (a quarter of them bent by the squat's hip angle)."""
    world = json.loads(shared("motion", "pose_squats_3d.full.json").read_text())
    hip_y = (world[30][23][1] + world[30][24][1]) / 2
    joints = {
        name: [0.0, 0.0, round(0.1 * (k % 4) * hip_y, 6), 1.0] for k, name in enumerate(JOINT_NAMES)
    }
    return {"root": [0.0, round(-hip_y, 6), 0.0], "joints": joints}


@cache
def request_seeds() -> list[tuple[str, Any]]:
    """(kind, parsed JSON) of real requests: twin creates from the shipped sample twins, a
    look with a pose, an import's joint map, a license patch, a poses.json document."""
    out: list[tuple[str, Any]] = []
    for path in sorted((REPO / "assets" / "twins").glob("*.json")):
        record = json.loads(path.read_text())
        out.append(
            ("twin", {k: record[k] for k in ("measurements", "owner", "license", "consent")})
        )
    out.append(("look", {"twin": "twn_sample_ava", "garments": ["gm_skirt"], "pose": squat_pose()}))
    out.append(("import", {"joint_map": {"Skeleton_torso_joint_1": "hips"}, "id": "twn_cesium"}))
    out.append(("patch", {"channels": ["ecommerce"], "valid_until": "2029-01-01T00:00:00+00:00"}))
    px = json.loads(shared("motion", "pose_squats.full.json").read_text())
    world = json.loads(shared("motion", "pose_squats_3d.full.json").read_text())
    frames = [
        {
            "t": k / 5.0,
            "landmarks": [[x / 720, y / 1280, z / 720, 0.9] for x, y, z in px[k]],
            "world": [[*p, 0.9] for p in world[k]],
            "pose": squat_pose(),
        }
        for k in range(0, 65, 16)
    ]
    out.append(("poses", {"model": "full", "frames": frames}))
    return out


@cache
def seed_paths() -> list[list[tuple[Any, ...]]]:
    return [json_paths(doc) for _, doc in request_seeds()]


@st.composite
def request_text(draw: st.DrawFn) -> FuzzInput:
    """A real request's JSON, field-edited, serialised with hostile tokens, then maybe
    re-encoded or byte-mutated; the request kind is the input's name."""
    k = draw(st.integers(0, len(request_seeds()) - 1))
    kind, doc = request_seeds()[k]
    edited = draw(mutated_json(doc, seed_paths()[k], REQUEST_VOCABULARY, max_ops=3, min_ops=0))
    raw = dump_hostile_json(edited, deep_levels=draw(st.sampled_from([40, 100_000])))
    how = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32", "bom", "surrogate", "bytes"]))
    if how in ("utf-16", "utf-32"):
        raw = raw.decode().encode(how)
    elif how == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif how == "surrogate":
        raw = raw.replace(b'"', b'"\\ud800', 1)
    elif how == "bytes":
        raw = draw(mutated_bytes([raw], max_ops=2))
    return FuzzInput(raw, kind)


def _handle(kind: str, raw: bytes) -> Any:
    """What the handler of `kind` does with a body: parse strictly, then check its parts."""
    value = parse_json(raw)
    if kind == "twin":
        doc = value if isinstance(value, dict) else {}
        return Measurements.from_json(doc.get("measurements")), Rights.from_json(value)
    if kind == "look":
        pose = value.get("pose") if isinstance(value, dict) else value
        return parse_pose(pose_json(pose))
    if kind == "import":
        doc = value if isinstance(value, dict) else {}
        return joint_map(doc.get("joint_map")), optional_id(doc.get("id"))
    if kind == "poses":
        return read_poses_document(value)
    return value


@fuzz_settings(3.0)
@given(request_text())
def test_request_json_is_parsed_strictly_and_checked_or_refused(item: FuzzInput) -> None:
    exercise(f"request JSON ({item.name})", lambda: _handle(item.name, item.data), len(item))


# ---------------------------------------------------------------- the HTTP edge


async def _echo_json(request: web.Request) -> web.Response:
    value = await json_body(request)
    return web.json_response({"type": type(value).__name__})


async def _echo_upload(request: web.Request) -> web.Response:
    async with upload_form(request, 1 << 20) as form:
        data = await form.file.read()
        return web.json_response({"bytes": len(data), "metadata": form.metadata})


class EdgeServer:
    """The project's request readers and error middleware on a real loopback server, run on
    its own event loop in a thread so hypothesis can drive it with plain sockets."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        app = web.Application(middlewares=[json_errors], client_max_size=4 << 20)
        app[STORE] = EmbeddedStore(data_dir)
        app.router.add_post("/json", _echo_json)
        app.router.add_post("/upload", _echo_upload)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def post(
        self, path: str, body: bytes | list[bytes], headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """(status, body) of one POST; a list body is sent chunked, piece by piece."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            chunked = isinstance(body, list)
            if chunked:
                headers = {k: v for k, v in headers.items() if k != "Transfer-Encoding"}
            conn.request("POST", path, body=body, headers=headers, encode_chunked=chunked)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    server = EdgeServer(tmp_path_factory.mktemp("edge-store"))
    yield server
    server.close()


def _answer(parser: str, status: int, body: bytes) -> int:
    """The HTTP contract: no 5xx, and every 4xx is the project's JSON error body (counted
    by status and code beside the fuzz counts)."""
    assert status < 500, f"{status}: {body[:300]!r}"
    code = ""
    if status >= 400:
        error = json.loads(body)["error"]
        assert error["code"] and error["message"]
        code = f" {error['code']}"
    STATS[parser][f"http {status}{code}"] += 1
    return status


@fuzz_settings(1.0)
@given(item=request_text())
def test_json_bodies_over_http_are_answered_2xx_or_a_json_4xx(
    edge: EdgeServer, item: FuzzInput
) -> None:
    headers = {"Content-Type": "application/json"}
    parser = "server.requests.json_body (HTTP)"
    exercise(parser, lambda: _answer(parser, *edge.post("/json", item.data, headers)), len(item))


BOUNDARY = "spatialtwinFuzzBoundary"


@cache
def upload_seed() -> bytes:
    obj = obj_slice(shared("garments", "female_sportsuit01.obj").read_bytes(), 60)
    meta = json.dumps({"sku": "SS-01", "name": "Sport suit", "units": "dm"}).encode()
    parts = [
        (b'form-data; name="metadata"', b"application/json", meta),
        (b'form-data; name="file"; filename="suit.obj"', b"text/plain", obj),
    ]
    out = b""
    for disposition, ctype, data in parts:
        out += b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: " + disposition
        out += b"\r\nContent-Type: " + ctype + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY.encode() + b"--\r\n"


@st.composite
def upload_body(draw: st.DrawFn) -> FuzzInput:
    body = draw(mutated_bytes([upload_seed()], hot=400, max_ops=3))
    ctype = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={BOUNDARY}",
                "multipart/form-data; boundary=other",
                "multipart/form-data",
                "application/json",
            ]
        )
    )
    return FuzzInput(body, ctype)


@fuzz_settings(1.0)
@given(item=upload_body())
def test_multipart_uploads_over_http_are_answered_2xx_or_a_json_4xx(
    edge: EdgeServer, item: FuzzInput
) -> None:
    headers = {"Content-Type": item.name}
    parser = "server.requests.upload_form (HTTP)"
    exercise(parser, lambda: _answer(parser, *edge.post("/upload", item.data, headers)), len(item))
