"""Mirror devices: `spatialtwin mirror register|list|revoke`, the token shown once and kept only
as its SHA-256, verification of the whole hash, revocation (final, announced), the camera tilt
kept per device."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from spatialtwin.cli import main as cli
from spatialtwin.errors import SpatialTwinError
from spatialtwin.services.context import Services
from spatialtwin.services.devices import TOKEN_PATTERN, device_id_of, token_sha256
from spatialtwin.store.embedded import EmbeddedStore
from spatialtwin.store.schema import CURRENT, MIRROR_DEVICES


def register(tmp_path, capsys, name="Berlin KaDeWe 1", store="kadewe") -> dict:
    assert (
        cli(
            [
                "mirror",
                "register",
                "--name",
                name,
                "--store",
                store,
                "--data",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    return json.loads(capsys.readouterr().out)


def devices(tmp_path):
    return Services(EmbeddedStore(tmp_path)).devices


def test_register_prints_the_token_once_and_stores_only_its_hash(tmp_path, capsys):
    out = register(tmp_path, capsys)
    token, device = out["token"], out["device"]
    assert TOKEN_PATTERN.match(token) and len(token) == 4 + 43
    assert device["id"] == device_id_of(hashlib.sha256(token.encode()).hexdigest())
    assert "token_sha256" not in device and "token" not in device
    files = list((tmp_path / "records" / MIRROR_DEVICES).glob("*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["token_sha256"] == token_sha256(token)
    assert stored["schema_version"] == CURRENT[MIRROR_DEVICES] == 1
    assert stored["revoked"] is False and stored["camera"] is None
    assert (stored["name"], stored["store"]) == ("Berlin KaDeWe 1", "kadewe")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    # a second registration is another device with another token
    again = register(tmp_path, capsys, "Berlin KaDeWe 2")
    assert again["token"] != token and again["device"]["id"] != device["id"]


def test_the_whole_hash_is_compared_and_bad_tokens_are_401(tmp_path, capsys):
    token = register(tmp_path, capsys)["token"]
    service = devices(tmp_path)
    assert asyncio.run(service.verify(token))["name"] == "Berlin KaDeWe 1"
    forged = "stm_" + ("B" if token[4] != "B" else "C") + token[5:]
    for bad in (forged, token[:-1], token + "x", "stm_" + "!" * 43, "", None, 42, token.upper()):
        with pytest.raises(SpatialTwinError) as info:
            asyncio.run(service.verify(bad))
        assert info.value.status == 401 and info.value.code == "device_unauthorized"
    # a record under the id a token's hash points to, holding another hash, does not let it in
    other = "stm_" + "Z" * 43
    record = {
        "id": device_id_of(token_sha256(other)),
        "name": "x",
        "store": "y",
        "token_sha256": "0" * 64,
        "revoked": False,
        "camera": None,
    }
    (tmp_path / "records" / MIRROR_DEVICES / f"{record['id']}.json").write_text(json.dumps(record))
    with pytest.raises(SpatialTwinError, match="not valid"):
        asyncio.run(service.verify(other))


def test_revoke_is_final_listed_and_announced(tmp_path, capsys):
    out = register(tmp_path, capsys)
    token, device_id = out["token"], out["device"]["id"]

    async def revoke_and_hear() -> tuple[dict, dict]:
        service = devices(tmp_path)
        channel = service.services.store.subscribe("mirror_devices")
        heard = asyncio.ensure_future(channel.__anext__())
        await asyncio.sleep(0)
        revoked = await service.revoke(device_id)
        return revoked, await asyncio.wait_for(heard, 2)

    revoked, message = asyncio.run(revoke_and_hear())
    assert revoked["revoked"] is True and revoked["revoked_at"]
    assert message == {"event": "revoked", "deviceId": device_id}
    with pytest.raises(SpatialTwinError) as info:
        asyncio.run(devices(tmp_path).verify(token))
    assert (info.value.status, info.value.code) == (401, "device_revoked")
    assert cli(["mirror", "revoke", device_id, "--data", str(tmp_path)]) == 0  # idempotent
    assert "revoked" in capsys.readouterr().out
    assert cli(["mirror", "list", "--data", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["devices"]
    assert [(d["id"], d["revoked"]) for d in listed] == [(device_id, True)]
    assert all("token_sha256" not in d for d in listed)
    assert cli(["mirror", "revoke", "mdv_0000000000000000", "--data", str(tmp_path)]) == 2


def test_the_estimated_camera_tilt_is_kept(tmp_path, capsys):
    device_id = register(tmp_path, capsys)["device"]["id"]
    service = devices(tmp_path)
    asyncio.run(service.set_camera(device_id, -7.349, 1.2))
    camera = asyncio.run(service.get(device_id))["camera"]
    assert (camera["pitch_deg"], camera["roll_deg"]) == (-7.35, 1.2) and camera["estimated_at"]
    for tilt in ((50.0, 0.0), (float("nan"), 0.0)):
        with pytest.raises(SpatialTwinError, match="camera tilt"):
            asyncio.run(service.set_camera(device_id, *tilt))
    assert cli(["mirror", "list", "--data", str(tmp_path)]) == 0
    assert "camera -7.35°/1.2°" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "store"),
    [
        ("", "kadewe"),
        ("   ", "kadewe"),
        ("ok", "bad\x00store"),
        ("x" * 201, "kadewe"),
        ("ok", "s" * 101),
    ],
)
def test_bad_names_are_refused_and_nothing_is_stored(tmp_path, capsys, name, store):
    argv = ["mirror", "register", "--name", name, "--store", store, "--data", str(tmp_path)]
    assert cli(argv) == 2
    assert "error" in capsys.readouterr().err
    assert not list((tmp_path / "records").rglob("*.json"))
