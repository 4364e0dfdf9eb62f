"""Attack a running SpatialTwin server as an outsider would, one hostile-input class at a time.

    .venv/bin/python tests/tools/hostile_probe.py            # starts its own server (no seed)
    .venv/bin/python tests/tools/hostile_probe.py --url http://127.0.0.1:8080

Each class sends one bad input and says what a correct server answers (a set of statuses).
The report counts answers of 500, error bodies that are not strict JSON (no NaN), answers
outside the expected set, and requests that got no answer in time; the exit status is 1 when
any class answered 500. Real data comes from ../shared/data (a rigged GLB, a MakeHuman OBJ).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
RIGHTS = {
    "owner": {"model": "Probe Person", "agency": "Probe Agency"},
    "license": {"channels": ["ecommerce", "mirror"], "valid_from": "2026-01-01T00:00:00+00:00"},
    "consent": {"given_at": "2026-01-01T00:00:00+00:00"},
}
MEASUREMENTS = {
    "height_m": 1.76,
    "chest_m": 0.92,
    "waist_m": 0.74,
    "hips_m": 0.98,
    "inseam_m": 0.81,
    "shoulder_m": 0.40,
}
FABRIC = {
    "construction": "woven",
    "areal_density_gsm": 180.0,
    "thickness_mm": 0.4,
    "stretch_warp_n_m": 3000.0,
    "stretch_weft_n_m": 2000.0,
    "shear_n_m": 40.0,
    "bending_n_m": 1e-5,
    "friction": 0.4,
}
TIMEOUT_S = 20.0


@dataclass
class Answer:
    status: int | None  # None: no answer within the timeout
    content_type: str
    body: bytes
    seconds: float


def strict_json(body: bytes) -> object | None:
    """The body as JSON, or None when it is not strict JSON (NaN/Infinity count as not)."""

    def refuse(token: str) -> None:
        raise ValueError(token)

    try:
        return json.loads(body, parse_constant=refuse)
    except ValueError:
        return None


class Probe:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base.rstrip("/")
        self.session = session
        self.twin_a = ""
        self.twin_b = ""

    async def send(
        self, method: str, path: str, *, data: bytes | aiohttp.FormData | None = None, **kw: object
    ) -> Answer:
        start = time.perf_counter()
        try:
            async with self.session.request(
                method, self.base + path, data=data, timeout=aiohttp.ClientTimeout(TIMEOUT_S), **kw
            ) as r:
                body = await r.read()
                return Answer(r.status, r.content_type, body, time.perf_counter() - start)
        except (TimeoutError, aiohttp.ClientError):
            return Answer(None, "", b"", time.perf_counter() - start)

    async def json_raw(self, method: str, path: str, text: str | bytes) -> Answer:
        data = text.encode() if isinstance(text, str) else text
        return await self.send(
            method, path, data=data, headers={"Content-Type": "application/json"}
        )

    async def raw(self, request: bytes, body_after_s: float | None = None) -> Answer:
        """Send raw bytes on a fresh connection; read the answer (headers and body)."""
        url = urlsplit(self.base)
        start = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
        except OSError:
            return Answer(None, "", b"", 0.0)
        try:
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S / 2)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            length = int(headers.get("content-length", "0") or 0)
            body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT_S / 2)
            ctype = headers.get("content-type", "").split(";")[0]
            return Answer(status, ctype, body, time.perf_counter() - start)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            return Answer(None, "", b"", time.perf_counter() - start)
        finally:
            writer.close()

    def form(self, metadata: str, file_bytes: bytes, filename: str) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field(
            "file", file_bytes, filename=filename, content_type="application/octet-stream"
        )
        form.add_field("metadata", metadata, content_type="application/json")
        return form

    async def import_twin(self, name: str) -> str:
        glb = (DATA / "bodies" / "CesiumMan.glb").read_bytes()
        meta = json.dumps({"name": name, **RIGHTS})
        a = await self.send("POST", "/api/v1/twins", data=self.form(meta, glb, "CesiumMan.glb"))
        if a.status != 201:
            raise SystemExit(f"could not create a probe twin: {a.status} {a.body[:300]!r}")
        return json.loads(a.body)["id"]


Case = Callable[[Probe], Awaitable[Answer]]
CASES: list[tuple[str, set[int], Case]] = []


def case(name: str, expect: set[int]) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES.append((name, expect, fn))
        return fn

    return register


def license_path(p: Probe, twin: str) -> str:
    return f"/api/v1/twins/{twin}/license"


def twin_json(**over: object) -> str:
    return json.dumps({"measurements": MEASUREMENTS, **RIGHTS, **over})


BAD = {400, 409, 413, 415, 422}

# --- numbers ------------------------------------------------------------------------------


@case("license fee NaN (PATCH)", {400, 422})
async def _fee_nan(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_a), '{"fee_per_use_eur": NaN}')


@case("license fee Infinity (PATCH)", {400, 422})
async def _fee_inf(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_a), '{"fee_per_use_eur": Infinity}')


@case("license fee 1e999, beyond a float (PATCH)", {400, 422})
async def _fee_overflow(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_a), '{"fee_per_use_eur": 1e999}')


@case("license fee a 400-digit integer (PATCH)", {400, 422})
async def _fee_bigint(p: Probe) -> Answer:
    return await p.json_raw(
        "PATCH", license_path(p, p.twin_a), '{"fee_per_use_eur": 1' + "0" * 400 + "}"
    )


@case("a 5000-digit integer (PATCH)", {400, 422})
async def _int_digits(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_a), '{"terms": ' + "9" * 5000 + "}")


@case("license fee NaN at create (POST twin)", {400, 422})
async def _create_fee_nan(p: Probe) -> Answer:
    text = twin_json().replace('"channels"', '"fee_per_use_eur": NaN, "channels"')
    return await p.json_raw("POST", "/api/v1/twins", text)


@case("fabric stiffness 'NaN' as a string: error body must not echo NaN", {400, 422})
async def _fabric_nan_string(p: Probe) -> Answer:
    body: dict[str, object] = {"id": "probe-nan", "name": "x", **FABRIC}
    body["bending_n_m"] = "NaN"
    return await p.json_raw("POST", "/api/v1/fabrics", json.dumps(body))


# --- booleans -----------------------------------------------------------------------------


@case("revoked: 0 after revocation (PATCH)", {400, 409})
async def _revoked_zero(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_b), '{"revoked": 0}')


@case("revoked: null after revocation (PATCH)", {400, 409})
async def _revoked_null(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_b), '{"revoked": null}')


@case('revoked: "false" (PATCH)', {400, 409})
async def _revoked_string(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_b), '{"revoked": "false"}')


@case('revoked: "no" at create (POST twin)', {400, 422})
async def _create_revoked_string(p: Probe) -> Answer:
    text = twin_json().replace('"channels"', '"revoked": "no", "channels"')
    return await p.json_raw("POST", "/api/v1/twins", text)


@case("revoked twin still refused after the above (GET body.glb)", {410})
async def _still_revoked(p: Probe) -> Answer:
    return await p.send("GET", f"/api/v1/twins/{p.twin_b}/body.glb")


# --- wrong JSON types ---------------------------------------------------------------------


@case("license a string (POST twin)", {400, 422})
async def _license_string(p: Probe) -> Answer:
    return await p.json_raw("POST", "/api/v1/twins", twin_json(license="all channels"))


@case("license a list (POST twin)", {400, 422})
async def _license_list(p: Probe) -> Answer:
    return await p.json_raw("POST", "/api/v1/twins", twin_json(license=[1, 2]))


@case("consent a string (POST twin)", {400, 422})
async def _consent_string(p: Probe) -> Answer:
    return await p.json_raw("POST", "/api/v1/twins", twin_json(consent="yes"))


@case("consent a list (POST twin)", {400, 422})
async def _consent_list(p: Probe) -> Answer:
    return await p.json_raw("POST", "/api/v1/twins", twin_json(consent=[["given_by", "x"]]))


@case("revoked_at an object (POST twin)", {400, 422})
async def _revoked_at_object(p: Probe) -> Answer:
    lic = {**RIGHTS["license"], "revoked_at": {"when": 1}}
    return await p.json_raw("POST", "/api/v1/twins", twin_json(license=lic))


@case("twin id with a path traversal (POST twin)", {400, 422})
async def _twin_id_traversal(p: Probe) -> Answer:
    return await p.json_raw("POST", "/api/v1/twins", twin_json(id="../../etc/x"))


@case("twin id an object (POST twin)", {400, 422})
async def _twin_id_object(p: Probe) -> Answer:
    return await p.json_raw("POST", "/api/v1/twins", twin_json(id={"a": 1}))


@case("twin name an object (POST twin)", {400, 422})
async def _twin_name_object(p: Probe) -> Answer:
    return await p.json_raw("POST", "/api/v1/twins", twin_json(name={"first": "x"}))


@case("request body a JSON list (PATCH license)", {400, 422})
async def _patch_list(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_a), "[1, 2]")


@case("pose root an object (GET body.glb)", {400, 422})
async def _pose_root_object(p: Probe) -> Answer:
    pose = quote(json.dumps({"root": {"x": 1}}))
    return await p.send("GET", f"/api/v1/twins/{p.twin_a}/body.glb?pose={pose}")


@case("pose root a string (GET body.glb)", {400, 422})
async def _pose_root_string(p: Probe) -> Answer:
    pose = quote(json.dumps({"root": "up"}))
    return await p.send("GET", f"/api/v1/twins/{p.twin_a}/body.glb?pose={pose}")


@case("pose joint a ragged list (GET body.glb)", {400, 422})
async def _pose_joint_ragged(p: Probe) -> Answer:
    pose = quote(json.dumps({"joints": {"hips": [[1], [2, 3]]}}))
    return await p.send("GET", f"/api/v1/twins/{p.twin_a}/body.glb?pose={pose}")


@case("pose with NaN (GET body.glb)", {400, 422})
async def _pose_nan(p: Probe) -> Answer:
    return await p.send(
        "GET", f"/api/v1/twins/{p.twin_a}/body.glb?pose=" + quote('{"root": [NaN, 0, 0]}')
    )


@case("look pose root an object (POST look)", {400, 422})
async def _look_pose_root(p: Probe) -> Answer:
    body = {"twin": p.twin_a, "garments": ["gar_x"], "pose": {"root": {"x": 1}}}
    return await p.json_raw("POST", "/api/v1/looks", json.dumps(body))


@case("look layer_order an object (POST look)", {400, 422})
async def _look_layer_order(p: Probe) -> Answer:
    body = {"twin": p.twin_a, "garments": ["gar_x"], "layer_order": {"a": 1}}
    return await p.json_raw("POST", "/api/v1/looks", json.dumps(body))


@case("JSON nested 100 000 deep (PATCH license)", {400, 413, 422})
async def _deep(p: Probe) -> Answer:
    return await p.json_raw(
        "PATCH", license_path(p, p.twin_a), '{"terms": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )


@case("JSON body not UTF-8 (PATCH license)", {400, 422})
async def _not_utf8(p: Probe) -> Answer:
    return await p.json_raw("PATCH", license_path(p, p.twin_a), b'{"terms": "caf\xe9"}')


# --- multipart ----------------------------------------------------------------------------


@case("multipart without a boundary (POST twin)", {400})
async def _no_boundary(p: Probe) -> Answer:
    return await p.send(
        "POST",
        "/api/v1/twins",
        data=b"--x\r\n\r\n",
        headers={"Content-Type": "multipart/form-data"},
    )


@case("multipart with an unterminated part (POST twin)", {400})
async def _unterminated(p: Probe) -> Answer:
    body = (
        b'--BOUND\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"a": 1}\r\n'
        b'--BOUND\r\nContent-Disposition: form-data; name="file"; filename="x.glb"\r\n\r\nglTF'
    )
    return await p.send(
        "POST",
        "/api/v1/twins",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=BOUND"},
    )


@case("multipart garbage after the boundary (POST garment)", {400})
async def _multipart_garbage(p: Probe) -> Answer:
    body = b"--BOUND\r\nnot a header line\r\n\r\n" + os.urandom(64) + b"\r\n--BOUND--\r\n"
    return await p.send(
        "POST",
        "/api/v1/garments",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=BOUND"},
    )


@case("import metadata license a string (POST twin)", {400, 422})
async def _meta_license_string(p: Probe) -> Answer:
    meta = json.dumps({**RIGHTS, "license": "everything"})
    return await p.send("POST", "/api/v1/twins", data=p.form(meta, b"glTF", "x.glb"))


@case("import metadata with NaN fee (POST twin)", {400, 422})
async def _meta_nan(p: Probe) -> Answer:
    meta = json.dumps(RIGHTS).replace('"channels"', '"fee_per_use_eur": NaN, "channels"')
    return await p.send("POST", "/api/v1/twins", data=p.form(meta, b"glTF", "x.glb"))


@case("import joint_map a list (POST twin)", {400, 422})
async def _joint_map_list(p: Probe) -> Answer:
    meta = json.dumps({**RIGHTS, "joint_map": ["hips", "spine"]})
    glb = (DATA / "bodies" / "CesiumMan.glb").read_bytes()
    return await p.send("POST", "/api/v1/twins", data=p.form(meta, glb, "CesiumMan.glb"))


@case("import joint_map values not strings (POST twin)", {400, 422})
async def _joint_map_values(p: Probe) -> Answer:
    meta = json.dumps({**RIGHTS, "joint_map": {"Skeleton_torso_joint_1": {"a": 1}}})
    glb = (DATA / "bodies" / "CesiumMan.glb").read_bytes()
    return await p.send("POST", "/api/v1/twins", data=p.form(meta, glb, "CesiumMan.glb"))


@case("import units an object (POST twin)", {400, 422})
async def _units_object(p: Probe) -> Answer:
    meta = json.dumps({**RIGHTS, "units": {"m": 1}})
    return await p.send("POST", "/api/v1/twins", data=p.form(meta, b"glTF", "x.glb"))


@case("garment OBJ with a Latin-1 byte in a comment (POST garment) is accepted", {201, 202})
async def _obj_latin1(p: Probe) -> Answer:
    obj = b"# tissu fran\xe7ais\n" + (DATA / "garments" / "female_casualsuit01.obj").read_bytes()
    meta = json.dumps({"sku": "PROBE-1", "category": "outfit", "fabric": "cotton-jersey"})
    return await p.send("POST", "/api/v1/garments", data=p.form(meta, obj, "suit.obj"))


# --- sizes --------------------------------------------------------------------------------


@case("JSON body declaring 300 MB, answered before it is sent (POST look)", {413})
async def _declared_huge_json(p: Probe) -> Answer:
    head = (
        "POST /api/v1/looks HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
        "Content-Length: 300000000\r\nConnection: close\r\n\r\n{"
    )
    return await p.raw(head.encode())


@case("upload declaring 2 GB, answered before it is sent (POST garment)", {413})
async def _declared_huge_upload(p: Probe) -> Answer:
    head = (
        "POST /api/v1/garments HTTP/1.1\r\nHost: probe\r\n"
        "Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 2000000000\r\n"
        "Connection: close\r\n\r\n--B\r\n"
    )
    return await p.raw(head.encode())


@case("JSON body of 8 MB (POST fabric)", {413})
async def _json_8mb(p: Probe) -> Answer:
    return await p.json_raw(
        "POST", "/api/v1/fabrics", json.dumps({"id": "big", "name": "x" * 8_000_000})
    )


@case("chunked JSON body of 8 MB without a length (POST fabric)", {413})
async def _chunked_8mb(p: Probe) -> Answer:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"id": "big", "name": "'
        for _ in range(8):
            yield b"x" * 1_000_000
        yield b'"}'

    return await p.send(
        "POST",
        "/api/v1/fabrics",
        data=chunks(),
        headers={"Content-Type": "application/json"},  # type: ignore[arg-type]
    )


# --- the HTTP layer -----------------------------------------------------------------------


@case("unknown route", {404})
async def _unknown(p: Probe) -> Answer:
    return await p.send("GET", "/api/v1/nothing-here")


@case("method not allowed", {405})
async def _method(p: Probe) -> Answer:
    return await p.send("DELETE", "/api/v1/twins")


@case("malformed request line", {400})
async def _bad_request_line(p: Probe) -> Answer:
    return await p.raw(b"THIS IS NOT HTTP\r\n\r\n")


@case("a 20 kB header", {400, 431})
async def _long_header(p: Probe) -> Answer:
    return await p.raw(b"GET /healthz HTTP/1.1\r\nHost: p\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")


@case("Content-Length not a number", {400})
async def _bad_length(p: Probe) -> Answer:
    return await p.raw(b"POST /api/v1/looks HTTP/1.1\r\nHost: p\r\nContent-Length: abc\r\n\r\n")


@case("static path traversal", {400, 403, 404})
async def _static_traversal(p: Probe) -> Answer:
    return await p.raw(
        b"GET /web/../../../etc/passwd HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
    )


@case("invalid percent-encoding in a twin id", {400, 404})
async def _bad_percent(p: Probe) -> Answer:
    return await p.send("GET", "/api/v1/twins/%ff%fe")


# --- create-only --------------------------------------------------------------------------


@case("two creates of one fabric id at once: one 201, one 409", {409})
async def _fabric_twice(p: Probe) -> Answer:
    body = json.dumps({"id": "probe-twice", "name": "Probe twill", **FABRIC})
    first, second = await asyncio.gather(
        p.json_raw("POST", "/api/v1/fabrics", body), p.json_raw("POST", "/api/v1/fabrics", body)
    )
    if {first.status, second.status} == {201, 409}:
        return first if first.status == 409 else second
    return second if first.status == 201 else first


@case("GET /api/v1/twins after all of the above is strict JSON", {200})
async def _list_is_json(p: Probe) -> Answer:
    a = await p.send("GET", "/api/v1/twins")
    if strict_json(a.body) is None:
        return Answer(599, a.content_type, a.body, a.seconds)  # 599: not JSON
    return a


async def run_probe(base: str) -> int:
    async with aiohttp.ClientSession() as session:
        p = Probe(base, session)
        p.twin_a = await p.import_twin("Probe A")
        p.twin_b = await p.import_twin("Probe B")
        r = await p.json_raw("PATCH", license_path(p, p.twin_b), '{"revoked": true}')
        assert r.status == 200, r.body
        counts = {"500": 0, "not_json": 0, "unexpected": 0, "no_answer": 0}
        print(f"{'class':<76} {'status':>6} {'s':>6}  verdict")
        for name, expect, fn in CASES:
            a = await fn(p)
            verdict = []
            if a.status is None:
                counts["no_answer"] += 1
                verdict.append("NO ANSWER")
            elif a.status >= 500:
                counts["500"] += a.status == 500
                verdict.append("500" if a.status == 500 else "NOT JSON")
            is_error = a.status is not None and a.status >= 400 and a.status != 599
            if is_error and (a.content_type != "application/json" or strict_json(a.body) is None):
                counts["not_json"] += 1
                verdict.append(f"not JSON ({a.content_type or '?'})")
            if a.status not in expect:
                counts["unexpected"] += 1
                verdict.append(f"expected {sorted(expect)}")
            print(f"{name:<76} {a.status!s:>6} {a.seconds:6.2f}  {'; '.join(verdict) or 'ok'}")
        print(
            f"\n{len(CASES)} classes: {counts['500']} answered 500, {counts['not_json']} error "
            f"bodies not JSON, {counts['unexpected']} outside the expected statuses, "
            f"{counts['no_answer']} without an answer in {TIMEOUT_S:.0f} s"
        )
        return 1 if counts["500"] else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="probe this server instead of starting one")
    args = parser.parse_args()
    if args.url:
        return asyncio.run(run_probe(args.url))
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spatialtwin",
                "serve",
                "--no-seed",
                "--port",
                str(port),
                "--data",
                data,
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            return asyncio.run(run_probe(base))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
