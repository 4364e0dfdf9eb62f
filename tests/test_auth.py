"""Tokens: Ed25519-signed JWTs named by key id, made by `spatialtwin keys` and `token issue`.

The key folder and its modes, a token's claims read back, every way a token can be bad (expired,
tampered, signed by a stranger's key, `alg: none`, an HMAC made with the public key), rotation
(old tokens verify until their key is removed, also on a ring that is already open, as a
running server's is), and the same refusals over HTTP with the error codes a client sees.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shutil
import stat
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from spatialtwin.cli import main
from spatialtwin.errors import SpatialTwinError
from spatialtwin.server.app import create_app
from spatialtwin.server.auth import KEYRING
from spatialtwin.server.keys import SERVICES
from spatialtwin.services.auth import KeyRing


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _refused(ring: KeyRing, token: str) -> str:
    with pytest.raises(SpatialTwinError) as err:
        ring.verify(token)
    assert err.value.status == 401
    return err.value.code


@pytest.fixture
def ring(tmp_path) -> KeyRing:
    made, created = KeyRing.init(tmp_path / "keys")
    assert created
    return made


def test_keys_init_makes_a_private_folder_with_one_key(tmp_path):
    ring, created = KeyRing.init(tmp_path / "keys")
    assert created
    kid = ring.active_kid()
    folder = tmp_path / "keys"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / f"{kid}.key").stat().st_mode) == 0o600
    assert (folder / f"{kid}.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    again, created_again = KeyRing.init(folder)  # a second init keeps the key
    assert not created_again and again.active_kid() == kid
    assert [k.kid for k in ring.trusted()] == [kid]


def test_a_token_carries_role_tenant_and_scopes(ring):
    token = ring.issue("brand", "acme", scopes=["looks:write", "garments:write"], ttl_s=600)
    header = json.loads(_unb64(token.split(".")[0]))
    assert header == {"alg": "EdDSA", "kid": ring.active_kid(), "typ": "JWT"}
    claims = json.loads(_unb64(token.split(".")[1]))
    assert claims["exp"] - claims["iat"] == 600
    caller = ring.verify(token)
    assert (caller.role, caller.tenant) == ("brand", "acme")
    assert caller.scopes == ("garments:write", "looks:write")
    assert caller.key_id == ring.active_kid()
    assert caller.has_scope("looks:write") and not caller.has_scope("twins:write")


def test_roles_that_need_a_tenant_are_refused_without_one(ring):
    for role in ("agency", "model", "brand", "device"):
        with pytest.raises(SpatialTwinError) as err:
            ring.issue(role, None)
        assert err.value.code == "invalid_tenant" and err.value.status == 422
    with pytest.raises(SpatialTwinError) as err:
        ring.issue("shopper", None)  # a shopper is anonymous: no token
    assert err.value.code == "invalid_role"
    with pytest.raises(SpatialTwinError) as err:
        ring.issue("admin", None, ttl_s=400 * 86400)
    assert err.value.code == "invalid_ttl"


def test_an_expired_token_is_refused(ring):
    issued_s = time.time() - 3600
    token = ring.issue("admin", None, ttl_s=60, now_s=issued_s)  # expired 59 minutes ago
    assert _refused(ring, token) == "token_expired"
    # within the 30 s of allowed clock skew it still passes
    fresh = ring.issue("admin", None, ttl_s=60, now_s=time.time() - 75)
    assert ring.verify(fresh).role == "admin"


def test_tampered_foreign_and_unsigned_tokens_are_refused(ring, tmp_path):
    token = ring.issue("brand", "acme")
    head, body, sig = token.split(".")
    claims = json.loads(_unb64(body))
    claims["role"] = "admin"
    assert _refused(ring, f"{head}.{_b64(json.dumps(claims).encode())}.{sig}") == "token_invalid"
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert _refused(ring, f"{head}.{body}.{flipped}") == "token_invalid"
    # a stranger's key, even naming our key id
    stranger, _ = KeyRing.init(tmp_path / "stranger")
    forged = stranger.issue("admin", None)
    fhead = json.loads(_unb64(forged.split(".")[0]))
    fhead["kid"] = ring.active_kid()
    forged = ".".join([_b64(json.dumps(fhead).encode()), *forged.split(".")[1:]])
    assert _refused(ring, forged) == "token_invalid"
    # alg none, and HS256 with the public key as the secret
    none_head = _b64(json.dumps({"alg": "none", "kid": ring.active_kid()}).encode())
    assert _refused(ring, f"{none_head}.{body}.") == "token_invalid"
    public = (ring.folder / f"{ring.active_kid()}.pub").read_bytes()
    hs_head = _b64(json.dumps({"alg": "HS256", "kid": ring.active_kid()}).encode())
    mac = hmac.new(public, f"{hs_head}.{body}".encode(), hashlib.sha256).digest()
    assert _refused(ring, f"{hs_head}.{body}.{_b64(mac)}") == "token_invalid"
    for junk in ("", "not-a-token", "a.b.c", "x" * 5000):
        assert _refused(ring, junk) == "token_invalid"


def test_rotation_keeps_old_tokens_until_their_key_is_removed(ring):
    running = KeyRing(ring.folder)  # a server's ring, opened before the rotation
    old_kid = ring.active_kid()
    old_token = ring.issue("agency", "North Models")
    assert running.verify(old_token).tenant == "North Models"
    new_kid = ring.rotate()
    assert new_kid != old_kid
    assert not (ring.folder / f"{old_kid}.key").exists()  # the old private key is gone
    new_token = running.issue("agency", "North Models")  # the running ring signs with the new
    assert json.loads(_unb64(new_token.split(".")[0]))["kid"] == new_kid
    assert running.verify(old_token).key_id == old_kid
    assert running.verify(new_token).key_id == new_kid
    with pytest.raises(SpatialTwinError) as err:
        ring.remove(new_kid)
    assert err.value.code == "key_active" and err.value.status == 409
    ring.remove(old_kid)
    assert _refused(running, old_token) == "token_invalid"
    assert running.verify(new_token).role == "agency"
    assert [(k.kid, k.active) for k in running.trusted()] == [(new_kid, True)]


def test_the_command_line_makes_keys_and_issues_tokens(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["keys", "init", "--data", str(data), "--json"]) == 0
    kid = json.loads(capsys.readouterr().out)["kid"]
    args = ["token", "issue", "--role", "brand", "--tenant", "acme", "--ttl", "15m"]
    assert main([*args, "--scopes", "garments:write", "--data", str(data), "--json"]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert issued["kid"] == kid and issued["ttl_s"] == 900
    caller = KeyRing(data / "keys").verify(issued["token"])
    assert (caller.role, caller.tenant, caller.scopes) == ("brand", "acme", ("garments:write",))
    assert main(["token", "issue", "--role", "brand", "--data", str(data)]) == 2
    assert "needs a tenant" in capsys.readouterr().err
    assert main(["keys", "rotate", "--data", str(data), "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["previous"] == kid
    assert main(["keys", "remove", kid, "--data", str(data)]) == 0
    capsys.readouterr()
    assert _refused(KeyRing(data / "keys"), issued["token"]) == "token_invalid"
    assert main(["token", "issue", "--role", "admin", "--data", str(tmp_path / "none")]) == 2


# --- over HTTP: who may read and write what --------------------------------------------------

TSHIRT = Path(__file__).resolve().parents[1] / "assets" / "garments" / "tshirt.glb"


@pytest.fixture
async def rights_api(tmp_path, twin_data_template):
    """The app over a store holding one twin (agency North Models, model Mara Test, an open
    license for ecommerce and mirror); a client with no default token and a token per caller."""
    template, twin_id = twin_data_template
    shutil.copytree(template, tmp_path / "data")
    app = create_app(tmp_path / "data", seed=False, settings={"look_max_frames": 3})
    client = TestClient(TestServer(app))
    await client.start_server()
    ring = app[KEYRING]
    client.twin_id = twin_id
    client.ring = ring
    client.tokens = {
        "acme": ring.issue("brand", "acme"),
        "globex": ring.issue("brand", "globex"),
        "agency": ring.issue("agency", "North Models"),
        "other_agency": ring.issue("agency", "South Faces"),
        "model": ring.issue("model", "Mara Test"),
        "admin": ring.issue("admin", None),
    }
    try:
        yield client
    finally:
        await client.close()


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def upload_tshirt(client, token: str, sku: str = "TEE-1") -> dict:
    meta = json.loads(TSHIRT.with_suffix(".json").read_text())
    fields = {k: meta[k] for k in ("name", "category", "fabric", "units")}
    fd = aiohttp.FormData()
    fd.add_field("file", TSHIRT.read_bytes(), filename=TSHIRT.name)
    fd.add_field("metadata", json.dumps({**fields, "sku": sku}), content_type="application/json")
    async with client.post("/api/v1/garments", data=fd, headers=bearer(token)) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def test_a_brand_never_sees_another_brands_garments(rights_api):
    api, tokens = rights_api, rights_api.tokens
    mine = await upload_tshirt(api, tokens["acme"])
    assert mine["brand"] == "acme"
    theirs = await upload_tshirt(api, tokens["globex"], sku="TEE-G")
    for path in (
        f"/api/v1/garments/{theirs['id']}",
        f"/api/v1/garments/{theirs['id']}/preview.glb",
    ):
        async with api.get(path + f"?twin={api.twin_id}", headers=bearer(tokens["acme"])) as r:
            assert r.status == 404, path  # documented: as if it did not exist
            assert (await r.json())["error"]["code"] == "garment_not_found"
    async with api.get("/api/v1/garments", headers=bearer(tokens["acme"])) as r:
        assert [g["id"] for g in (await r.json())["garments"]] == [mine["id"]]
    async with api.get("/api/v1/garments?sku=TEE-G", headers=bearer(tokens["acme"])) as r:
        assert (await r.json())["garments"] == []
    async with api.get("/api/v1/garments", headers=bearer(tokens["admin"])) as r:
        assert {g["id"] for g in (await r.json())["garments"]} == {mine["id"], theirs["id"]}
    # nor drape one: a look wearing another brand's garment is refused as unknown
    body = {"twin": api.twin_id, "garments": [theirs["id"]]}
    async with api.post("/api/v1/looks", json=body, headers=bearer(tokens["acme"])) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "garment_not_found"


async def test_a_brands_look_is_its_own_and_the_job_says_so(rights_api):
    api, tokens = rights_api, rights_api.tokens
    garment = await upload_tshirt(api, tokens["acme"])
    body = {"twin": api.twin_id, "garments": [garment["id"]]}
    async with api.post("/api/v1/looks", json=body, headers=bearer(tokens["acme"])) as r:
        assert r.status == 202, await r.text()
        link = (await r.json())["links"]["job"]
    async with api.get(link, headers=bearer(tokens["globex"])) as r:
        assert r.status == 404  # another brand cannot follow the job
    deadline = time.monotonic() + 120
    while True:
        async with api.get(link, headers=bearer(tokens["acme"])) as r:
            job = await r.json()
        if job["status"] in ("done", "failed"):
            break
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.1)
    assert job["status"] == "done", job
    look = job["result"]
    assert look["brand"] == "acme"
    path = f"/api/v1/looks/{look['id']}"
    async with api.get(path, headers=bearer(tokens["globex"])) as r:
        assert r.status == 404
    async with api.get(path, headers=bearer(tokens["acme"])) as r:
        assert r.status == 200
    async with api.get(path + "/look.glb") as r:  # a shopper: public under the license
        assert r.status == 200 and r.content_type == "model/gltf-binary"


async def test_a_shopper_reads_but_never_writes(rights_api):
    api = rights_api
    async with api.get("/api/v1/twins") as r:
        assert r.status == 200 and [t["id"] for t in (await r.json())["twins"]] == [api.twin_id]
    async with api.get(f"/api/v1/twins/{api.twin_id}/body.glb") as r:
        assert r.status == 200
    writes = [
        ("POST", "/api/v1/twins", {"measurements": {}}),
        ("POST", "/api/v1/looks", {"twin": api.twin_id, "garments": ["x"]}),
        ("POST", "/api/v1/fabrics", {"id": "x"}),
        ("PATCH", f"/api/v1/twins/{api.twin_id}/license", {"revoked": True}),
        ("POST", f"/api/v1/twins/{api.twin_id}/licenses", {"licensee": "acme"}),
    ]
    for method, path, body in writes:
        async with api.request(method, path, json=body) as r:
            assert r.status == 401, (method, path)
            error = (await r.json())["error"]
            assert error["code"] == "auth_required"
            assert r.headers.get("WWW-Authenticate") == "Bearer"
    async with api.get(f"/api/v1/twins/{api.twin_id}") as r:
        assert (await r.json())["license"]["revoked"] is False  # nothing was changed


async def test_an_expired_token_is_refused_over_http(rights_api):
    api = rights_api
    expired = api.ring.issue("brand", "acme", ttl_s=60, now_s=time.time() - 600)
    async with api.get("/api/v1/garments", headers=bearer(expired)) as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "token_expired"
    async with api.get("/api/v1/twins", headers=bearer(expired)) as r:  # open, but refused
        assert r.status == 401


async def test_a_rotated_keys_tokens_work_until_it_is_removed(rights_api):
    api = rights_api
    old = api.tokens["acme"]
    old_kid = api.ring.active_kid()
    KeyRing(api.ring.folder).rotate()  # as `spatialtwin keys rotate` does, another process
    async with api.get("/api/v1/garments", headers=bearer(old)) as r:
        assert r.status == 200
    KeyRing(api.ring.folder).remove(old_kid)
    async with api.get("/api/v1/garments", headers=bearer(old)) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "token_invalid"
    fresh = api.ring.issue("brand", "acme")
    async with api.get("/api/v1/garments", headers=bearer(fresh)) as r:
        assert r.status == 200


async def test_a_mirror_device_token_acts_as_a_device(rights_api):
    api = rights_api
    devices = api.server.app[SERVICES].devices
    record, token = await devices.register("Mirror 1", "kadewe")
    async with api.get("/api/v1/garments", headers=bearer(token)) as r:
        assert r.status == 200
    async with api.post("/api/v1/looks", json={}, headers=bearer(token)) as r:
        assert r.status == 403
        assert (await r.json())["error"]["detail"] == {
            "reason": "role",
            "role": "device",
            "allowed": ["admin", "brand"],
        }
    await devices.revoke(record["id"])
    async with api.get("/api/v1/garments", headers=bearer(token)) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "token_invalid"


async def test_twins_are_made_and_licensed_by_their_own_agency(rights_api):
    api, tokens = rights_api, rights_api.tokens
    payload = {
        "measurements": {
            "height_m": 1.65,
            "chest_m": 0.88,
            "waist_m": 0.70,
            "hips_m": 0.96,
            "inseam_m": 0.76,
            "shoulder_m": 0.37,
        },
        "owner": {"model": "Ida", "agency": "North Models"},
    }
    async with api.post("/api/v1/twins", json=payload, headers=bearer(tokens["other_agency"])) as r:
        assert r.status == 403
        assert (await r.json())["error"]["detail"]["reason"] == "not_owner"
    async with api.post("/api/v1/twins", json=payload, headers=bearer(tokens["acme"])) as r:
        assert r.status == 403 and (await r.json())["error"]["detail"]["reason"] == "role"
    path = f"/api/v1/twins/{api.twin_id}/license"
    for who in ("other_agency", "model"):  # a stranger; the model only revokes
        async with api.patch(
            path, json={"channels": ["ecommerce"]}, headers=bearer(tokens[who])
        ) as r:
            assert r.status == 403, who
    async with api.patch(
        path, json={"channels": ["ecommerce"]}, headers=bearer(tokens["agency"])
    ) as r:
        assert r.status == 200 and (await r.json())["license"]["channels"] == ["ecommerce"]
    async with api.patch(path, json={"revoked": True}, headers=bearer(tokens["model"])) as r:
        assert r.status == 200 and (await r.json())["license"]["revoked"] is True


def test_serve_makes_keys_on_its_first_start_and_prints_demo_tokens_once(tmp_path, capsys):
    from tests.browser_harness import start_spatialtwin_server

    data = tmp_path / "data"
    with start_spatialtwin_server(data, extra_args=("--no-seed",)) as server:
        log = server.log_tail(20_000)
        demo = data / "demo-token"
        assert stat.S_IMODE(demo.stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "demo-brand-token").stat().st_mode) == 0o600
        admin = demo.read_text().strip()
        assert f"demo admin token (also in {demo}): {admin}" in log
        caller = KeyRing(data / "keys").verify(admin)
        assert caller.role == "admin"
        brand = KeyRing(data / "keys").verify((data / "demo-brand-token").read_text().strip())
        assert (brand.role, brand.tenant) == ("brand", "demo-brand")
        assert server.token == admin  # the harness sends it
        status, _, body = server.get("/api/v1/garments")  # with the admin token
        assert status == 200 and json.loads(body) == {"garments": []}
        server.token = None  # a shopper: reads, never writes
        status, _, _ = server.get("/api/v1/twins")
        assert status == 200
        status, _, body = server.get("/api/v1/garments")
        assert status == 401 and json.loads(body)["error"]["code"] == "auth_required"
    from spatialtwin.cli.keys import first_start_keys

    first_start_keys(data)  # what the next start does: the keys are there, nothing is printed
    assert capsys.readouterr().out == ""
    assert demo.read_text().strip() == admin
