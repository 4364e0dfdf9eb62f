"""Who a twin belongs to, what they consented to, and whether a use is licensed now.

A twin is a person's likeness: the model and their agency own it, consent to each channel of
use, are paid per use, and can revoke. Every read of a twin's body goes through `check_use`;
a revoked twin is never served again (410 Gone), a use outside the license is refused (403).
"""

from __future__ import annotations

import math
import re
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


_LICENSE_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")  # the agency's own reference, printable


def _wrong_type(code: str, field_name: str, expected: str) -> SpatialTwinError:
    """A JSON value of the wrong type (400): named, never echoed (it may be huge or NaN)."""
    return SpatialTwinError(
        code, f"{field_name} must be {expected}", {"field": field_name, "expected": expected}
    )


def _object(data: Any, code: str, field_name: str) -> dict[str, Any]:
    """`data` as an object: absent (None) reads as {}, any other non-object is refused."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _wrong_type(code, field_name, "a JSON object")
    return data


def _string(data: dict[str, Any], key: str, code: str, default: str, max_chars: int) -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _wrong_type(code, key, "a string")
    return value[:max_chars]


def _boolean(data: dict[str, Any], key: str, default: bool) -> bool:
    """A JSON boolean: true or false, never 0, 1, "false" or null standing in for one."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise _wrong_type("invalid_license", key, "true or false")
    return value


def _fee(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type("invalid_license", "fee_per_use_eur", "a number")
    try:
        fee = float(value)
    except OverflowError:
        fee = math.inf
    if not math.isfinite(fee) or fee < 0:
        raise SpatialTwinError(
            "invalid_license",
            "fee_per_use_eur must be a finite, non-negative number",
            {"fee_per_use_eur": fee if math.isfinite(fee) else str(fee)},
            status=422,
        )
    return fee


def _license_id(value: Any) -> str:
    if value is None or value == "":
        return f"lic_{uuid.uuid4().hex[:12]}"
    if not isinstance(value, str) or not _LICENSE_ID.match(value):
        raise _wrong_type("invalid_license", "id", "a string of 1–128 printable characters")
    return value


def _parse_time(value: Any, field_name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SpatialTwinError(
            "invalid_license",
            f"{field_name} must be an ISO 8601 string",
            {"field": field_name, "expected": "an ISO 8601 string"},
            status=422,
        )
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SpatialTwinError(
            "invalid_license",
            f"{field_name} is not an ISO 8601 time",
            {field_name: value[:64]},
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
        model = _string(data, "model", "invalid_owner", "", 200).strip()
        agency = _string(data, "agency", "invalid_owner", "", 200).strip()
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
        """A license from JSON; every field is type-checked (a wrong JSON type is a 400, a
        wrong value a 422), so nothing stored can later fail to serialise or compare."""
        data = _object(data, "invalid_license", "license")
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
        revoked = _boolean(data, "revoked", False)
        revoked_at = _parse_time(data.get("revoked_at"), "revoked_at")
        return cls(
            id=_license_id(data.get("id")),
            channels=sorted(set(channels), key=CHANNELS.index),
            valid_from=start.isoformat(),
            valid_until=None if end is None else end.isoformat(),
            revoked=revoked,
            revoked_at=None if revoked_at is None else data["revoked_at"],
            fee_per_use_eur=_fee(data.get("fee_per_use_eur")),
            terms=_string(data, "terms", "invalid_license", "", 2000),
        )


@dataclass
class Consent:
    given_by: str
    given_at: str
    scope: str = "Use of my digital twin in the licensed channels."

    @classmethod
    def from_json(cls, data: Any, owner: Owner) -> Consent:
        data = _object(data, "invalid_consent", "consent")
        given_at = _parse_time(data.get("given_at"), "given_at") or now_utc()
        return cls(
            given_by=_string(data, "given_by", "invalid_consent", "", 200) or owner.model,
            given_at=given_at.isoformat(),
            scope=_string(data, "scope", "invalid_consent", "", 2000) or cls.scope,
        )


@dataclass
class Rights:
    owner: Owner
    license: License
    consent: Consent
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Rights:
        data = _object(data, "invalid_request", "the request")
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
