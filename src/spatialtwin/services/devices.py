"""Smart-mirror devices: registration, the device token, revocation, the stored camera tilt.

A mirror opens sessions with a device token, `stm_` + 43 URL-safe characters (256 random bits,
`secrets.token_urlsafe(32)`), shown once when the device is registered. The store keeps only
the token's SHA-256: a copied data directory or a leaked record does not give the token away.
The device's id is the hash's first 16 hex digits (`mdv_…`), so a token is checked with one
record read and a constant-time comparison of the whole hash (`hmac.compare_digest`), never a
scan of every device; the id tells nothing about the token (the hash is one-way).

- `register(name, store)` → (record, token); `list()`; `revoke(id)` (final: announced on the
  store's `mirror_devices` channel, and seen by servers that poll, so its sessions end);
- `verify(token)` → the device record, or 401 (malformed, unknown or revoked — the answer
  never says which part of a token was wrong);
- `set_camera(id, pitch_deg, roll_deg)`: the camera tilt a session estimated, sent back in the
  next session's `welcome` and used instead of estimating again.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from typing import TYPE_CHECKING, Any

from spatialtwin.errors import RecordChangedError, SpatialTwinError
from spatialtwin.rights.license import now_utc
from spatialtwin.store.device_repository import DeviceRepository

if TYPE_CHECKING:
    from spatialtwin.services.base import ServiceContext

TOKEN_PREFIX = "stm_"
TOKEN_BYTES = 32
TOKEN_PATTERN = re.compile(r"^stm_[A-Za-z0-9_-]{43}$")
ID_PREFIX = "mdv_"
ID_HEX = 16
CHANNEL = "mirror_devices"  # the store's pub/sub channel for device events
MAX_NAME_CHARS = 200
MAX_STORE_CHARS = 100
MAX_TILT_DEG = 45.0
CAS_ATTEMPTS = 4
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def device_id_of(digest: str) -> str:
    return ID_PREFIX + digest[:ID_HEX]


def _unauthorised(code: str = "device_unauthorized") -> SpatialTwinError:
    return SpatialTwinError(
        code, "the device token is not valid (unknown, malformed or revoked)", status=401
    )


def _text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str) or not value.strip() or not _PRINTABLE.match(value):
        raise SpatialTwinError(
            "invalid_device",
            f"{field} must be printable text of 1–{max_chars} characters",
            {"field": field},
            status=422,
        )
    if len(value) > max_chars:
        raise SpatialTwinError(
            "invalid_device",
            f"{field} is limited to {max_chars} characters",
            {"field": field, "chars": len(value)},
            status=422,
        )
    return value.strip()


def device_view(record: dict[str, Any]) -> dict[str, Any]:
    """A device as listings show it: everything but the token's hash."""
    return {k: v for k, v in record.items() if k != "token_sha256"}


class DeviceService:
    def __init__(self, services: ServiceContext) -> None:
        self.services = services
        self.records = DeviceRepository(services.store)

    async def register(self, name: Any, store: Any) -> tuple[dict[str, Any], str]:
        """A new device and its token (returned once; only its hash is stored)."""
        name, store = _text(name, "name", MAX_NAME_CHARS), _text(store, "store", MAX_STORE_CHARS)
        token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        digest = token_sha256(token)
        record: dict[str, Any] = {
            "id": device_id_of(digest),
            "name": name,
            "store": store,
            "created_at": now_utc().isoformat(),
            "token_sha256": digest,
            "revoked": False,
            "revoked_at": None,
            "camera": None,
        }
        await self.records.create(record)
        return record, token

    async def list(self) -> list[dict[str, Any]]:
        return [device_view(r) for r in await self.records.list()]

    async def get(self, device_id: str) -> dict[str, Any]:
        return device_view(await self.records.get(device_id))

    async def verify(self, token: Any) -> dict[str, Any]:
        """The device this token belongs to, unless it is malformed, unknown or revoked (401).
        The stored hash is compared in constant time."""
        if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
            raise _unauthorised()
        digest = token_sha256(token)
        record = await self.records.find(device_id_of(digest))
        if record is None or not hmac.compare_digest(
            str(record.get("token_sha256", "")).encode(), digest.encode()
        ):
            raise _unauthorised()
        if record.get("revoked"):
            raise _unauthorised("device_revoked")
        return device_view(record)

    async def is_usable(self, device_id: str) -> bool:
        """True while the device exists and is not revoked (what a live session re-checks)."""
        record = await self.records.find(device_id)
        return record is not None and not record.get("revoked")

    async def _change(self, device_id: str, change: Any) -> dict[str, Any]:
        for _ in range(CAS_ATTEMPTS):
            record, revision = await self.records.get_with_revision(device_id)
            changed = change(dict(record))
            if changed is None:
                return record
            try:
                await self.records.replace(changed, revision)
            except RecordChangedError:
                continue
            return changed
        raise RecordChangedError("mirror_devices", device_id)

    async def revoke(self, device_id: str) -> dict[str, Any]:
        """Revoke the device (final, idempotent); its live sessions end (announced on the
        store's `mirror_devices` channel; servers in other processes see it by polling)."""

        def revoked(record: dict[str, Any]) -> dict[str, Any] | None:
            if record.get("revoked"):
                return None
            return {**record, "revoked": True, "revoked_at": now_utc().isoformat()}

        record = await self._change(device_id, revoked)
        await self.services.store.publish(CHANNEL, {"event": "revoked", "deviceId": device_id})
        return device_view(record)

    async def set_camera(self, device_id: str, pitch_deg: float, roll_deg: float) -> None:
        """Keep the camera tilt a session estimated for this device (degrees, ±45)."""
        tilt = (float(pitch_deg), float(roll_deg))
        if not all(math.isfinite(t) and abs(t) <= MAX_TILT_DEG for t in tilt):
            raise SpatialTwinError(
                "invalid_camera", "camera tilt must be finite degrees within ±45", None
            )
        camera = {
            "pitch_deg": round(tilt[0], 2),
            "roll_deg": round(tilt[1], 2),
            "estimated_at": now_utc().isoformat(),
        }
        await self._change(device_id, lambda record: {**record, "camera": camera})
