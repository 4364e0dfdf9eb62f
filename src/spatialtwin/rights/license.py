"""Who a twin belongs to, what they consented to, and whether a use is licensed now.

A twin is a person's likeness: the model and their agency own it, consent to each channel of
use, are paid per use, and can revoke. Every read of a twin's body goes through `check_use`;
a revoked twin is never served again (410 Gone), a use outside the license is refused (403).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from spatialtwin.errors import SpatialTwinError

CHANNELS = ("ecommerce", "mirror", "ar")
DISCLOSURE = (
    "Digital twin of {model} (agency: {agency}): a rigged 3D replica used under license "
    "{license_id}, not a photograph."
)


def _parse_time(value: Any, field_name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SpatialTwinError(
            "invalid_license",
            f"{field_name} must be an ISO 8601 string",
            {field_name: value},
            status=422,
        )
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SpatialTwinError(
            "invalid_license",
            f"{field_name} is not an ISO 8601 time",
            {field_name: value},
            status=422,
        ) from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class Owner:
    model: str
    agency: str

    @classmethod
    def from_json(cls, data: Any) -> Owner:
        if not isinstance(data, dict):
            raise SpatialTwinError(
                "invalid_owner", 'owner must be {"model": ..., "agency": ...}', status=422
            )
        model = str(data.get("model", "")).strip()
        agency = str(data.get("agency", "")).strip()
        if not model or not agency:
            raise SpatialTwinError(
                "invalid_owner",
                "a twin needs the model's and the agency's name",
                {"owner": data},
                status=422,
            )
        return cls(model[:200], agency[:200])


@dataclass
class License:
    id: str
    channels: list[str]
    valid_from: str
    valid_until: str | None = None
    revoked: bool = False
    revoked_at: str | None = None
    fee_per_use_eur: float | None = None
    terms: str = ""

    @classmethod
    def from_json(cls, data: Any) -> License:
        data = dict(data or {})
        channels = data.get("channels", list(CHANNELS))
        if (
            not isinstance(channels, list)
            or not channels
            or any(c not in CHANNELS for c in channels)
        ):
            raise SpatialTwinError(
                "invalid_license",
                f"license channels must be a non-empty subset of {list(CHANNELS)}",
                {"channels": channels},
                status=422,
            )
        start = _parse_time(data.get("valid_from"), "valid_from") or now_utc()
        end = _parse_time(data.get("valid_until"), "valid_until")
        if end is not None and end <= start:
            raise SpatialTwinError(
                "invalid_license",
                "valid_until must be after valid_from",
                {"valid_from": start.isoformat(), "valid_until": end.isoformat()},
                status=422,
            )
        fee = data.get("fee_per_use_eur")
        if fee is not None and (not isinstance(fee, int | float) or fee < 0):
            raise SpatialTwinError(
                "invalid_license",
                "fee_per_use_eur must be a non-negative number",
                {"fee_per_use_eur": fee},
                status=422,
            )
        return cls(
            id=str(data.get("id") or f"lic_{uuid.uuid4().hex[:12]}"),
            channels=sorted(set(channels), key=CHANNELS.index),
            valid_from=start.isoformat(),
            valid_until=None if end is None else end.isoformat(),
            revoked=bool(data.get("revoked", False)),
            revoked_at=data.get("revoked_at"),
            fee_per_use_eur=None if fee is None else float(fee),
            terms=str(data.get("terms", ""))[:2000],
        )


@dataclass
class Consent:
    given_by: str
    given_at: str
    scope: str = "Use of my digital twin in the licensed channels."

    @classmethod
    def from_json(cls, data: Any, owner: Owner) -> Consent:
        data = dict(data or {})
        given_at = _parse_time(data.get("given_at"), "given_at") or now_utc()
        return cls(
            given_by=str(data.get("given_by") or owner.model),
            given_at=given_at.isoformat(),
            scope=str(data.get("scope") or cls.scope)[:2000],
        )


@dataclass
class Rights:
    owner: Owner
    license: License
    consent: Consent
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rights:
        owner = Owner.from_json(data.get("owner"))
        return cls(
            owner,
            License.from_json(data.get("license")),
            Consent.from_json(data.get("consent"), owner),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": asdict(self.owner),
            "license": asdict(self.license),
            "consent": asdict(self.consent),
        }

    def disclosure(self) -> str:
        return DISCLOSURE.format(
            model=self.owner.model, agency=self.owner.agency, license_id=self.license.id
        )


def check_use(record: dict[str, Any], channel: str, at: datetime | None = None) -> None:
    """Raise unless the twin in `record` may be used in `channel` at time `at`."""
    lic = record["license"]
    twin_id = record["id"]
    if lic.get("revoked"):
        raise SpatialTwinError(
            "license_revoked",
            f"twin {twin_id} has been withdrawn by its owner and is not served",
            {"twinId": twin_id, "revokedAt": lic.get("revoked_at")},
            status=410,
        )
    if channel not in CHANNELS:
        raise SpatialTwinError(
            "unknown_channel",
            f"channel must be one of {list(CHANNELS)}",
            {"channel": channel},
            status=400,
        )
    if channel not in lic["channels"]:
        raise SpatialTwinError(
            "channel_not_licensed",
            f"twin {twin_id} is not licensed for the {channel!r} channel",
            {"twinId": twin_id, "channel": channel, "licensed": lic["channels"]},
            status=403,
        )
    at = at or now_utc()
    start = _parse_time(lic["valid_from"], "valid_from")
    end = _parse_time(lic.get("valid_until"), "valid_until")
    if start is not None and at < start:
        raise SpatialTwinError(
            "license_not_yet_valid",
            f"the license of twin {twin_id} starts {lic['valid_from']}",
            {"twinId": twin_id, "validFrom": lic["valid_from"]},
            status=403,
        )
    if end is not None and at >= end:
        raise SpatialTwinError(
            "license_expired",
            f"the license of twin {twin_id} ended {lic['valid_until']}",
            {"twinId": twin_id, "validUntil": lic["valid_until"]},
            status=403,
        )


def provenance(record: dict[str, Any]) -> dict[str, Any]:
    """What every GLB of this twin carries in `asset.extras.spatialtwin`."""
    return {
        "twinId": record["id"],
        "owner": record["owner"],
        "licenseId": record["license"]["id"],
        "channels": record["license"]["channels"],
        "disclosure": record["disclosure"],
        "digitalTwin": True,
    }
