"""The one door every use of a twin passes: who asks, under which license, and what they see.

A twin is a person's likeness, used only under a license its model consented to. Every service
that serves or works with a twin's body — its GLB, a look, a preview, a level manifest, a
level file, a still, a drape job, a mirror session — asks here first, and nothing else in the
code base decides (`tests/test_access.py` checks both: each twin-using route refuses each rule,
and no call of `rights.license` decisions lives outside this module).

Who asks is the *acting* caller (`acting()`): the server's auth middleware sets it for each
request (`rights.roles.Caller`: role, tenant, scopes, with the request's `?region=`), a job
acts as the caller that submitted it (its payload's `caller`, `as_submitter`), and the
command line, seeding and level builds act as `SYSTEM`. A context variable carries it, so the
services' signatures do not change with it and a task a request starts inherits it.

- `check(twin, channel, brand=None)`: the license that allows this use now
  (`rights.license.decide_use`): 410 once revoked, 400 for an unknown channel, 403 with
  `detail.reason` otherwise. A brand's uses are held to its own licenses and the open ones
  (licensee `null`); a use of brand content (a look) by a shopper or a mirror is held to that
  brand's; an admin's or the twin's owners' to any.
- `twin_for_use(twin_id, channel, brand=None)`, `twins_for_use(channel)`,
  `check_level_file(owners, channel)`, `check_ar_file(owners)`: the same rules over records.
- Tenancy: `visible_twins`, `require_twin_visible`, `require_visible(kind, record)` (a brand
  sees only its own garments and looks, and the house samples with no brand: another brand's
  answer 404, as if absent), `owner_brand()` (what an upload or a look is stamped with).
- Licenses: `change_license` (the first license: channels, window, or revoke — final),
  `grant_license`, `amend_license` (or end), `consent` — each by compare-and-set on the twin
  record, by the twin's agency (or an admin); the model consents and may revoke. A revocation
  withdraws the twin's level files before it answers and is announced on the `twins` channel.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from spatialtwin.errors import NotFoundError, RecordChangedError, SpatialTwinError
from spatialtwin.rights.license import (
    License,
    Use,
    check_region,
    decide_use,
    licenses_of,
    now_utc,
)
from spatialtwin.rights.roles import AGENCY, BRAND, MODEL, SYSTEM, Caller
from spatialtwin.services.metering import Metering
from spatialtwin.store.schema import LICENSE_VERSION

if TYPE_CHECKING:
    from spatialtwin.services.base import ServiceContext

AR_CHANNEL = "ar"  # placing a twin in a room (USDZ, Scene Viewer): the license's `ar` channel
LICENSE_FIELDS = ("channels", "valid_from", "valid_until", "revoked", "terms", "fee_per_use_eur")
BRAND_LICENSE_FIELDS = (
    "channels",
    "regions",
    "valid_from",
    "valid_until",
    "terms",
    "fee_per_use_eur",
    "ended",
)
MAX_LICENSES = 64  # brand licenses per twin
CAS_ATTEMPTS = 4


@dataclass(frozen=True)
class Acting:
    """Who the current request or job acts as, and where the use happens (a country code)."""

    caller: Caller
    region: str | None = None
    session: str | None = None


AS_SYSTEM = Acting(SYSTEM)  # jobs without a submitter, the command line, seeding
_ACTING: ContextVar[Acting] = ContextVar("spatialtwin_acting", default=AS_SYSTEM)


def acting() -> Acting:
    return _ACTING.get()


@contextlib.contextmanager
def acting_as(
    caller: Caller, region: str | None = None, session: str | None = None
) -> Iterator[Acting]:
    """Act as `caller` until the block ends (and in every task started inside it)."""
    if region is not None:
        region = check_region(region)
    token = _ACTING.set(Acting(caller, region, session))
    try:
        yield _ACTING.get()
    finally:
        _ACTING.reset(token)


def submitter() -> dict[str, Any]:
    """The acting caller as a job payload keeps it (`as_submitter` acts as it again)."""
    now = acting()
    return {**now.caller.to_json(), "region": now.region}


JobRun = Callable[[dict[str, Any], Any], Awaitable[dict[str, Any]]]


def as_submitter(run: JobRun) -> JobRun:
    """A job kind's `run` that acts as the caller its payload names (`payload["caller"]`),
    or as `SYSTEM` when it names none (level builds, seeding)."""

    async def acting_run(payload: dict[str, Any], progress: Any) -> dict[str, Any]:
        kept = payload.get("caller") if isinstance(payload, dict) else None
        caller = SYSTEM if kept is None else Caller.from_json(kept)
        region = kept.get("region") if isinstance(kept, dict) else None
        with acting_as(caller, region if isinstance(region, str) else None):
            return await run(payload, progress)

    return acting_run


def forbidden(reason: str, message: str, detail: dict[str, Any] | None = None) -> SpatialTwinError:
    return SpatialTwinError("forbidden", message, {"reason": reason, **(detail or {})}, status=403)


@dataclass(frozen=True)
class Decision:
    """A use the door allowed: the twin, the license it is billed under, the channel and the
    brand whose content it is (None: the twin alone)."""

    twin: dict[str, Any]
    license: dict[str, Any]
    channel: str
    brand: str | None = None


class Access:
    def __init__(self, services: ServiceContext) -> None:
        self.services = services
        self.metering = Metering(services.store)

    # --- the decision --------------------------------------------------------------------------

    def use_of(self, twin: dict[str, Any], channel: str, brand: str | None = None) -> Use:
        """The use the acting caller makes of `twin` in `channel` (of `brand`'s content)."""
        now = acting()
        caller = now.caller
        licensee = brand
        if licensee is None and not (caller.is_admin or caller.owns_twin(twin)):
            licensee = caller.brand()
        return Use(channel, None, now.region, licensee)

    def check(self, twin: dict[str, Any], channel: str, brand: str | None = None) -> dict[str, Any]:
        """The license that allows this use of `twin` now; raises the refusal otherwise."""
        return decide_use(twin, self.use_of(twin, channel, brand))

    async def twin_for_use(
        self, twin_id: str, channel: str, brand: str | None = None
    ) -> dict[str, Any]:
        """The twin record (404 when unknown), refused unless usable in `channel` now."""
        twin = await self.services.twin_records.get(twin_id)
        self.check(twin, channel, brand)
        return twin

    async def twins_for_use(self, channel: str) -> list[dict[str, Any]]:
        """Every twin record usable in `channel` now (revoked, expired or unlicensed left out)."""
        usable = []
        for twin in await self.services.twin_records.list():
            try:
                self.check(twin, channel)
            except SpatialTwinError:
                continue
            usable.append(twin)
        return usable

    async def check_level_file(self, owners: list[str], channel: str | None) -> list[Decision]:
        """Refuse a level file while a twin it shows may not be used: revoked (410), outside
        its window (403) or, with `channel`, outside its channels. `owners` may hold look ids
        too; every file lists the twin it shows among them, and a look's brand decides whose
        licenses apply."""
        twins, brand = [], None
        for owner in owners:
            twin = await self.services.twin_records.find(owner)
            if twin is not None:
                twins.append(twin)
                continue
            look = await self.services.look_records.find(owner)
            if look is not None and look.get("brand"):
                brand = str(look["brand"])
        if not twins:
            raise SpatialTwinError(
                "twin_not_found",
                "the twin this level shows is gone",
                {"owners": owners},
                status=404,
            )
        decisions = []
        for twin in twins:
            # Without a channel, any licensed one: the window and revocation still decide.
            used = channel if channel is not None else _any_channel(twin)
            decisions.append(Decision(twin, self.check(twin, used, brand), used, brand))
        return decisions

    async def check_ar_file(self, owners: list[str]) -> list[Decision]:
        """Refuse an AR file (USDZ) unless every twin it shows may be used in `ar` now."""
        return await self.check_level_file(owners, AR_CHANNEL)

    # --- metering ------------------------------------------------------------------------------

    async def meter(
        self,
        kind: str,
        decisions: list[Decision],
        *,
        count: int = 1,
        once: str | None = None,
        session: str | None = None,
    ) -> list[dict[str, Any]]:
        """Record the uses `decisions` allowed (one event per twin), durable before this
        returns; with `once` (a level set's key), only the first time the acting session asks
        for it. Returns the events written."""
        now = acting()
        session = session or now.session
        if once is not None and not self.metering.first_in_session((str(session), once)):
            return []
        caller_brand = now.caller.brand()
        return [
            await self.metering.record(
                kind,
                d.twin,
                d.license,
                d.channel,
                brand=d.brand or caller_brand,
                region=now.region,
                session=session,
                count=count,
            )
            for d in decisions
        ]

    async def meter_use(
        self, kind: str, twin_id: str, channel: str, brand: str | None = None, count: int = 1
    ) -> list[dict[str, Any]]:
        """Decide the use of one twin again (it may have been refused meanwhile) and record it."""
        twin = await self.services.twin_records.get(twin_id)
        lic = self.check(twin, channel, brand)
        return await self.meter(kind, [Decision(twin, lic, channel, brand)], count=count)

    async def meter_look(
        self, kind: str, look_id: str, channel: str | None
    ) -> list[dict[str, Any]]:
        """Record a use of a look (its GLB, a still of it) under its brand's license."""
        look = await self.services.look_records.get(look_id)
        return await self.meter_use(
            kind, look["twin"], channel or look["channel"], look.get("brand")
        )

    # --- tenancy -------------------------------------------------------------------------------

    def owner_brand(self) -> str | None:
        """The brand an upload or look made now belongs to (None: an operator's, the house's)."""
        return acting().caller.brand()

    def sees(self, record: dict[str, Any]) -> bool:
        """Whether the acting caller may see a garment or look: a brand its own and the house
        ones (no brand); every other role reaches these only where its routes allow."""
        caller = acting().caller
        if caller.role != BRAND:
            return True
        return record.get("brand") in (None, caller.tenant)

    def require_visible(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        """`record`, or 404 as if absent when the acting caller may not see it."""
        if not self.sees(record):
            raise NotFoundError(kind, str(record.get("id")))
        return record

    def visible(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if self.sees(r)]

    def sees_twin(self, twin: dict[str, Any]) -> bool:
        """Admins and the twin's owners see its record always; anyone else while one of its
        licenses applies to them. A revoked twin's record stays readable, saying so (its
        body, looks and files are what is withdrawn), so a page can tell why it is gone."""
        caller = acting().caller
        if caller.is_admin or caller.owns_twin(twin):
            return True
        brand = caller.brand()
        return any(
            brand is None or lic.get("licensee") in (None, brand) for lic in licenses_of(twin)
        )

    def visible_twins(self, twins: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.twin_view_for_caller(t) for t in twins if self.sees_twin(t)]

    def require_twin_visible(self, twin: dict[str, Any]) -> dict[str, Any]:
        if not self.sees_twin(twin):
            raise NotFoundError("twin", str(twin.get("id")))
        return self.twin_view_for_caller(twin)

    def twin_view_for_caller(self, twin: dict[str, Any]) -> dict[str, Any]:
        """The twin record with only the brand licenses the caller may read: all for admins
        and owners, a brand's own for a brand, none for anyone else."""
        caller = acting().caller
        if caller.is_admin or caller.owns_twin(twin):
            return twin
        brand = caller.brand()
        mine = [lic for lic in twin.get("licenses") or [] if brand and lic.get("licensee") == brand]
        return {**twin, "licenses": mine}

    def require_owner(self, twin: dict[str, Any], *roles: str) -> Caller:
        """The acting caller if it is an admin or one of `roles` owning the twin; 403."""
        caller = acting().caller
        if caller.is_admin or (caller.role in roles and caller.owns_twin(twin)):
            return caller
        raise forbidden(
            "not_owner",
            f"only the twin's {' or '.join(roles)} (or an admin) may do this",
            {"twinId": twin.get("id"), "role": caller.role},
        )

    def require_agency_of(self, owner_agency: str) -> None:
        """A twin may be made for an agency by that agency (or an admin)."""
        caller = acting().caller
        if caller.is_admin or (caller.role == AGENCY and caller.tenant == owner_agency):
            return
        raise forbidden(
            "not_owner",
            "a twin is made by its own agency (owner.agency must be the token's tenant)",
            {"agency": owner_agency, "role": caller.role},
        )

    # --- licenses ------------------------------------------------------------------------------

    async def _change_twin(
        self, twin_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read, change, compare-and-set; a record changed meanwhile is read and changed again
        (so a revocation that lands meanwhile is never undone); a refusal writes nothing."""
        records = self.services.twin_records
        for _ in range(CAS_ATTEMPTS):
            record, revision = await records.get_with_revision(twin_id)
            changed = change(record)
            try:
                await records.replace(changed, revision)
            except RecordChangedError:
                continue
            return changed
        raise RecordChangedError("twins", twin_id)

    async def change_license(self, twin_id: str, changes: Any) -> dict[str, Any]:
        """Change the first license's channels/validity, or revoke the twin (irreversible):
        by its agency or an admin; its model may only revoke. A revocation withdraws the
        twin's level files before this returns, and is announced on the `twins` channel."""

        def change(record: dict[str, Any]) -> dict[str, Any]:
            caller = self.require_owner(record, AGENCY, MODEL)
            if caller.role == MODEL and (
                not isinstance(changes, dict) or changes != {"revoked": True}
            ):
                raise forbidden(
                    "model_may_only_revoke",
                    'a model may revoke their twin ({"revoked": true}); the agency changes terms',
                    {"twinId": twin_id},
                )
            record["license"] = changed_license(twin_id, record["license"], changes)
            return record

        record = await self._change_twin(twin_id, change)
        revoked = bool(record["license"]["revoked"])
        if revoked:
            await self.services.lod_records.withdraw_owner(twin_id)
        await self.services.store.publish(
            "twins", {"event": "license_changed", "twinId": twin_id, "revoked": revoked}
        )
        return record

    async def grant_license(self, twin_id: str, payload: Any) -> dict[str, Any]:
        """A new license of the twin for one brand (its agency or an admin): waits for the
        model's consent before it allows any use. Returns the license."""
        if not isinstance(payload, dict):
            raise SpatialTwinError("invalid_request", "expected a JSON object")
        unknown = sorted(set(payload) - {"id", "licensee", *BRAND_LICENSE_FIELDS[:-1]})
        if unknown:
            raise SpatialTwinError(
                "invalid_license",
                f"unknown license fields {unknown}",
                {"allowed": ["id", "licensee", *BRAND_LICENSE_FIELDS[:-1]]},
                status=422,
            )
        if not payload.get("licensee"):
            raise SpatialTwinError(
                "invalid_license", "a license names its licensee brand", status=422
            )
        lic = License.from_json({**payload, "id": payload.get("id") or _license_id()})
        caller = acting().caller
        granted = {
            **license_record(lic),
            "consent": None,
            "ended_at": None,
            "created_at": now_utc().isoformat(),
            "created_by": caller.subject or caller.role,
        }

        def change(record: dict[str, Any]) -> dict[str, Any]:
            self.require_owner(record, AGENCY)
            if record["license"].get("revoked"):
                raise _revoked(twin_id)
            held = list(record.get("licenses") or [])
            if any(h["id"] == lic.id for h in held) or record["license"]["id"] == lic.id:
                raise SpatialTwinError(
                    "license_exists", f"twin {twin_id} has a license {lic.id!r}", status=409
                )
            if len(held) >= MAX_LICENSES:
                raise SpatialTwinError(
                    "too_many_licenses",
                    f"a twin holds at most {MAX_LICENSES} brand licenses",
                    status=422,
                )
            record["licenses"] = [*held, granted]
            return record

        await self._change_twin(twin_id, change)
        await self._announce(twin_id, lic.id, "license_granted")
        return granted

    async def amend_license(self, twin_id: str, license_id: str, changes: Any) -> dict[str, Any]:
        """Change a brand license (channels, regions, window, fee, terms: the model consents
        again, since they consented to the old terms), or end it (`{"ended": true}`: its
        window closes now, final). By the twin's agency or an admin."""
        if not isinstance(changes, dict) or not changes:
            raise SpatialTwinError("invalid_request", "expected a JSON object of changes")
        unknown = sorted(set(changes) - set(BRAND_LICENSE_FIELDS))
        if unknown:
            raise SpatialTwinError(
                "invalid_license",
                f"unknown license fields {unknown}",
                {"allowed": list(BRAND_LICENSE_FIELDS)},
                status=422,
            )
        ended = changes.get("ended", False)
        if not isinstance(ended, bool) or (ended and len(changes) > 1):
            raise SpatialTwinError(
                "invalid_license",
                'end a license with {"ended": true} alone',
                {"field": "ended"},
                status=422,
            )
        caller = acting().caller

        def amend(stored: dict[str, Any], twin: dict[str, Any]) -> dict[str, Any]:
            if stored.get("ended_at"):
                raise SpatialTwinError(
                    "license_ended",
                    f"license {license_id} has ended; grant a new one",
                    {"licenseId": license_id, "endedAt": stored["ended_at"]},
                    status=409,
                )
            if ended:
                now = now_utc().isoformat()
                return {**stored, "valid_until": now, "ended_at": now, "ended_by": caller.subject}
            kept = {k: stored.get(k) for k in ("id", "licensee", *BRAND_LICENSE_FIELDS[:-1])}
            checked = license_record(License.from_json({**kept, **changes}))
            return {**stored, **checked, "consent": None, "amended_at": now_utc().isoformat()}

        return await self._change_brand_license(twin_id, license_id, amend, (AGENCY,), "amended")

    async def consent(self, twin_id: str, license_id: str, given: Any) -> dict[str, Any]:
        """The model consents to a brand license (or withdraws consent): recorded with the
        time and who recorded it. By the twin's model (or an admin on their written word)."""
        if not isinstance(given, bool):
            raise SpatialTwinError(
                "invalid_consent", '"consent" must be true or false', {"field": "consent"}
            )
        caller = acting().caller

        def record_consent(stored: dict[str, Any], twin: dict[str, Any]) -> dict[str, Any]:
            now = now_utc().isoformat()
            if given:
                consent = {
                    "given_by": twin["owner"]["model"],
                    "given_at": now,
                    "recorded_by": caller.subject or caller.role,
                    "withdrawn_at": None,
                }
            else:
                consent = {**(stored.get("consent") or {}), "withdrawn_at": now}
            return {**stored, "consent": consent}

        return await self._change_brand_license(
            twin_id, license_id, record_consent, (MODEL,), "consent"
        )

    async def _change_brand_license(
        self,
        twin_id: str,
        license_id: str,
        change: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
        roles: tuple[str, ...],
        event: str,
    ) -> dict[str, Any]:
        changed: dict[str, Any] = {}

        def apply(record: dict[str, Any]) -> dict[str, Any]:
            self.require_owner(record, *roles)
            if record["license"].get("revoked"):
                raise _revoked(twin_id)
            held = list(record.get("licenses") or [])
            index = next((i for i, h in enumerate(held) if h.get("id") == license_id), None)
            if index is None:
                raise NotFoundError("license", license_id)
            held[index] = change(held[index], record)
            changed.clear()
            changed.update(held[index])
            record["licenses"] = held
            return record

        await self._change_twin(twin_id, apply)
        await self._announce(twin_id, license_id, f"license_{event}")
        return dict(changed)

    async def licenses(self, twin_id: str) -> dict[str, Any]:
        """The twin's licenses as the acting caller may read them (owners and admins: all; a
        brand: the first and its own; 404 for a twin it may not see)."""
        twin = self.require_twin_visible(await self.services.twin_records.get(twin_id))
        first = {**twin["license"], "consent": twin.get("consent")}
        return {"twinId": twin_id, "license": first, "licenses": twin.get("licenses") or []}

    async def _announce(self, twin_id: str, license_id: str, event: str) -> None:
        await self.services.store.publish(
            "twins", {"event": event, "twinId": twin_id, "licenseId": license_id}
        )


def _any_channel(twin: dict[str, Any]) -> str:
    return str(twin["license"]["channels"][0])


def _license_id() -> str:
    return f"lic_{uuid.uuid4().hex[:12]}"


def _revoked(twin_id: str) -> SpatialTwinError:
    return SpatialTwinError(
        "license_revoked",
        f"twin {twin_id} has been withdrawn by its owner; its licenses cannot change",
        {"twinId": twin_id, "reason": "revoked"},
        status=410,
    )


def changed_license(twin_id: str, stored: dict[str, Any], changes: Any) -> dict[str, Any]:
    """The stored license with `changes` applied and checked; raises, changing nothing."""
    if not isinstance(changes, dict):
        raise SpatialTwinError("invalid_request", "expected a JSON object")
    unknown = sorted(set(changes) - set(LICENSE_FIELDS))
    if unknown:
        raise SpatialTwinError(
            "invalid_license",
            f"unknown license fields {unknown}",
            {"allowed": sorted(LICENSE_FIELDS)},
            status=422,
        )
    if "revoked" in changes and not isinstance(changes["revoked"], bool):
        raise SpatialTwinError(
            "invalid_license",
            "revoked must be true or false",
            {"field": "revoked", "expected": "true or false"},
        )
    if stored.get("revoked") and changes.get("revoked", True) is not True:
        raise SpatialTwinError(
            "license_revoked",
            "a revoked license cannot be reinstated; the owner must grant a new one",
            {"twinId": twin_id},
            status=409,
        )
    checked = License.from_json({k: v for k, v in {**stored, **changes}.items() if k in _KEPT})
    if checked.revoked and not stored.get("revoked"):
        checked.revoked_at = now_utc().isoformat()
    return license_record(checked)


def license_record(lic: License) -> dict[str, Any]:
    """A license as the twin record stores it (with its own schema version)."""
    return {**asdict(lic), "schema_version": LICENSE_VERSION}


_KEPT = (*LICENSE_FIELDS, "id", "revoked_at", "licensee", "regions")
