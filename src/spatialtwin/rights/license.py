"""Who a twin belongs to, what they consented to, and whether a use is licensed now.

A twin is a person's likeness: the model and their agency own it, consent to each channel of
use, are paid per use, and can revoke. Every read of a twin's body goes through `decide_use`
(`check_use` for one channel now); a revoked twin is never served again (410 Gone), a use
outside every license is refused (403) with the reason in `detail.reason`:

| reason | status, code | when |
|---|---|---|
| `revoked` | 410 `license_revoked` | the owner withdrew the twin (final) |
| `no_license` | 403 `no_license` | no license of the twin is for this brand |
| `license_channel` | 403 `channel_not_licensed` | no applicable license covers the channel |
| `license_expired` | 403 `license_expired` | the license ended, or its window has passed |
| `license_not_yet_valid` | 403 `license_not_yet_valid` | its window has not begun |
| `license_region` | 403 `license_region` | the use's region is outside the license's regions |
| `consent_missing` | 403 `consent_missing` | the model has not consented (or withdrew) |

A twin carries its first license (`license`, made with the twin, consented by the twin's
`consent`) and any number of brand licenses (`licenses`: each for one licensee brand, with
channels, regions, a window, a fee per use, terms, and the model's consent recorded with time
and by whom). A use is allowed by the first license that passes every rule: a brand's own
before an open one (licensee `null`: any brand), and for a use of no brand's an open one
first; when none does, the refusal names the rule
that the license closest to allowing it failed (channel, then window, region, consent).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from spatialtwin.errors import SpatialTwinError

CHANNELS = ("ecommerce", "mirror", "ar", "campaign", "stills")
DEFAULT_CHANNELS = ("ecommerce", "mirror", "ar")  # what a license without `channels` grants
REASONS = (
    "revoked",
    "no_license",
    "license_channel",
    "license_expired",
    "license_not_yet_valid",
    "license_region",
    "consent_missing",
)
_REGION = re.compile(r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2
MAX_REGIONS = 250
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


def check_region(value: Any, field_name: str = "region") -> str:
    """An ISO 3166-1 alpha-2 country code, upper case (`DE`, `FR`, `US`)."""
    if not isinstance(value, str) or not _REGION.match(value):
        raise SpatialTwinError(
            "invalid_region",
            f"{field_name} must be an ISO 3166-1 alpha-2 code such as DE or US",
            {"field": field_name, "value": str(value)[:8]},
            status=422,
        )
    return value


def _regions(value: Any) -> list[str] | None:
    """None (worldwide) or a non-empty list of country codes."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_REGIONS:
        raise SpatialTwinError(
            "invalid_license",
            "regions must be null (worldwide) or a non-empty list of ISO 3166-1 alpha-2 codes",
            {"field": "regions"},
            status=422,
        )
    return sorted({check_region(v, "regions") for v in value})


def _licensee(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _LICENSE_ID.match(value) or value != value.strip():
        raise _wrong_type("invalid_license", "licensee", "a brand id of 1–128 characters")
    return value


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
    licensee: str | None = None  # the brand it is for; None: any brand
    regions: list[str] | None = None  # ISO 3166-1 alpha-2 codes; None: worldwide

    @classmethod
    def from_json(cls, data: Any) -> License:
        """A license from JSON; every field is type-checked (a wrong JSON type is a 400, a
        wrong value a 422), so nothing stored can later fail to serialise or compare."""
        data = _object(data, "invalid_license", "license")
        channels = data.get("channels", list(DEFAULT_CHANNELS))
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
            licensee=_licensee(data.get("licensee")),
            regions=_regions(data.get("regions")),
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


@dataclass(frozen=True)
class Use:
    """One use of a twin: the channel, when, where (a country code, if known) and for which
    brand (`licensee`: its licenses and the open ones apply; None: any license applies)."""

    channel: str
    at: datetime | None = None
    region: str | None = None
    licensee: str | None = None


def _refusal(
    twin_id: str, reason: str, message: str, detail: dict[str, Any], status: int = 403
) -> SpatialTwinError:
    code = {
        "revoked": "license_revoked",
        "license_channel": "channel_not_licensed",
    }.get(reason, reason)
    return SpatialTwinError(
        code, message, {"twinId": twin_id, "reason": reason, **detail}, status=status
    )


def licenses_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The twin's first license and its brand licenses, each with the consent that covers it
    (the first license is consented by the twin's own `consent`)."""
    first = dict(record["license"])
    first.setdefault("consent", record.get("consent"))
    return [first, *[dict(lic) for lic in record.get("licenses") or []]]


# The rules in the order a license is held to them; a later stage is "closer to allowed".
_STAGES = ("license_channel", "license_expired", "license_region", "consent_missing")


def license_refusal(
    twin_id: str, lic: dict[str, Any], use: Use, at: datetime
) -> tuple[int, SpatialTwinError] | None:
    """None when `lic` allows `use` at `at`, else (stage reached, the refusal)."""
    lic_id = lic.get("id")
    if use.channel not in lic.get("channels", ()):
        return 0, _refusal(
            twin_id,
            "license_channel",
            f"twin {twin_id} is not licensed for the {use.channel!r} channel",
            {"channel": use.channel, "licensed": lic.get("channels"), "licenseId": lic_id},
        )
    start = _parse_time(lic.get("valid_from"), "valid_from")
    end = _parse_time(lic.get("valid_until"), "valid_until")
    if start is not None and at < start:
        return 1, _refusal(
            twin_id,
            "license_not_yet_valid",
            f"the license of twin {twin_id} starts {lic['valid_from']}",
            {"validFrom": lic["valid_from"], "licenseId": lic_id},
        )
    if end is not None and at >= end:
        return 1, _refusal(
            twin_id,
            "license_expired",
            f"the license of twin {twin_id} ended {lic['valid_until']}",
            {"validUntil": lic["valid_until"], "licenseId": lic_id, "endedAt": lic.get("ended_at")},
        )
    regions = lic.get("regions")
    if regions is not None and use.region not in regions:
        where = "an unknown region (send ?region=XX)" if use.region is None else use.region
        return 2, _refusal(
            twin_id,
            "license_region",
            f"twin {twin_id} is not licensed for use in {where}",
            {"region": use.region, "licensed": regions, "licenseId": lic_id},
        )
    consent = lic.get("consent")
    if not isinstance(consent, dict) or not consent.get("given_at") or consent.get("withdrawn_at"):
        return 3, _refusal(
            twin_id,
            "consent_missing",
            f"the model has not consented to license {lic_id} of twin {twin_id}",
            {"licenseId": lic_id},
        )
    return None


def decide_use(record: dict[str, Any], use: Use) -> dict[str, Any]:
    """The license that allows `use` of the twin in `record`; raises the refusal otherwise
    (410 once revoked, 400 for an unknown channel, 403 with `detail.reason`)."""
    first = record["license"]
    twin_id = record["id"]
    if first.get("revoked"):
        raise _refusal(
            twin_id,
            "revoked",
            f"twin {twin_id} has been withdrawn by its owner and is not served",
            {"revokedAt": first.get("revoked_at")},
            status=410,
        )
    if use.channel not in CHANNELS:
        raise SpatialTwinError(
            "unknown_channel",
            f"channel must be one of {list(CHANNELS)}",
            {"channel": str(use.channel)[:40]},
            status=400,
        )
    applicable = [
        lic
        for lic in licenses_of(record)
        if use.licensee is None or lic.get("licensee") in (None, use.licensee)
    ]
    if not applicable:
        raise _refusal(
            twin_id,
            "no_license",
            f"twin {twin_id} has no license for brand {use.licensee!r}",
            {"licensee": use.licensee},
        )
    # A brand's use: its own licenses before open ones; a use for no brand (a shopper of the
    # twin alone, a mirror): open ones before any brand's. Then in the order granted.
    if use.licensee is None:
        applicable.sort(key=lambda lic: lic.get("licensee") is not None)
    else:
        applicable.sort(key=lambda lic: lic.get("licensee") is None)
    at = use.at or now_utc()
    closest: tuple[int, SpatialTwinError] | None = None
    for lic in applicable:
        refused = license_refusal(twin_id, lic, use, at)
        if refused is None:
            return lic
        if closest is None or refused[0] > closest[0]:
            closest = refused
    assert closest is not None
    raise closest[1]


def check_use(record: dict[str, Any], channel: str, at: datetime | None = None) -> None:
    """Raise unless the twin in `record` may be used in `channel` at time `at` under some
    license (any licensee, any region a license names: the rules of `decide_use`)."""
    decide_use(record, Use(channel, at))


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
