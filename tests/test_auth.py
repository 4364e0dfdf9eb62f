"""Tokens: Ed25519-signed JWTs named by key id, made by `spatialtwin keys` and `token issue`.

The key folder and its modes, a token's claims read back, every way a token can be bad (expired,
tampered, signed by a stranger's key, `alg: none`, an HMAC made with the public key), rotation
(old tokens verify until their key is removed, also on a ring that is already open, as a
running server's is), and the same refusals over HTTP with the error codes a client sees.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time

import pytest

from spatialtwin.cli import main
from spatialtwin.errors import SpatialTwinError
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
