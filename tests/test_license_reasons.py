"""Every use outside a license is refused with its reason; agencies grant, models consent.

First the rules themselves (`rights.license.decide_use`) on records with real windows and
regions: each reason, which license a use is billed to, and which refusal is reported when
several licenses each fail a different rule. Then the whole life of a brand license over HTTP:
the agency grants it, the model's consent is missing until given (recorded with time and by
whom), the region and channel decide, an amendment asks for consent again, the end closes it,
and the model's revocation ends every use with 410.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.license import Use, decide_use
from spatialtwin.server.app import create_app
from spatialtwin.server.auth import KEYRING

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONSENT = {"given_by": "Mara Test", "given_at": "2026-01-01T00:00:00+00:00"}


def twin(*licenses: dict, first: dict | None = None) -> dict:
    return {
        "id": "twn_rules",
        "owner": {"model": "Mara Test", "agency": "North Models"},
        "consent": CONSENT,
        "license": {
            "id": "lic_open",
            "channels": ["ecommerce"],
            "valid_from": "2026-01-01T00:00:00+00:00",
            "valid_until": None,
            "revoked": False,
            "licensee": None,
            "regions": None,
            **(first or {}),
        },
        "licenses": list(licenses),
    }


def brand_license(**fields) -> dict:
    return {
        "id": "lic_acme",
        "licensee": "acme",
        "channels": ["campaign", "stills"],
        "regions": ["DE", "FR"],
        "valid_from": "2026-02-01T00:00:00+00:00",
        "valid_until": "2026-04-01T00:00:00+00:00",
        "fee_per_use_eur": 0.25,
        "consent": {**CONSENT, "given_at": "2026-02-01T00:00:00+00:00"},
        **fields,
    }


def refusal(record: dict, use: Use) -> tuple[int, str, str]:
    with pytest.raises(SpatialTwinError) as err:
        decide_use(record, use)
    return err.value.status, err.value.code, err.value.detail["reason"]


def test_each_rule_has_its_reason():
    acme = twin(brand_license())
    assert decide_use(acme, Use("campaign", T0, "DE", "acme"))["id"] == "lic_acme"
    assert refusal(acme, Use("ar", T0, "DE", "acme")) == (
        403,
        "channel_not_licensed",
        "license_channel",
    )
    late = T0 + timedelta(days=45)  # 2026-04-15: the window closed on 1 April
    assert refusal(acme, Use("campaign", late, "DE", "acme")) == (
        403,
        "license_expired",
        "license_expired",
    )
    early = datetime(2026, 1, 15, tzinfo=UTC)
    assert refusal(acme, Use("campaign", early, "DE", "acme"))[2] == "license_not_yet_valid"
    assert refusal(acme, Use("campaign", T0, "US", "acme")) == (
        403,
        "license_region",
        "license_region",
    )
    assert refusal(acme, Use("campaign", T0, None, "acme"))[2] == "license_region"  # unknown
    unconsented = twin(brand_license(consent=None))
    assert refusal(unconsented, Use("campaign", T0, "DE", "acme")) == (
        403,
        "consent_missing",
        "consent_missing",
    )
    withdrawn = twin(
        brand_license(consent={**CONSENT, "withdrawn_at": "2026-02-20T00:00:00+00:00"})
    )
    assert refusal(withdrawn, Use("campaign", T0, "DE", "acme"))[2] == "consent_missing"
    revoked = twin(
        brand_license(), first={"revoked": True, "revoked_at": "2026-02-28T00:00:00+00:00"}
    )
    assert refusal(revoked, Use("campaign", T0, "DE", "acme")) == (
        410,
        "license_revoked",
        "revoked",
    )
    closed = twin(first={"licensee": "globex"})  # the only license is another brand's
    assert refusal(closed, Use("ecommerce", T0, None, "acme")) == (403, "no_license", "no_license")


def test_a_brand_is_billed_under_its_own_license_before_an_open_one():
    both = twin(brand_license(channels=["ecommerce"], regions=None))
    assert decide_use(both, Use("ecommerce", T0, None, "acme"))["id"] == "lic_acme"
    assert decide_use(both, Use("ecommerce", T0, None, "globex"))["id"] == "lic_open"
    assert decide_use(both, Use("ecommerce", T0))["id"] == "lic_open"  # no brand: open first
    only_acme = twin(
        brand_license(channels=["ecommerce"], regions=None), first={"channels": ["ar"]}
    )
    assert decide_use(only_acme, Use("ecommerce", T0))["id"] == "lic_acme"  # else any
    # The first license is consented by the twin's own consent record.
    assert decide_use(both, Use("ecommerce", T0, None, "globex"))["consent"] == CONSENT


def test_the_refusal_names_the_rule_the_closest_license_failed():
    # the open license lacks the channel (stage 1), acme's lacks consent (stage 4)
    record = twin(brand_license(consent=None))
    assert refusal(record, Use("campaign", T0, "DE", "acme"))[2] == "consent_missing"
    # acme's has ended: the window (stage 2) beats the open license's channel
    record = twin(brand_license(valid_until="2026-02-15T00:00:00+00:00"))
    status, _, reason = refusal(record, Use("campaign", T0, "DE", "acme"))
    assert (status, reason) == (403, "license_expired")


# --- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
async def rights_api(tmp_path, twin_data_template):
    template, twin_id = twin_data_template
    shutil.copytree(template, tmp_path / "data")
    app = create_app(tmp_path / "data", seed=False)
    client = TestClient(TestServer(app))
    await client.start_server()
    ring = app[KEYRING]
    client.twin_id = twin_id
    client.tokens = {
        "acme": ring.issue("brand", "acme", subject="acme-merch"),
        "globex": ring.issue("brand", "globex"),
        "agency": ring.issue("agency", "North Models", subject="booker-1"),
        "other_agency": ring.issue("agency", "South Faces"),
        "model": ring.issue("model", "Mara Test", subject="mara"),
    }
    try:
        yield client
    finally:
        await client.close()


async def as_(api, who: str | None, method: str, path: str, body=None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {api.tokens[who]}"} if who else {}
    async with api.request(method, path, json=body, headers=headers) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else {})


async def body_glb(api, who: str, channel: str, region: str | None = None) -> tuple[int, str]:
    query = f"?channel={channel}" + (f"&region={region}" if region else "")
    status, body = await as_(api, who, "GET", f"/api/v1/twins/{api.twin_id}/body.glb{query}")
    return status, (body.get("error") or {}).get("detail", {}).get("reason", "")


async def test_a_brand_license_from_grant_to_end(rights_api):
    api = rights_api
    licenses = f"/api/v1/twins/{api.twin_id}/licenses"
    grant = {
        "id": "lic_acme_campaign",
        "licensee": "acme",
        "channels": ["campaign", "ecommerce"],
        "regions": ["DE", "FR"],
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2099-01-01T00:00:00Z",
        "fee_per_use_eur": 0.4,
        "terms": "Spring campaign, DE and FR only.",
    }
    assert (await as_(api, "acme", "POST", licenses, grant))[0] == 403  # a brand cannot grant
    assert (await as_(api, "other_agency", "POST", licenses, grant))[0] == 403  # not its twin
    status, granted = await as_(api, "agency", "POST", licenses, grant)
    assert status == 201, granted
    assert granted["consent"] is None and granted["created_by"] == "booker-1"
    assert granted["regions"] == ["DE", "FR"] and granted["fee_per_use_eur"] == 0.4
    assert (await as_(api, "agency", "POST", licenses, grant))[0] == 409  # the id is taken

    assert await body_glb(api, "acme", "campaign", "DE") == (403, "consent_missing")
    consent = f"{licenses}/lic_acme_campaign/consent"
    assert (await as_(api, "agency", "POST", consent, {"consent": True}))[0] == 403  # model only
    status, consented = await as_(api, "model", "POST", consent, {"consent": True})
    assert status == 200
    given = consented["consent"]
    assert given["given_by"] == "Mara Test" and given["recorded_by"] == "mara"
    given_at = datetime.fromisoformat(given["given_at"])
    assert abs((datetime.now(UTC) - given_at).total_seconds()) < 60

    assert await body_glb(api, "acme", "campaign", "DE") == (200, "")
    assert await body_glb(api, "acme", "campaign", "US") == (403, "license_region")
    assert await body_glb(api, "acme", "campaign") == (403, "license_region")
    assert await body_glb(api, "acme", "ar", "DE") == (403, "license_channel")
    assert await body_glb(api, "globex", "campaign", "DE") == (403, "license_channel")
    assert await body_glb(api, "globex", "ecommerce") == (200, "")  # the open license

    # who reads what: the brand its own, another brand none, the owners all
    _, seen = await as_(api, "acme", "GET", licenses)
    assert [lic["id"] for lic in seen["licenses"]] == ["lic_acme_campaign"]
    _, seen = await as_(api, "globex", "GET", licenses)
    assert seen["licenses"] == []
    _, seen = await as_(api, "model", "GET", licenses)
    assert [lic["id"] for lic in seen["licenses"]] == ["lic_acme_campaign"]

    amend = f"{licenses}/lic_acme_campaign"
    status, amended = await as_(api, "agency", "PATCH", amend, {"regions": ["DE", "FR", "US"]})
    assert status == 200 and amended["regions"] == ["DE", "FR", "US"]
    assert amended["consent"] is None  # new terms, asked again
    assert await body_glb(api, "acme", "campaign", "US") == (403, "consent_missing")
    await as_(api, "model", "POST", consent, {"consent": True})
    assert await body_glb(api, "acme", "campaign", "US") == (200, "")

    status, ended = await as_(api, "agency", "PATCH", amend, {"ended": True})
    assert status == 200 and ended["ended_at"] == ended["valid_until"]
    assert await body_glb(api, "acme", "campaign", "US") == (403, "license_expired")
    assert (await as_(api, "agency", "PATCH", amend, {"fee_per_use_eur": 1}))[0] == 409

    status, _ = await as_(
        api, "model", "PATCH", f"/api/v1/twins/{api.twin_id}/license", {"revoked": True}
    )
    assert status == 200
    assert await body_glb(api, "acme", "ecommerce") == (410, "revoked")
    assert (await as_(api, "agency", "POST", licenses, {**grant, "id": "lic_2"}))[0] == 410


async def test_license_changes_are_checked(rights_api):
    api = rights_api
    licenses = f"/api/v1/twins/{api.twin_id}/licenses"
    bad = [
        {"channels": ["campaign"]},  # no licensee
        {"licensee": "acme", "channels": ["tv"]},
        {"licensee": "acme", "regions": ["Germany"]},
        {"licensee": "acme", "regions": []},
        {"licensee": "acme", "fee_per_use_eur": -1},
        {"licensee": "acme", "consent": {"given_at": "2026-01-01T00:00:00Z"}},  # not the agency's
        {
            "licensee": "acme",
            "valid_from": "2026-05-01T00:00:00Z",
            "valid_until": "2026-04-01T00:00:00Z",
        },
    ]
    for body in bad:
        status, answer = await as_(api, "agency", "POST", licenses, body)
        assert status == 422, (body, answer)
    status, _ = await as_(api, "agency", "PATCH", f"{licenses}/lic_none", {"ended": True})
    assert status == 404
